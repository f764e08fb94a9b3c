#!/bin/busybox sh
# loupe's kernel smoke test. Runs as /init of a qemu guest (then powers the
# guest off) or on the host (`cargo xtask kernels` runs both). Every result
# is a line starting with "loupe-smoke:"; the host side reads them and
# judges. Settings come from the environment (defaults: the guest's).
#
# For each data hook mode: a busybox httpd (one process forked per
# connection; the child moves the socket to stdin/stdout with dup2), loupe
# attached to it by PID, REQUESTS wget requests and IDLE connections that
# send nothing; one request to a busybox nc that was blocked in accept()
# before loupe attached and reads and writes the connection itself (a
# JVM's acceptor thread; its answer waits in a FIFO until it has read the
# request); a scrape of /metrics, SIGTERM to loupe and how long it took
# to exit; and how long an untracked dd takes, without loupe ("bare") and
# beside each mode (timings are printed, never judged). `loupe check` runs before and after (its "loupe programs" line
# shows what a loupe left loaded).
LOUPE=${LOUPE:-/loupe}
BB=${BB:-/bin/busybox}
WORK=${WORK:-/tmp/loupe-smoke}
HTTP_PORT=${HTTP_PORT:-8080}
LATE_PORT=${LATE_PORT:-8081}
METRICS_PORT=${METRICS_PORT:-9477}
REQUESTS=${REQUESTS:-37}
IDLE=${IDLE:-5}
DD_COUNT=${DD_COUNT:-300000}
MODES=${MODES:-"auto tracepoints sys-exit"}
GUEST=${GUEST:-0}

say() { echo "loupe-smoke: $*"; }

if [ "$GUEST" = 1 ]; then
    export PATH=/bin
    $BB mkdir -p /proc /sys /tmp /dev
    $BB mount -t proc proc /proc
    $BB mount -t sysfs sysfs /sys
    $BB mount -t devtmpfs devtmpfs /dev 2>/dev/null
    $BB mount -t tmpfs tmpfs /tmp
    $BB ip link set lo up
    # tracefs is left unmounted: loupe mounts it itself.
fi

# Milliseconds since boot (in steps of 10).
now() { $BB awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# Milliseconds an untracked process takes for DD_COUNT one-byte copies:
# what loupe's hooks cost processes it does not watch.
untracked_ms() {
    t0=$(now)
    $BB dd if=/dev/zero of=/dev/null bs=1 count="$DD_COUNT" 2>/dev/null
    echo $(($(now) - t0))
}

# Sums the samples of a metric family whose labels contain $2.
metric() {
    $BB wget -q -O - "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
        $BB awk -v name="$1" -v want="$2" '
            (index($0, name "{") == 1 || index($0, name " ") == 1) && index($0, want) > 0 {
                sum += $NF
            }
            END { printf "%d\n", sum }'
}

# Waits up to $2 seconds for $1 to succeed (status 0); status 2 gives up.
wait_for() {
    i=0
    while [ $i -lt "$2" ]; do
        eval "$1"
        case $? in 0) return 0 ;; 2) return 1 ;; esac
        $BB sleep 1
        i=$((i + 1))
    done
    return 1
}

loupe_ready() {
    $BB wget -q -O /dev/null "http://127.0.0.1:$METRICS_PORT/readyz" 2>/dev/null && return 0
    kill -0 "$loupe" 2>/dev/null || return 2
    return 1
}

# Every request and connection counted, and every connection closed.
settled() {
    [ "$(metric agent_requests_total 'service="late"')" -ge 1 ] &&
        [ "$(metric agent_requests_total 'service="smoke"')" -ge "$REQUESTS" ] &&
        [ "$(metric tcp_connections_opened_total 'direction="inbound",service="smoke"')" \
            -ge $((REQUESTS + IDLE)) ] &&
        [ "$(metric tcp_connections_active 'direction="inbound",service="smoke"')" = 0 ]
}

check() {
    $LOUPE check > "$WORK/check.out" 2>&1
    code=$?
    while IFS= read -r line; do say "check$1 $line"; done < "$WORK/check.out"
    say "check$1-exit $code"
}

# The late acceptor listens, on IPv4 or IPv6 (and so waits in accept()
# right after).
late_listening() {
    $BB cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        $BB grep -q ":$($BB printf %04X "$LATE_PORT") 0*:0000 0A"
}

# The late acceptor has read its request.
late_read() { $BB grep -q '^GET /late ' "$WORK/late-$mode"; }

run_mode() {
    mode=$1
    $BB httpd -f -p "127.0.0.1:$HTTP_PORT" -h "$WORK/www" &
    httpd=$!
    $BB nc -l -p "$LATE_PORT" < "$WORK/answer" > "$WORK/late-$mode" 2>&1 &
    late=$!
    wait_for late_listening 10
    # No OpenAPI fetch: it would take the acceptors' first connections.
    $BB printf '[http]\nopenapi = false\n[[services]]\nname = "smoke"\npids = [%s]\n[[services]]\nname = "late"\npids = [%s]\n' \
        "$httpd" "$late" > "$WORK/loupe-$mode.toml"
    $LOUPE run --config "$WORK/loupe-$mode.toml" --data-hook "$mode" \
        --listen "127.0.0.1:$METRICS_PORT" > "$WORK/loupe-$mode.log" 2>&1 &
    loupe=$!
    if ! wait_for loupe_ready 120; then
        say "mode $mode error=not-ready"
        $BB tail -n 20 "$WORK/loupe-$mode.log"
        kill -TERM $loupe $httpd $late 2>/dev/null
        wait
        return
    fi
    dd_ms=$(untracked_ms)
    $BB wget -q -O /dev/null "http://127.0.0.1:$LATE_PORT/late" &
    lateget=$!
    wait_for late_read 30
    $BB printf 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlate\n' >&3
    wait $lateget
    n=0
    idle=""
    while [ $n -lt "$IDLE" ]; do
        # Connects, sends nothing, and closes after a second of silence.
        $BB nc -w 1 127.0.0.1 "$HTTP_PORT" < /dev/null > /dev/null 2>&1 &
        idle="$idle $!"
        n=$((n + 1))
    done
    n=0
    served=0
    while [ $n -lt "$REQUESTS" ]; do
        $BB wget -q -O /dev/null "http://127.0.0.1:$HTTP_PORT/index.html" && served=$((served + 1))
        n=$((n + 1))
    done
    wait $idle
    wait_for settled 30
    # A count that would go past the expected one has a second to show.
    $BB sleep 1
    opened=$(metric tcp_connections_opened_total 'direction="inbound",service="smoke"')
    active=$(metric tcp_connections_active 'direction="inbound",service="smoke"')
    requests=$(metric agent_requests_total 'service="smoke"')
    late_requests=$(metric agent_requests_total 'service="late"')
    ok=$(metric agent_requests_total 'service="smoke",status="200"')
    lost=$(metric loupe_events_lost_total '')
    unparsed=$(metric loupe_unparsed_connections_total 'service="smoke"')
    $BB wget -q -O "$WORK/metrics-$mode" "http://127.0.0.1:$METRICS_PORT/metrics"
    start=$(now)
    kill -TERM $loupe
    wait $loupe
    code=$?
    stop=$(now)
    kill -TERM $httpd $late 2>/dev/null
    wait $httpd $late 2>/dev/null
    say "mode $mode served=$served opened=$opened active=$active requests=$requests ok=$ok" \
        "late=$late_requests unparsed=$unparsed lost=$lost exit=$code exit_ms=$((stop - start))" \
        "untracked_ms=$dd_ms"
    if [ "$code" != 0 ] || [ "$active" != 0 ] || [ "$requests" != "$REQUESTS" ] ||
        [ "$late_requests" != 1 ]; then
        # What the host needs to tell why: the agent's log and the sockets.
        $BB tail -n 30 "$WORK/loupe-$mode.log"
        $BB grep -E '^(tcp_|loupe_(events|map|tracked))' "$WORK/metrics-$mode"
        $BB cat /proc/net/tcp
    fi
}

$BB mkdir -p "$WORK/www"
echo "hello from the loupe kernel matrix" > "$WORK/www/index.html"
# The late acceptor's answers; held open for writing here, so that its
# reads wait instead of ending.
$BB rm -f "$WORK/answer"
$BB mkfifo "$WORK/answer"
exec 3<> "$WORK/answer"
say "kernel $($BB uname -r)"
# In a guest: how long the kernel took to boot and start this script.
[ "$GUEST" = 1 ] && say "booted_ms $(now)"
check ""
say "mode bare untracked_ms=$(untracked_ms)"
for mode in $MODES; do run_mode "$mode"; done
# The kernel frees a detached program after an RCU grace period: until then
# it is still listed, though nothing holds it.
$BB sleep 3
check "-after"
say "done"

if [ "$GUEST" = 1 ]; then
    $BB sync
    $BB poweroff -f
fi
