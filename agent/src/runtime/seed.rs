//! Entering what `/proc` shows of a tracked process into the probes' maps:
//! its TCP socket fds, its listening ports and the connections it had open
//! before loupe saw it.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
};

use loupe_common::{
    maps::{
        CONN_SEEDED, DIRECTION_INBOUND, DIRECTION_OUTBOUND, FdInfo, FdKey, ListenKey, ROLE_INBOUND,
        ROLE_LISTENER, ROLE_OUTBOUND, SWITCH_PREEXISTING, SockOwner, TupleKey,
    },
    tcp,
};
use tracing::warn;

use super::state::{State, ip_of, label_peer};
use crate::{
    capture::streams::{StreamKey, monotonic_ns},
    protocols::detect::well_known,
};

/// `bpf_map_update_elem` flag: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

impl State {
    /// Inode number of the process's network namespace as the probes see
    /// it: 0 when they do not tell namespaces apart.
    fn netns(&self, pid: u32) -> u32 {
        if self.kernel.probes.netns_aware {
            // Namespace inode numbers are 32-bit in the kernel.
            self.targets.proc.netns(pid).map_or(0, |inode| inode as u32)
        } else {
            0
        }
    }

    /// `socket inode -> fd` of the process's socket fds.
    fn socket_inodes(&self, pid: u32) -> HashMap<u64, u32> {
        self.targets
            .proc
            .socket_fds(pid)
            .into_iter()
            .map(|(fd, inode)| (inode, fd))
            .collect()
    }

    /// Enters a socket fd in the probes' map; returns the connection id its
    /// records carry.
    fn file_fd(&mut self, pid: u32, fd: u32, service: u32, role: u32) -> u64 {
        let key = FdKey { tgid: pid, fd };
        self.kernel.seeded_conns += 1;
        let info = FdInfo::new(service, role, CONN_SEEDED | self.kernel.seeded_conns);
        // BPF_NOEXIST: a probe that filed the fd first knows it better.
        match self.kernel.probes.fds.insert(key, info, BPF_NOEXIST) {
            Ok(()) => info.conn,
            Err(_) => self
                .kernel
                .probes
                .fds
                .get(&key, 0)
                .map_or(info.conn, |i| i.conn),
        }
    }

    pub(super) fn seed(&mut self, pid: u32, service: u32) {
        let fds = self.socket_inodes(pid);
        if fds.is_empty() {
            return;
        }
        let netns = self.netns(pid);
        let rows = self
            .targets
            .proc
            .tcp_rows(pid, |row| fds.contains_key(&row.inode));
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
            if self.kernel.probes.listeners.insert(key, owner, 0).is_ok() {
                let s = &mut self.targets.services[service as usize];
                s.listeners.insert(key);
                let addr = SocketAddr::new(ip_of(&row.local_addr), row.local_port);
                if !s.listen_addrs.contains(&addr) {
                    s.listen_addrs.push(addr);
                }
            }
            self.file_fd(pid, fds[&row.inode], service, ROLE_LISTENER);
        }
        let mut seeded = Vec::new();
        let mut clients = false;
        for row in rows.iter().filter(|row| row.is_connection()) {
            let local = ListenKey {
                netns,
                port: row.local_port,
                _pad: 0,
            };
            let (direction, role) = if self.targets.services[service as usize]
                .listeners
                .contains(&local)
            {
                (DIRECTION_INBOUND, ROLE_INBOUND)
            } else {
                (DIRECTION_OUTBOUND, ROLE_OUTBOUND)
            };
            if direction == DIRECTION_INBOUND
                && self
                    .capture
                    .self_ports
                    .contains(ip_of(&row.local_addr), row.remote_port)
            {
                // The agent's own connection (an OpenAPI fetch) in a forked
                // handler: its records are left out, so must its seed be (it
                // would stay active for ever).
                continue;
            }
            let conn = self.file_fd(pid, fds[&row.inode], service, role);
            if direction == DIRECTION_OUTBOUND
                && let Some(known) = well_known(row.remote_port)
            {
                // A pooled connection to a database or Redis, idle since
                // before loupe: in the pool gauges from the first scrape.
                let key = StreamKey { tgid: pid, conn };
                self.capture
                    .streams
                    .seed_client(key, service, known, monotonic_ns());
                clients = true;
            }
            let owner = SockOwner { service, direction };
            let tuple = row.tuple();
            let peers = &mut self.capture.peers;
            let Some(delta) = self
                .capture
                .conns
                .seed(owner, tuple, |s, peer| label_peer(peers, s, peer))
            else {
                continue; // known already (a socket shared with the parent)
            };
            self.publish(&delta);
            if self
                .kernel
                .probes
                .preexisting
                .insert(tuple, owner, 0)
                .is_err()
            {
                warn!(
                    pid,
                    "the map of pre-existing connections is full; not counting one"
                );
                if let Some(delta) = self.capture.conns.unseed(&tuple) {
                    self.publish(&delta);
                }
                continue;
            }
            seeded.push(tuple);
        }
        if clients {
            self.publish_client_connections();
        }
        if !seeded.is_empty() {
            // On before any of them changes state again.
            self.kernel.probes.set_switch(SWITCH_PREEXISTING, true);
            self.verify_seeded(pid, &seeded);
        }
    }

    /// A connection that closed between reading `/proc` and entering it in
    /// the probes' map was never seen closing: read `/proc` again and drop
    /// what is gone.
    fn verify_seeded(&mut self, pid: u32, seeded: &[TupleKey]) {
        let seeded_set: HashSet<&TupleKey> = seeded.iter().collect();
        let open: HashSet<TupleKey> = self
            .targets
            .proc
            .tcp_rows(pid, |row| {
                row.is_connection() && seeded_set.contains(&row.tuple())
            })
            .into_iter()
            .map(|row| row.tuple())
            .collect();
        for tuple in seeded.iter().filter(|tuple| !open.contains(tuple)) {
            let _ = self.kernel.probes.preexisting.remove(tuple);
            if let Some(delta) = self.capture.conns.unseed(tuple) {
                self.publish(&delta);
            }
        }
    }

    /// Files the process's inbound connections that the probes have not
    /// filed: what an `accept` that began before fexit was attached
    /// returned, if no data syscall has come on it yet (one that came
    /// filed it already; `file_fd` leaves such an entry alone).
    pub(super) fn file_accepted(&mut self, pid: u32, service: u32) {
        let fds = self.socket_inodes(pid);
        let netns = self.netns(pid);
        let listeners = &self.targets.services[service as usize].listeners;
        let rows = self.targets.proc.tcp_rows(pid, |row| {
            let local = ListenKey {
                netns,
                port: row.local_port,
                _pad: 0,
            };
            row.is_connection() && fds.contains_key(&row.inode) && listeners.contains(&local)
        });
        for row in rows {
            self.file_fd(pid, fds[&row.inode], service, ROLE_INBOUND);
        }
    }

    /// After `exec` the close-on-exec fds are gone without a `close()`:
    /// forget the process's fds and file them again.
    pub(super) fn reseed(&mut self, pid: u32, service: u32) {
        crate::kernel::remove_keys(&mut self.kernel.probes.fds, |key| key.tgid == pid);
        self.seed(pid, service);
    }
}
