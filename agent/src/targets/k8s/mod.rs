//! Kubernetes: which pod and container a process belongs to. The pod list
//! of the agent's node comes from the API server (read-only access to pods,
//! nothing else), refreshed on a schedule; `/proc/PID/cgroup` names each
//! process's container and pod (see `container`).
#[cfg(feature = "kubernetes")]
pub mod api;
pub mod pods;
