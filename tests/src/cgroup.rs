//! A pod's container cgroup, laid out as the kubelet (systemd driver) and
//! containerd lay it out, for tests that select by container or pod.
use std::{fs, path::PathBuf};

pub const UID: &str = "7d3c9a1e-2b4f-4e6a-8c0d-1f2e3a4b5c6d";

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .expect("a cgroup2 mount")
}

/// A pod's container cgroup, removed (leaf first) when dropped.
pub struct PodCgroup {
    dirs: Vec<PathBuf>,
}

impl PodCgroup {
    pub fn create(id: &str) -> Self {
        let pod = format!("kubepods-besteffort-pod{}.slice", UID.replace('-', "_"));
        let mut path = cgroup2_root();
        let mut dirs = Vec::new();
        for part in [
            "kubepods.slice",
            "kubepods-besteffort.slice",
            &pod,
            &format!("cri-containerd-{id}.scope"),
        ] {
            path.push(part);
            fs::create_dir_all(&path).unwrap();
            dirs.push(path.clone());
        }
        Self { dirs }
    }

    pub fn enter(&self, pid: u32) {
        let leaf = self.dirs.last().unwrap();
        fs::write(leaf.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}
