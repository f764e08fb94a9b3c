//! loupe: an eBPF-assisted Prometheus metrics agent. It attaches to the
//! processes of a service, measures their TCP connections (and, as it grows,
//! their requests and queries) from the kernel, and serves the result on one
//! `/metrics` endpoint.
//!
//! Layout: [`cli`] and [`config`] turn flags and the file into a [`config::Config`];
//! [`agent`] runs it: [`discovery`] finds processes in [`procfs`], [`ebpf`] loads
//! the probes, [`events`] decodes their records, [`connections`] keeps the
//! picture, [`metrics`] exports it through [`server`]. [`check`] is the
//! preflight report.
pub mod agent;
pub mod check;
pub mod cli;
pub mod config;
pub mod connections;
pub mod discovery;
pub mod ebpf;
pub mod events;
pub mod metrics;
pub mod procfs;
pub mod server;
