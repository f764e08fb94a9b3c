//! Which processes loupe watches: services selected by PID, name or port,
//! found in `/proc`, placed in their Kubernetes pod and container, named,
//! and the OpenSSL libraries they load (whose plaintext uprobes read).
pub mod container;
pub mod discovery;
pub mod k8s;
pub mod late_accepts;
pub mod naming;
pub mod procfs;
pub mod tls;
