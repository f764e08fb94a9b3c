//! What loupe reads from the kernel and the system: /proc files (cgroups
//! and memory maps too), tracepoint formats, BTF, the ELF symbol tables of
//! the files that may hold OpenSSL; and the Kubernetes API's pod list.
use crate::{
    kernel,
    targets::{container, k8s, procfs, tls},
};

pub fn run(data: &[u8]) {
    let _ = kernel::btf::Btf::parse(data).map(|btf| kernel::btf::kernel_offsets(&btf));
    let text = String::from_utf8_lossy(data);
    let _ = procfs::parse_net_tcp(&text);
    let _ = procfs::parse_stat(&text);
    let _ = procfs::parse_socket_link(&text);
    let _ = procfs::parse_ns_link(&text);
    let _ = procfs::parse_syscall(&text);
    let _ = procfs::parse_switches(&text);
    let _ = procfs::parse_cmdline(data);
    let _ = container::parse(&text);
    let _ = k8s::pods::PodIndex::parse(data);
    let _ = kernel::tracefs::parse_format(&text);
    let _ = kernel::tracefs::mount_points(&text, "tracefs");
    let _ = tls::maps::tls_candidates(&text, Some("/usr/bin/node"));
    let _ = tls::elf::function_offsets(data, &["SSL_read", "SSL_write_ex", "SSL_free"]);
}
