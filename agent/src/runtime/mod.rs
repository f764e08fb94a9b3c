//! The running agent: [`run`] loads the probes, serves the endpoint and
//! starts the tasks that feed the [`State`]: probe records, `/proc` scans and
//! periodic upkeep.
mod accepts;
mod calls;
mod clients;
mod grpc;
mod mcp;
mod otel;
pub mod reload;
mod requests;
mod routes;
mod seed;
mod semantic;
mod served;
mod state;
mod upkeep;

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
pub use state::State;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{info, warn};

use crate::{
    capture::records,
    config::{Config, ServiceSpec},
    export::{
        Metrics,
        server::{self, BindError, Endpoint, web::Web},
    },
    kernel::{DataHookChoice, LoadError, Probes},
    privileges::{self, CAP_SYS_ADMIN, Caps, Holder, PrivilegeError, helper::Helper},
    targets::{
        discovery::{self, PortOwners, ScanGate},
        k8s::pods::SharedPods,
        procfs::Procfs,
    },
};

/// Distinct peers exported per service before `__other__`.
const MAX_PEERS: usize = 64;
/// How long a request's metric handles are reused before they are looked
/// up by their labels again, and how many are kept.
const RECENT_PERIOD: Duration = Duration::from_secs(1);
const MAX_RECENT: usize = 4096;
/// The longest time between two `/proc` scans when nothing the probes see
/// asks for one (see `ScanGate`).
const SAFETY_RESCAN: Duration = Duration::from_secs(30);
/// How often counters are read from the probes and idle series expire.
const TICK: Duration = Duration::from_secs(5);
/// Records handled per lock of the state.
const EVENT_BATCH: usize = 1024;
/// How often the ring buffer is read when the probes did not signal.
const EVENT_POLL: Duration = Duration::from_millis(10);

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
    #[error("cannot install the SIGTERM/SIGINT handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot poll the event ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent-enough bookkeeping;
    // keep serving rather than poisoning every later access.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Scans `/proc` on the blocking pool and applies the result.
async fn rescan(
    state: &Arc<Mutex<State>>,
    specs: &Arc<Vec<ServiceSpec>>,
    owners: &mut PortOwners,
    pods: &SharedPods,
) {
    let tracked = lock(state).tracked_snapshot();
    let specs = Arc::clone(specs);
    let pods = pods.snapshot();
    let mut taken = std::mem::take(owners);
    let result = tokio::task::spawn_blocking(move || {
        let found = discovery::discover(
            &Procfs::default(),
            &specs,
            &tracked,
            std::process::id(),
            &mut taken,
            &pods,
        );
        (found, taken)
    })
    .await;
    match result {
        Ok((found, taken)) => {
            *owners = taken;
            lock(state).apply(found);
        }
        Err(err) => warn!(error = %err, "process scan failed"),
    }
}

/// The privileged helper, started while the agent may still do what it
/// does (`CAP_SYS_ADMIN`).
fn start_helper() -> Helper {
    let may = privileges::current().is_ok_and(|(permitted, _)| permitted.has(CAP_SYS_ADMIN));
    if !may {
        return Helper::default();
    }
    Helper::start().unwrap_or_else(|err| {
        warn!(error = %err, "cannot start the privileged helper: no OpenAPI documents from services in other network namespaces, no TLS hooks for processes found later");
        Helper::default()
    })
}

/// Starts the OpenAPI fetches that are due.
fn start_fetches(state: &Arc<Mutex<State>>, helper: &Helper, now: Instant) {
    let (jobs, ports) = {
        let mut state = lock(state);
        (state.openapi_jobs(now), state.self_ports())
    };
    for job in jobs {
        routes::spawn_fetch(job, Arc::clone(state), ports.clone(), helper.clone());
    }
}

/// Hands every record waiting in the ring buffer to the state, decoding in
/// place (no copy, no allocation per record), a batch per lock.
fn drain(ring: &mut RingBuf<MapData>, state: &Mutex<State>) {
    loop {
        let mut state = lock(state);
        // The time of this batch's records, for series expiry.
        state.export.metrics.clock.set(Instant::now());
        for _ in 0..EVENT_BATCH {
            let Some(item) = ring.next() else {
                return;
            };
            match records::decode(&item) {
                Ok(event) => state.on_event(event),
                Err(err) => state.on_decode_error(&err),
            }
        }
    }
}

/// Reads the probes' records: on a short timer (the probes submit without
/// waking the reader, see `EVENTS_WAKEUP_BYTES`) and whenever the kernel
/// signals a backlog.
async fn read_events(ring: RingBuf<MapData>, state: Arc<Mutex<State>>) -> Result<(), AgentError> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // until the `AsyncFd` (and with it the ring buffer) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| AgentError::Poll(err.into()))?;
    let mut poll = tokio::time::interval(EVENT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(AgentError::Poll)?;
                drain(guard.get_inner_mut(), &state);
                guard.clear_ready();
            }
            _ = poll.tick() => drain(ring.get_mut(), &state),
        }
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

/// Collector-only mode (`loupe collect`): the collectors and `/metrics`,
/// no eBPF and no privileges, until SIGTERM or SIGINT.
pub async fn collect(config: Config, web: Option<Arc<Web>>) -> Result<(), AgentError> {
    let metrics = Metrics::new();
    let listener = server::bind(config.listen).await?;
    let endpoint = Endpoint {
        metrics: metrics.clone(),
        ready: Arc::new(AtomicBool::new(true)),
        web,
    };
    let server = tokio::spawn(server::serve(listener, endpoint));
    // Collectors need no capability at all.
    privileges::drop_to(Caps::default(), "collector")?;
    if config.collectors.is_empty() {
        warn!("no collector configured ([collectors] in the config file)");
    }
    let collectors = crate::collectors::spawn(&config.collectors, &metrics);
    info!(collectors = collectors.len(), "collecting");
    let outcome = shutdown_signal()
        .await
        .map(|name| info!(signal = name, "shutting down"));
    for task in collectors.into_iter().chain([server]) {
        task.abort();
        let _ = task.await;
    }
    outcome
}

/// The node's pod list, refreshed from the Kubernetes API when configured
/// (a collector named `kubernetes`, with the collectors' health metrics).
fn pod_lookup(
    config: &Config,
    pods: &SharedPods,
    metrics: &Metrics,
) -> Option<tokio::task::JoinHandle<()>> {
    let k8s = config.kubernetes.clone()?;
    #[cfg(feature = "kubernetes")]
    {
        let interval = k8s.refresh;
        let lookup = crate::targets::k8s::api::PodLookup::new(k8s, pods.clone());
        Some(tokio::spawn(crate::collectors::run(
            lookup,
            interval,
            config.collectors.timeout,
            metrics.clone(),
        )))
    }
    #[cfg(not(feature = "kubernetes"))]
    {
        let _ = (k8s, pods, metrics);
        warn!("built without the kubernetes feature: Kubernetes selectors match nothing");
        None
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(
    config: Config,
    data_hook: DataHookChoice,
    web: Option<Arc<Web>>,
    reload: Option<reload::Reloader>,
) -> Result<(), AgentError> {
    let proc = Procfs::default();
    for spec in &config.services {
        if let Some(&pid) = spec.pids.iter().find(|&&pid| !proc.is_running(pid)) {
            return Err(AgentError::NoSuchPid {
                pid,
                origin: spec.origin.clone(),
            });
        }
    }
    let metrics = Metrics::build(config.kubernetes.is_some(), config.export.otel);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = server::bind(config.listen).await?;
    let endpoint = Endpoint {
        metrics: metrics.clone(),
        ready: Arc::clone(&ready),
        web,
    };
    let server = tokio::spawn(server::serve(listener, endpoint));

    let helper = start_helper();
    let mut probes = Probes::load(data_hook)?;
    probes.set_uprobe_opener(Box::new(helper.clone()));
    // Before any other thread starts: they inherit what is kept.
    privileges::drop_to(
        Caps::kept_by(Holder::Agent, privileges::last_capability()),
        "agent",
    )?;
    metrics.programs_attached.set(probes.attached as i64);
    let ring = probes
        .events
        .take()
        .expect("a freshly loaded probe set has its ring buffer");
    let state = Arc::new(Mutex::new(State::new(&config, probes, metrics)));
    let specs = Arc::new(config.services.clone());
    let mut owners = PortOwners::default();
    let pods = SharedPods::default();
    let lookup = pod_lookup(&config, &pods, &lock(&state).export.metrics);
    if lookup.is_some() {
        lock(&state).place_in_pods(pods.clone());
        // Processes found before the node's pod list would be counted
        // without their pod: give the first lookup a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pods.snapshot().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    rescan(&state, &specs, &mut owners, &pods).await;
    crate::memory::release_free();
    ready.store(true, Ordering::Release);
    start_fetches(&state, &helper, Instant::now());

    let mut collectors = crate::collectors::spawn(&config.collectors, &lock(&state).export.metrics);
    collectors.extend(lookup);
    let mut events = tokio::spawn(read_events(ring, Arc::clone(&state)));
    collectors.push(tokio::spawn(reload::on_hangup(Arc::clone(&state), reload)));
    let scans = {
        let state = Arc::clone(&state);
        let interval = config.rescan_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut gate = ScanGate::new(SAFETY_RESCAN);
            loop {
                ticker.tick().await;
                let (changes, unsettled) = lock(&state).scan_inputs();
                if gate.due(Instant::now(), changes, &pods.snapshot(), unsettled) {
                    rescan(&state, &specs, &mut owners, &pods).await;
                }
            }
        })
    };
    let ticks = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                let now = Instant::now();
                lock(&state).tick(now);
                start_fetches(&state, &helper, now);
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
    for task in collectors.into_iter().chain([scans, ticks, server]) {
        task.abort();
        let _ = task.await;
    }
    // Last owner: dropping the state detaches and unloads every probe.
    drop(state);
    info!("probes detached");
    outcome
}
