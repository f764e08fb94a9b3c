//! The running agent: which processes are tracked, what the probes report
//! about them, and the metrics that follow. [`State`] is the single owner of
//! that picture; the tasks in [`run`] feed it.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use loupe_common::{
    maps::{
        COUNTER_EVENTS_LOST, COUNTER_MAP_FULL, DIRECTION_INBOUND, DIRECTION_OUTBOUND, FdInfo,
        FdKey, ListenKey, ROLE_INBOUND, ROLE_LISTENER, ROLE_OUTBOUND, SockOwner, Target, TupleKey,
    },
    tcp,
};
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{info, warn};

use crate::{
    config::{Config, ServiceSpec},
    connections::{Connections, Delta, Direction},
    discovery::{self, Discovery, PortOwners},
    ebpf::{LoadError, Probes},
    events::{self, Event},
    metrics::{LabelLimit, Metrics, SeriesClock, catalogue},
    procfs::Procfs,
    server::{self, BindError, Endpoint},
};

/// Distinct peers exported per service before `__other__`.
const MAX_PEERS: usize = 64;
/// How often counters are read from the probes and idle series expire.
const TICK: Duration = Duration::from_secs(5);
/// Records handled per lock of the state.
const EVENT_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "no process with PID {pid} ({origin}); check the PID, or select by --process or --port"
    )]
    NoSuchPid { pid: u32, origin: String },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot poll the event ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

struct Service {
    spec: ServiceSpec,
    /// Set from the configuration or from the first matched process.
    name: Option<String>,
    targets: BTreeSet<u32>,
    /// Listening ports of the service, as entered in the probes' map.
    listeners: HashSet<ListenKey>,
    waiting_logged: bool,
}

pub struct State {
    services: Vec<Service>,
    /// Tracked PID -> service index.
    tracked: HashMap<u32, u32>,
    conns: Connections,
    probes: Probes,
    metrics: Metrics,
    clock: SeriesClock,
    peers: LabelLimit,
    proc: Procfs,
    probe_lost: u64,
    probe_map_full: u64,
    decode_errors: u64,
}

impl State {
    pub fn new(config: &Config, probes: Probes, metrics: Metrics) -> Self {
        let services = config
            .services
            .iter()
            .map(|spec| Service {
                name: spec.name.clone(),
                spec: spec.clone(),
                targets: BTreeSet::new(),
                listeners: HashSet::new(),
                waiting_logged: false,
            })
            .collect();
        let state = Self {
            services,
            tracked: HashMap::new(),
            conns: Connections::default(),
            probes,
            metrics,
            clock: SeriesClock::new(config.series_ttl),
            peers: LabelLimit::new(MAX_PEERS),
            proc: Procfs::default(),
            probe_lost: 0,
            probe_map_full: 0,
            decode_errors: 0,
        };
        for service in 0..state.services.len() {
            state.publish_targets(service as u32);
        }
        state
    }

    fn name(&self, service: u32) -> &str {
        self.services
            .get(service as usize)
            .and_then(|s| s.name.as_deref())
            .unwrap_or("unknown")
    }

    fn netns(&self, pid: u32) -> u32 {
        if self.probes.netns_aware {
            // Namespace inode numbers are 32-bit in the kernel.
            self.proc.netns(pid).map_or(0, |inode| inode as u32)
        } else {
            0
        }
    }

    /// Names an unnamed service after its first process's executable.
    fn ensure_name(&mut self, service: u32, pid: u32) {
        let index = service as usize;
        if self.services[index].name.is_some() {
            return;
        }
        let base = self.proc.exe_name(pid).unwrap_or_else(|| "unknown".into());
        let taken = |name: &str| {
            self.services
                .iter()
                .any(|s| s.name.as_deref() == Some(name))
        };
        let name = if taken(&base) {
            format!("{base}-{}", index + 1)
        } else {
            base
        };
        info!(service = %name, pid, "service named after its executable (set --service to choose)");
        self.services[index].name = Some(name);
    }

    fn publish_targets(&self, service: u32) {
        let s = &self.services[service as usize];
        if let Some(name) = &s.name {
            self.metrics
                .targets
                .with_label_values(&[name])
                .set(s.targets.len() as i64);
        }
    }

    fn publish(&mut self, delta: &Delta, now: Instant) {
        let name = self.name(delta.service).to_owned();
        let direction = delta.direction.as_str();
        let labels = [name.as_str(), direction];
        if delta.opened {
            self.metrics.tcp_opened.with_label_values(&labels).inc();
            self.clock
                .touch(catalogue::TCP_CONNECTIONS_OPENED.name, &labels, now);
        }
        self.metrics
            .tcp_active
            .with_label_values(&labels)
            .set(self.conns.active(delta.service, delta.direction));
        self.clock
            .touch(catalogue::TCP_CONNECTIONS_ACTIVE.name, &labels, now);
        if let Some(peer) = &delta.peer {
            let labels = [name.as_str(), peer.as_str()];
            self.metrics
                .tcp_active_by_peer
                .with_label_values(&labels)
                .set(self.conns.peer_active(delta.service, peer));
            self.clock
                .touch(catalogue::TCP_CONNECTIONS_ACTIVE_BY_PEER.name, &labels, now);
        }
    }

    /// Starts tracking `pid` for `service`.
    fn track(&mut self, pid: u32, service: u32, parent: u32, now: Instant) {
        if self.tracked.contains_key(&pid) {
            return;
        }
        self.ensure_name(service, pid);
        let target = Target { service, parent };
        if let Err(err) = self.probes.tracked.insert(pid, target, 0) {
            warn!(pid, error = %err, "cannot track process: the probes' process map is full");
            return;
        }
        self.tracked.insert(pid, service);
        let s = &mut self.services[service as usize];
        s.targets.insert(pid);
        s.waiting_logged = false;
        if parent == 0 {
            info!(pid, service = %self.name(service), "tracking process");
        }
        self.publish_targets(service);
        self.seed(pid, service, now);
    }

    fn untrack(&mut self, pid: u32) {
        let Some(service) = self.tracked.remove(&pid) else {
            return;
        };
        let _ = self.probes.tracked.remove(&pid);
        let s = &mut self.services[service as usize];
        s.targets.remove(&pid);
        if s.targets.is_empty() {
            // Nobody of this service listens any more; a restarted target
            // enters its ports again when it is found.
            for key in s.listeners.drain() {
                let _ = self.probes.listeners.remove(&key);
            }
            info!(pid, service = %self.name(service), "target exited; waiting for it to come back");
        }
        self.publish_targets(service);
    }

    /// Enters what `/proc` shows of a newly tracked process into the probes'
    /// maps: its TCP fds, its listening ports and its open connections.
    fn seed(&mut self, pid: u32, service: u32, now: Instant) {
        let fds: HashMap<u64, u32> = self
            .proc
            .socket_fds(pid)
            .into_iter()
            .map(|(fd, inode)| (inode, fd))
            .collect();
        if fds.is_empty() {
            return;
        }
        let netns = self.netns(pid);
        let rows: Vec<_> = self
            .proc
            .tcp_rows(pid)
            .into_iter()
            .filter(|row| fds.contains_key(&row.inode))
            .collect();
        for row in rows.iter().filter(|row| row.state == tcp::LISTEN) {
            let key = ListenKey {
                netns,
                port: row.local_port,
                _pad: 0,
            };
            let owner = SockOwner {
                service,
                direction: 0,
            };
            if self.probes.listeners.insert(key, owner, 0).is_ok() {
                self.services[service as usize].listeners.insert(key);
            }
            self.file_fd(pid, fds[&row.inode], service, ROLE_LISTENER);
        }
        let mut seeded = Vec::new();
        for row in rows.iter().filter(|row| row.is_connection()) {
            let inbound = self.services[service as usize]
                .listeners
                .contains(&ListenKey {
                    netns,
                    port: row.local_port,
                    _pad: 0,
                });
            let (direction, role) = if inbound {
                (DIRECTION_INBOUND, ROLE_INBOUND)
            } else {
                (DIRECTION_OUTBOUND, ROLE_OUTBOUND)
            };
            self.file_fd(pid, fds[&row.inode], service, role);
            let owner = SockOwner { service, direction };
            let tuple = row.tuple();
            if self.probes.preexisting.insert(tuple, owner, 0).is_err() {
                warn!(
                    pid,
                    "the map of pre-existing connections is full; not counting one"
                );
                continue;
            }
            let peers = &mut self.peers;
            if let Some(delta) = self
                .conns
                .seed(owner, tuple, |s, peer| label_peer(peers, s, peer))
            {
                self.publish(&delta, now);
                seeded.push(tuple);
            }
        }
        if !seeded.is_empty() {
            self.verify_seeded(pid, &seeded, now);
        }
    }

    /// A connection that closed between reading `/proc` and entering it in
    /// the probes' map was never seen closing: read `/proc` again and drop
    /// what is gone.
    fn verify_seeded(&mut self, pid: u32, seeded: &[TupleKey], now: Instant) {
        let open: HashSet<TupleKey> = self
            .proc
            .tcp_rows(pid)
            .into_iter()
            .filter(|row| row.is_connection())
            .map(|row| row.tuple())
            .collect();
        for tuple in seeded.iter().filter(|tuple| !open.contains(tuple)) {
            let _ = self.probes.preexisting.remove(tuple);
            if let Some(delta) = self.conns.unseed(tuple) {
                self.publish(&delta, now);
            }
        }
    }

    fn file_fd(&mut self, pid: u32, fd: u32, service: u32, role: u32) {
        let key = FdKey { tgid: pid, fd };
        let _ = self.probes.fds.insert(key, FdInfo { service, role }, 0);
    }

    pub fn on_event(&mut self, event: Event, now: Instant) {
        self.metrics.events.with_label_values(&[event.kind()]).inc();
        match event {
            Event::TcpState(state) => {
                if state.newstate == tcp::LISTEN
                    && let Some(service) = self.services.get_mut(state.owner.service as usize)
                {
                    service.listeners.insert(ListenKey {
                        netns: state.netns,
                        port: state.tuple.sport,
                        _pad: 0,
                    });
                }
                let peers = &mut self.peers;
                if let Some(delta) = self
                    .conns
                    .on_event(&state, |s, peer| label_peer(peers, s, peer))
                {
                    self.publish(&delta, now);
                }
            }
            Event::Fork(fork) => {
                if (fork.service as usize) < self.services.len() {
                    self.track(fork.pid, fork.service, fork.header.tgid, now);
                }
            }
            Event::Exit(exit) => {
                if !self.proc.is_running(exit.pid) {
                    self.untrack(exit.pid);
                }
            }
        }
    }

    fn on_decode_error(&mut self, err: &events::DecodeError) {
        self.decode_errors += 1;
        self.metrics
            .events
            .with_label_values(&["undecodable"])
            .inc();
        if self.decode_errors.is_power_of_two() {
            warn!(error = %err, count = self.decode_errors, "dropping undecodable probe records");
        }
    }

    /// Applies one `/proc` scan.
    pub fn apply(&mut self, discovery: Discovery, now: Instant) {
        for pid in discovery.gone {
            self.untrack(pid);
        }
        for (pid, service) in discovery.add {
            self.track(pid, service, 0, now);
        }
        for s in &mut self.services {
            if s.targets.is_empty() && !s.waiting_logged {
                s.waiting_logged = true;
                warn!(
                    service = s.name.as_deref().unwrap_or("(unnamed)"),
                    origin = %s.spec.origin,
                    pids = ?s.spec.pids,
                    processes = ?s.spec.processes.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    ports = ?s.spec.ports,
                    "no process matches yet; waiting for one to appear"
                );
            }
        }
    }

    /// Periodic work: probe counters, fd bookkeeping, series expiry.
    pub fn tick(&mut self, now: Instant) {
        let lost = self.probes.counter(COUNTER_EVENTS_LOST);
        if lost > self.probe_lost {
            warn!(
                lost = lost - self.probe_lost,
                "probe records lost: the ring buffer was full"
            );
            self.metrics.events_lost.inc_by(lost - self.probe_lost);
            self.probe_lost = lost;
        }
        let full = self
            .probe_map_full
            .max(self.probes.counter(COUNTER_MAP_FULL));
        if full > self.probe_map_full {
            warn!(
                refused = full - self.probe_map_full,
                "a probe map is full; some sockets are not followed"
            );
            self.metrics.map_full.inc_by(full - self.probe_map_full);
            self.probe_map_full = full;
        }

        // Count the known socket fds per service; drop those of processes
        // that are no longer tracked.
        let mut per_service = vec![0i64; self.services.len()];
        let keys: Vec<FdKey> = self.probes.fds.keys().filter_map(Result::ok).collect();
        for key in keys {
            match self.tracked.get(&key.tgid) {
                Some(&service) => per_service[service as usize] += 1,
                None => {
                    let _ = self.probes.fds.remove(&key);
                }
            }
        }
        for (index, count) in per_service.into_iter().enumerate() {
            if let Some(name) = self.services[index].name.clone() {
                self.metrics
                    .tracked_sockets
                    .with_label_values(&[&name])
                    .set(count);
                for direction in Direction::ALL {
                    if self.conns.active(index as u32, direction) != 0 {
                        self.clock.touch(
                            catalogue::TCP_CONNECTIONS_ACTIVE.name,
                            &[&name, direction.as_str()],
                            now,
                        );
                    }
                }
            }
        }
        let live: Vec<(String, String)> = self
            .conns
            .live_peers()
            .map(|(service, peer)| (self.name(service).to_owned(), peer.to_owned()))
            .collect();
        for (name, peer) in &live {
            self.clock.touch(
                catalogue::TCP_CONNECTIONS_ACTIVE_BY_PEER.name,
                &[name, peer],
                now,
            );
        }
        for (metric, labels) in self.clock.sweep(now) {
            self.metrics.remove(metric, &labels);
            if metric == catalogue::TCP_CONNECTIONS_ACTIVE_BY_PEER.name
                && let Some(index) = self
                    .services
                    .iter()
                    .position(|s| s.name.as_deref() == Some(labels[0].as_str()))
            {
                self.peers.release(index as u32, &labels[1]);
            }
        }
    }

    fn tracked_snapshot(&self) -> HashMap<u32, u32> {
        self.tracked.clone()
    }
}

fn label_peer(peers: &mut LabelLimit, service: u32, peer: SocketAddr) -> String {
    peers.label(service, &peer.to_string())
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent-enough bookkeeping;
    // keep serving rather than poisoning every later access.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Scans `/proc` on the blocking pool and applies the result.
async fn rescan(state: &Arc<Mutex<State>>, specs: &Arc<Vec<ServiceSpec>>, owners: &mut PortOwners) {
    let tracked = lock(state).tracked_snapshot();
    let specs = Arc::clone(specs);
    let mut taken = std::mem::take(owners);
    let result = tokio::task::spawn_blocking(move || {
        let found = discovery::discover(
            &Procfs::default(),
            &specs,
            &tracked,
            std::process::id(),
            &mut taken,
        );
        (found, taken)
    })
    .await;
    match result {
        Ok((found, taken)) => {
            *owners = taken;
            lock(state).apply(found, Instant::now());
        }
        Err(err) => warn!(error = %err, "process scan failed"),
    }
}

async fn read_events(ring: RingBuf<MapData>, state: Arc<Mutex<State>>) -> Result<(), AgentError> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // until the `AsyncFd` (and with it the ring buffer) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| AgentError::Poll(err.into()))?;
    loop {
        let mut guard = ring.readable_mut().await.map_err(AgentError::Poll)?;
        loop {
            let mut batch = Vec::with_capacity(64);
            while batch.len() < EVENT_BATCH {
                let Some(item) = guard.get_inner_mut().next() else {
                    break;
                };
                batch.push(events::decode(&item));
            }
            if batch.is_empty() {
                break;
            }
            let now = Instant::now();
            let mut state = lock(&state);
            for event in batch {
                match event {
                    Ok(event) => state.on_event(event, now),
                    Err(err) => state.on_decode_error(&err),
                }
            }
        }
        guard.clear_ready();
    }
}

async fn shutdown_signal() -> Result<&'static str, AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let proc = Procfs::default();
    for spec in &config.services {
        if let Some(&pid) = spec.pids.iter().find(|&&pid| !proc.is_running(pid)) {
            return Err(AgentError::NoSuchPid {
                pid,
                origin: spec.origin.clone(),
            });
        }
    }
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = server::bind(config.listen).await?;
    let endpoint = Endpoint {
        metrics: metrics.clone(),
        ready: Arc::clone(&ready),
    };
    let server = tokio::spawn(server::serve(listener, endpoint));

    let mut probes = Probes::load()?;
    metrics.programs_attached.set(probes.attached as i64);
    let ring = probes
        .events
        .take()
        .expect("a freshly loaded probe set has its ring buffer");
    let state = Arc::new(Mutex::new(State::new(&config, probes, metrics)));
    let specs = Arc::new(config.services.clone());
    let mut owners = PortOwners::default();
    rescan(&state, &specs, &mut owners).await;
    ready.store(true, Ordering::Release);

    let mut events = tokio::spawn(read_events(ring, Arc::clone(&state)));
    let scans = {
        let state = Arc::clone(&state);
        let interval = config.rescan_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                rescan(&state, &specs, &mut owners).await;
            }
        })
    };
    let ticks = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                lock(&state).tick(Instant::now());
            }
        })
    };

    let outcome = tokio::select! {
        signal = shutdown_signal() => signal.map(|name| info!(signal = name, "shutting down")),
        ended = &mut events => match ended {
            Ok(Err(err)) => Err(err),
            _ => Ok(()),
        },
    };
    ready.store(false, Ordering::Release);
    events.abort();
    let _ = events.await;
    for task in [scans, ticks, server] {
        task.abort();
        let _ = task.await;
    }
    // Last owner: dropping the state detaches and unloads every probe.
    drop(state);
    info!("probes detached");
    outcome
}
