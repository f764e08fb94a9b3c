//! Reading `/proc`: pure parsers for the files loupe reads (host-tested), and
//! thin readers around them. A process may exit between two reads; readers
//! return `None` or an empty result then, never an error the caller must
//! special-case.
use std::{
    fs,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use loupe_common::{maps::TupleKey, tcp};

/// The `/proc` root.
#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }
}

/// One row of `/proc/PID/net/tcp` or `tcp6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRow {
    /// Local port, host order.
    pub local_port: u16,
    pub local_addr: [u8; 16],
    pub remote_port: u16,
    pub remote_addr: [u8; 16],
    /// Kernel TCP state number (`loupe_common::tcp`).
    pub state: u32,
    pub inode: u64,
}

impl TcpRow {
    /// The connection's addresses as `sock:inet_sock_set_state` reports them.
    pub fn tuple(&self) -> TupleKey {
        TupleKey {
            sport: self.local_port,
            dport: self.remote_port,
            _pad: 0,
            saddr: self.local_addr,
            daddr: self.remote_addr,
        }
    }

    /// An open connection: established, or closing but not yet closed.
    pub fn is_connection(&self) -> bool {
        matches!(
            self.state,
            tcp::ESTABLISHED
                | tcp::CLOSE_WAIT
                | tcp::FIN_WAIT1
                | tcp::FIN_WAIT2
                | tcp::LAST_ACK
                | tcp::CLOSING
        )
    }
}

/// Parses one address field: `0100007F:1F90` (IPv4) or 32 hex digits and a
/// port (IPv6). Each 32-bit group is printed in host (little-endian) order.
fn parse_endpoint(field: &str) -> Option<([u8; 16], u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let group = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_le_bytes);
    let addr = match addr.len() {
        8 => Ipv4Addr::from(group(addr)?).to_ipv6_mapped().octets(),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&group(addr.get(i * 8..i * 8 + 8)?)?);
            }
            Ipv6Addr::from(octets).octets()
        }
        _ => return None,
    };
    Some((addr, port))
}

/// Parses `/proc/net/tcp` or `tcp6` text; malformed rows are skipped.
pub fn parse_net_tcp(text: &str) -> Vec<TcpRow> {
    let mut rows = Vec::new();
    read_net_tcp(text.as_bytes(), |_| true, &mut rows);
    rows
}

/// Appends the rows of `/proc/net/tcp` or `tcp6` that `keep` accepts, a
/// line at a time: a busy host lists tens of thousands of sockets (most in
/// `TIME_WAIT`), which need not be in memory at once.
fn read_net_tcp(
    mut reader: impl BufRead,
    mut keep: impl FnMut(&TcpRow) -> bool,
    rows: &mut Vec<TcpRow>,
) {
    let mut line = String::new();
    let mut header = true;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if header => header = false,
            Ok(_) => rows.extend(parse_tcp_row(&line).filter(&mut keep)),
        }
    }
}

fn parse_tcp_row(line: &str) -> Option<TcpRow> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let (local_addr, local_port) = parse_endpoint(fields.next()?)?;
    let (remote_addr, remote_port) = parse_endpoint(fields.next()?)?;
    let state = u32::from_str_radix(fields.next()?, 16).ok()?;
    // tx_queue:rx_queue, tr:when, retrnsmt, uid, timeout, then the inode.
    let inode = fields.nth(5)?.parse().ok()?;
    Some(TcpRow {
        local_port,
        local_addr,
        remote_port,
        remote_addr,
        state,
        inode,
    })
}

/// Parses `/proc/PID/stat`: `(ppid, state)`. The command name may contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<(u32, char)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// `/proc/PID/cmdline` as one string: arguments joined by spaces.
pub fn parse_cmdline(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

/// The inode in a `socket:[12345]` fd link target.
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The number of the syscall a thread is blocked in, from
/// `/proc/PID/task/TID/syscall` (`"288 0x3 0x7ffd... ..."`); `None` when it
/// runs (`running`) or is blocked outside a syscall (`-1 ...`).
pub fn parse_syscall(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The context switches, voluntary and not, in a `/proc/PID/status`: they
/// move whenever the thread has run.
pub fn parse_switches(status: &str) -> Option<u64> {
    let mut sum = None;
    for line in status.lines() {
        if let Some((key, value)) = line.split_once(':')
            && (key == "voluntary_ctxt_switches" || key == "nonvoluntary_ctxt_switches")
        {
            let count: u64 = value.trim().parse().ok()?;
            // Only compared for a change: wrapping is harmless.
            sum = Some(sum.unwrap_or(0u64).wrapping_add(count));
        }
    }
    sum
}

/// The inode in a namespace link target such as `net:[4026531840]`.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    let (_, rest) = target.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

impl Procfs {
    fn pid_path(&self, pid: u32, rest: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(rest)
    }

    /// Numeric entries of `/proc`.
    pub fn pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    pub fn exists(&self, pid: u32) -> bool {
        self.pid_path(pid, "").exists()
    }

    /// `(ppid, state)`; `None` once the process is gone.
    pub fn stat(&self, pid: u32) -> Option<(u32, char)> {
        parse_stat(&fs::read_to_string(self.pid_path(pid, "stat")).ok()?)
    }

    /// A process that is gone or a zombie no longer runs code.
    pub fn is_running(&self, pid: u32) -> bool {
        matches!(self.stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
    }

    pub fn cmdline(&self, pid: u32) -> Option<String> {
        Some(parse_cmdline(
            &fs::read(self.pid_path(pid, "cmdline")).ok()?,
        ))
    }

    /// The arguments of the process (`/proc/PID/cmdline`), `argv[0]` first.
    pub fn argv(&self, pid: u32) -> Option<Vec<String>> {
        let raw = fs::read(self.pid_path(pid, "cmdline")).ok()?;
        let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
        Some(
            raw.split(|&b| b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect(),
        )
    }

    /// The text of `/proc/PID/cgroup` (see `container::parse`).
    pub fn cgroup(&self, pid: u32) -> Option<String> {
        fs::read_to_string(self.pid_path(pid, "cgroup")).ok()
    }

    /// File name of the executable (`/proc/PID/exe`), falling back to `comm`.
    pub fn exe_name(&self, pid: u32) -> Option<String> {
        if let Ok(exe) = fs::read_link(self.pid_path(pid, "exe"))
            && let Some(name) = exe.file_name()
        {
            return Some(name.to_string_lossy().into_owned());
        }
        let comm = fs::read_to_string(self.pid_path(pid, "comm")).ok()?;
        Some(comm.trim_end().to_owned())
    }

    /// The text of `/proc/PID/maps`.
    pub fn maps(&self, pid: u32) -> Option<String> {
        fs::read_to_string(self.pid_path(pid, "maps")).ok()
    }

    /// Path of the process's executable, as the process sees it.
    pub fn exe(&self, pid: u32) -> Option<String> {
        let exe = fs::read_link(self.pid_path(pid, "exe")).ok()?;
        Some(exe.to_string_lossy().into_owned())
    }

    /// A path inside the process's mount namespace, reachable from ours
    /// (`/proc/PID/root/...`: containers see their own files).
    pub fn in_root(&self, pid: u32, path: &str) -> PathBuf {
        self.pid_path(pid, "root")
            .join(path.trim_start_matches('/'))
    }

    /// Inode of the process's network namespace.
    pub fn netns(&self, pid: u32) -> Option<u64> {
        let link = fs::read_link(self.pid_path(pid, "ns/net")).ok()?;
        parse_ns_link(link.to_str()?)
    }

    /// `(fd, socket inode)` for every socket fd of the process.
    pub fn socket_fds(&self, pid: u32) -> Vec<(u32, u64)> {
        let dir = self.pid_path(pid, "fd");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let fd = entry.file_name().to_str()?.parse().ok()?;
                let target = fs::read_link(entry.path()).ok()?;
                Some((fd, parse_socket_link(target.to_str()?)?))
            })
            .collect()
    }

    /// `(tid, context switches)` of the process's threads now blocked in
    /// one of the syscalls `numbers`.
    pub fn threads_in(&self, pid: u32, numbers: &[u64]) -> Vec<(u32, u64)> {
        let Ok(tasks) = fs::read_dir(self.pid_path(pid, "task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let tid = task.ok()?.file_name().to_str()?.parse().ok()?;
                let syscall = fs::read_to_string(self.task_path(pid, tid, "syscall")).ok()?;
                if !numbers.contains(&parse_syscall(&syscall)?) {
                    return None;
                }
                Some((tid, self.switches(pid, tid)?))
            })
            .collect()
    }

    /// The context switches of thread `tid` of `pid` so far; `None` once it
    /// is gone.
    pub fn switches(&self, pid: u32, tid: u32) -> Option<u64> {
        parse_switches(&fs::read_to_string(self.task_path(pid, tid, "status")).ok()?)
    }

    fn task_path(&self, pid: u32, tid: u32, rest: &str) -> PathBuf {
        self.pid_path(pid, "task").join(tid.to_string()).join(rest)
    }

    /// The TCP sockets (IPv4 and IPv6) in the process's network namespace
    /// that `keep` accepts.
    pub fn tcp_rows(&self, pid: u32, mut keep: impl FnMut(&TcpRow) -> bool) -> Vec<TcpRow> {
        let mut rows = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            if let Ok(file) = fs::File::open(self.pid_path(pid, file)) {
                read_net_tcp(BufReader::new(file), &mut keep, &mut rows);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 31338 1 0000000000000000 20 4 30 10 -1
   2: garbage
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:18EB 0000000000000000FFFF00000100007F:A2C4 08 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn reads_the_syscall_a_thread_is_blocked_in() {
        assert_eq!(
            parse_syscall(
                "288 0x3 0x7ffd5c1e1a40 0x7ffd5c1e1a3c 0x80000 0x0 0x0 0x7ffd5c1e1a18 0x7f4c2b1e7a4b\n"
            ),
            Some(288)
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd5c1e1a18 0x7f4c2b1e7a4b\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn adds_both_kinds_of_context_switches() {
        let status = "Name:\tjava\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t41\n\
                      nonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(parse_switches(status), Some(43));
        assert_eq!(parse_switches("Name:\tjava\n"), None);
        assert_eq!(parse_switches("voluntary_ctxt_switches:\tmany\n"), None);
        let huge = format!(
            "voluntary_ctxt_switches:\t{}\nnonvoluntary_ctxt_switches:\t2\n",
            u64::MAX
        );
        assert_eq!(parse_switches(&huge), Some(1), "wraps, never panics");
    }

    #[test]
    fn parses_ipv4_rows() {
        let rows = parse_net_tcp(TCP);
        assert_eq!(rows.len(), 2, "the garbage row is skipped");
        let listen = rows[0];
        assert_eq!(listen.local_port, 8080);
        assert_eq!(listen.state, tcp::LISTEN);
        assert_eq!(listen.inode, 31337);
        assert_eq!(
            Ipv6Addr::from(listen.local_addr).to_ipv4_mapped(),
            Some(Ipv4Addr::LOCALHOST)
        );
        let conn = rows[1];
        assert_eq!(conn.remote_port, 0xD431);
        assert!(conn.is_connection());
        assert_eq!(conn.tuple().sport, 8080);
        assert_eq!(
            conn.tuple().daddr,
            Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn parses_ipv6_rows() {
        let rows = parse_net_tcp(TCP6);
        assert_eq!(rows.len(), 2);
        assert_eq!(Ipv6Addr::from(rows[0].local_addr), Ipv6Addr::LOCALHOST);
        assert_eq!(rows[0].local_port, 6379);
        // IPv4-mapped ::ffff:127.0.0.1 as a dual-stack socket shows it.
        assert_eq!(
            Ipv6Addr::from(rows[1].remote_addr).to_ipv4_mapped(),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(rows[1].state, tcp::CLOSE_WAIT);
        assert!(rows[1].is_connection());
    }

    #[test]
    fn rejects_malformed_endpoints() {
        for field in [
            "",
            ":",
            "0100007F",
            "0100007F:",
            "XYZ:0050",
            "0100007F:10000",
            "01007F:0050",
        ] {
            assert_eq!(parse_endpoint(field), None, "{field:?}");
        }
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        assert_eq!(parse_stat("42 (python3) S 1 42 42 0"), Some((1, 'S')));
        assert_eq!(parse_stat("7 (a) b (c) Z 99 7"), Some((99, 'Z')));
        assert_eq!(parse_stat("7 (no close paren S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn parses_links_and_cmdlines() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(
            parse_cmdline(b"python3\0-m\0http.server\0"),
            "python3 -m http.server"
        );
        assert_eq!(parse_cmdline(b""), "");
    }

    #[test]
    fn reads_this_process() {
        let proc = Procfs::default();
        let me = std::process::id();
        assert!(proc.pids().contains(&me));
        assert!(proc.is_running(me));
        assert!(proc.netns(me).is_some());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inodes: Vec<u64> = proc
            .socket_fds(me)
            .into_iter()
            .map(|(_, inode)| inode)
            .collect();
        let rows = proc.tcp_rows(me, |row| row.local_port == port && row.state == tcp::LISTEN);
        let row = rows.first().expect("our listener is in /proc/self/net/tcp");
        assert!(inodes.contains(&row.inode));
    }
}
