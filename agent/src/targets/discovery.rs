//! Finding the processes each service's selectors match in `/proc`: by PID,
//! by command line, by listening TCP port, by container or pod (from
//! `/proc/PID/cgroup`), plus the descendants of every tracked process. Runs off the async runtime (it does blocking reads).
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use loupe_common::tcp;

use crate::{
    config::ServiceSpec,
    targets::{
        container::{self, Container},
        k8s::pods::PodIndex,
        procfs::Procfs,
    },
};

/// What one scan found, relative to the processes already tracked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Newly matched processes and their service index.
    pub add: Vec<(u32, u32)>,
    /// Tracked processes that are no longer running.
    pub gone: Vec<u32>,
}

/// Remembers which process owns a listening socket, so that the fds of every
/// process are only read when a listener appears that nobody owns yet.
#[derive(Debug, Default)]
pub struct PortOwners {
    owner: HashMap<u64, u32>,
}

/// Whether a `/proc` scan is due. A scan reads every process's `stat`
/// (and more for some selectors): on a node of thousands of processes that
/// costs more than everything else the idle agent does, so a scan runs only
/// when something that can change its answer happened since the last one:
/// the probes' count of execs, new listeners and tracked exits moved, the
/// pod index was replaced, or the last scan left a process to confirm
/// gone; and, as a safety net for what none of these show (a command line
/// rewritten without `exec`), at least every `safety`.
#[derive(Debug)]
pub struct ScanGate {
    safety: std::time::Duration,
    last: Option<(std::time::Instant, u64, Arc<PodIndex>)>,
}

impl ScanGate {
    pub fn new(safety: std::time::Duration) -> Self {
        Self { safety, last: None }
    }

    /// Whether to scan at `now`, given the probes' `changes` count, the
    /// pod index and whether the last scan is `unsettled`; a yes counts as
    /// the scan.
    pub fn due(
        &mut self,
        now: std::time::Instant,
        changes: u64,
        pods: &Arc<PodIndex>,
        unsettled: bool,
    ) -> bool {
        let quiet = self.last.as_ref().is_some_and(|(at, seen, index)| {
            *seen == changes
                && Arc::ptr_eq(index, pods)
                && now.saturating_duration_since(*at) < self.safety
        });
        if quiet && !unsettled {
            return false;
        }
        self.last = Some((now, changes, Arc::clone(pods)));
        true
    }
}

/// Scans `/proc`. `tracked` maps tracked PIDs to their service; `exclude` is
/// never matched (loupe itself); `pods` places containers in Kubernetes
/// pods (empty outside Kubernetes).
pub fn discover(
    proc: &Procfs,
    specs: &[ServiceSpec],
    tracked: &HashMap<u32, u32>,
    exclude: u32,
    owners: &mut PortOwners,
    pods: &PodIndex,
) -> Discovery {
    let mut parent = HashMap::new();
    for pid in proc.pids() {
        if let Some((ppid, state)) = proc.stat(pid)
            && state != 'Z'
            && state != 'X'
        {
            parent.insert(pid, ppid);
        }
    }
    let running = |pid: &u32| parent.contains_key(pid);

    let mut assigned: HashMap<u32, u32> = HashMap::new();
    let mut assign = |pid: u32, service: u32| {
        if pid != exclude {
            assigned.entry(pid).or_insert(service);
        }
    };
    for (&pid, &service) in tracked {
        if running(&pid) {
            assign(pid, service);
        }
    }
    // Read only when a service selects by container or pod, once per scan.
    let mut containers: Option<HashMap<u32, Container>> = None;
    // Listeners on every selected port, found in one pass over the
    // network namespaces (not one per service).
    let ports: HashSet<u16> = specs.iter().flat_map(|s| s.ports.iter().copied()).collect();
    let listeners = if ports.is_empty() {
        Vec::new()
    } else {
        owners.listening_on(proc, &ports, &parent)
    };
    for (index, spec) in specs.iter().enumerate() {
        let service = index as u32;
        for &pid in &spec.pids {
            if running(&pid) {
                assign(pid, service);
            }
        }
        if !spec.processes.is_empty() {
            for &pid in parent.keys() {
                if let Some(cmdline) = proc.cmdline(pid)
                    && !cmdline.is_empty()
                    && spec.processes.iter().any(|re| re.is_match(&cmdline))
                {
                    assign(pid, service);
                }
            }
        }
        for &(pid, port) in &listeners {
            if spec.ports.contains(&port) {
                assign(pid, service);
            }
        }
        if !spec.containers.is_empty() || !spec.pod_uids.is_empty() || spec.k8s.is_some() {
            let containers = containers.get_or_insert_with(|| {
                parent
                    .keys()
                    .filter_map(|&pid| Some((pid, container::parse(&proc.cgroup(pid)?))))
                    .filter(|(_, c)| !c.is_empty())
                    .collect()
            });
            for (&pid, c) in containers.iter() {
                let by_id = c.id.as_ref().is_some_and(|id| {
                    spec.containers
                        .iter()
                        .any(|prefix| id.starts_with(prefix.as_str()))
                });
                let by_pod = c
                    .pod_uid
                    .as_ref()
                    .is_some_and(|uid| spec.pod_uids.contains(uid));
                let by_k8s = spec.k8s.as_ref().is_some_and(|selector| {
                    pods.place(c.id.as_deref(), c.pod_uid.as_deref())
                        .is_some_and(|p| {
                            selector.matches(&p.pod.namespace, &p.pod.name, p.container)
                        })
                });
                if by_id || by_pod || by_k8s {
                    assign(pid, service);
                }
            }
        }
    }

    // Descendants inherit their ancestor's service.
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parent {
        children.entry(ppid).or_default().push(pid);
    }
    let mut queue: VecDeque<(u32, u32)> = assigned.iter().map(|(&p, &s)| (p, s)).collect();
    while let Some((pid, service)) = queue.pop_front() {
        for &child in children.get(&pid).into_iter().flatten() {
            if child != exclude && !assigned.contains_key(&child) {
                assigned.insert(child, service);
                queue.push_back((child, service));
            }
        }
    }

    let mut add: Vec<(u32, u32)> = assigned
        .into_iter()
        .filter(|(pid, _)| !tracked.contains_key(pid))
        .collect();
    add.sort_unstable();
    let mut gone: Vec<u32> = tracked.keys().copied().filter(|p| !running(p)).collect();
    gone.sort_unstable();
    Discovery { add, gone }
}

impl PortOwners {
    /// Processes with a TCP socket listening on one of `ports`, with the
    /// port (a process may appear once per port).
    fn listening_on(
        &mut self,
        proc: &Procfs,
        ports: &HashSet<u16>,
        running: &HashMap<u32, u32>,
    ) -> Vec<(u32, u16)> {
        // One representative process per network namespace.
        let mut namespaces: HashMap<u64, Vec<u32>> = HashMap::new();
        for &pid in running.keys() {
            if let Some(netns) = proc.netns(pid) {
                namespaces.entry(netns).or_default().push(pid);
            }
        }
        let mut found = HashSet::new();
        for pids in namespaces.values() {
            let listening: HashMap<u64, u16> = proc
                .tcp_rows(pids[0], |row| {
                    row.state == tcp::LISTEN && ports.contains(&row.local_port)
                })
                .into_iter()
                .map(|row| (row.inode, row.local_port))
                .collect();
            if listening.is_empty() {
                continue;
            }
            let known = |inode: &u64| {
                self.owner
                    .get(inode)
                    .is_some_and(|pid| running.contains_key(pid))
            };
            if !listening.keys().all(known) {
                // Someone new listens: learn who by reading fds.
                for &pid in pids {
                    for (_, inode) in proc.socket_fds(pid) {
                        if let Some(&port) = listening.get(&inode) {
                            self.owner.insert(inode, pid);
                            found.insert((pid, port));
                        }
                    }
                }
            }
            for (inode, &port) in &listening {
                if let Some(&pid) = self.owner.get(inode)
                    && running.contains_key(&pid)
                {
                    found.insert((pid, port));
                }
            }
        }
        self.owner.retain(|_, pid| running.contains_key(pid));
        let mut found: Vec<(u32, u16)> = found.into_iter().collect();
        found.sort_unstable();
        found
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::TcpListener,
        process::{Child, Command},
    };

    use regex::Regex;

    use super::*;

    fn spec(pids: Vec<u32>, processes: &[&str], ports: Vec<u16>) -> ServiceSpec {
        ServiceSpec {
            name: Some("t".into()),
            pids,
            processes: processes.iter().map(|p| Regex::new(p).unwrap()).collect(),
            ports,
            containers: Vec::new(),
            pod_uids: Vec::new(),
            k8s: None,
            routes: Vec::new(),
            exclude_paths: Vec::new(),
            origin: "test".into(),
        }
    }

    #[test]
    fn scans_when_something_changed_or_the_safety_interval_passed() {
        let start = std::time::Instant::now();
        let secs = |s: u64| start + std::time::Duration::from_secs(s);
        let mut gate = ScanGate::new(std::time::Duration::from_secs(30));
        let pods = Arc::new(PodIndex::default());
        assert!(gate.due(secs(0), 7, &pods, false), "the first scan");
        assert!(!gate.due(secs(1), 7, &pods, false));
        assert!(gate.due(secs(2), 8, &pods, false), "an exec or a listener");
        assert!(!gate.due(secs(3), 8, &pods, false));
        assert!(
            gate.due(secs(4), 8, &pods, true),
            "a process to confirm gone"
        );
        let replaced = Arc::new(PodIndex::default());
        assert!(gate.due(secs(5), 8, &replaced, false), "new pods");
        assert!(!gate.due(secs(34), 8, &replaced, false));
        assert!(gate.due(secs(35), 8, &replaced, false), "the safety net");
    }

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper(tag: &str) -> Kill {
        // `sh -c` keeps a recognisable command line.
        Kill(
            Command::new("sh")
                .args(["-c", &format!("sleep 30; : {tag}")])
                .spawn()
                .unwrap(),
        )
    }

    #[test]
    fn matches_pid_command_line_and_descendants() {
        let proc = Procfs::default();
        let tag = format!("loupe-discovery-{}", std::process::id());
        let child = sleeper(&tag);
        let pid = child.0.id();
        // Wait until `sh` has forked `sleep`.
        let mut found = Discovery::default();
        for _ in 0..100 {
            found = discover(
                &proc,
                &[spec(vec![], &[&tag], vec![])],
                &HashMap::new(),
                0,
                &mut PortOwners::default(),
                &PodIndex::default(),
            );
            if found.add.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(found.add.contains(&(pid, 0)), "{found:?}");
        assert_eq!(found.add.len(), 2, "sh and its sleep child: {found:?}");

        let by_pid = discover(
            &proc,
            &[spec(vec![pid], &[], vec![])],
            &HashMap::new(),
            pid,
            &mut PortOwners::default(),
            &PodIndex::default(),
        );
        assert!(!by_pid.add.iter().any(|(p, _)| *p == pid), "excluded pid");
    }

    #[test]
    fn reports_tracked_processes_that_are_gone() {
        let proc = Procfs::default();
        let mut child = sleeper("gone");
        let pid = child.0.id();
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let tracked = HashMap::from([(pid, 0)]);
        let found = discover(
            &proc,
            &[],
            &tracked,
            0,
            &mut PortOwners::default(),
            &PodIndex::default(),
        );
        assert_eq!(found.gone, vec![pid]);
    }

    #[test]
    fn finds_the_owner_of_a_listening_port() {
        let proc = Procfs::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        let mut owners = PortOwners::default();
        let found = discover(
            &proc,
            &[spec(vec![], &[], vec![port])],
            &HashMap::new(),
            0,
            &mut owners,
            &PodIndex::default(),
        );
        assert!(found.add.contains(&(me, 0)), "{found:?}");
        // The second scan resolves the owner from the cache.
        let again = discover(
            &proc,
            &[spec(vec![], &[], vec![port])],
            &HashMap::new(),
            0,
            &mut owners,
            &PodIndex::default(),
        );
        assert!(again.add.contains(&(me, 0)));
        let unused = discover(
            &proc,
            &[spec(vec![], &[], vec![1])],
            &HashMap::new(),
            0,
            &mut owners,
            &PodIndex::default(),
        );
        assert!(unused.add.is_empty(), "{unused:?}");
    }
}
