//! Least privilege. loupe starts with the capabilities it needs to load its
//! probes; once they are loaded it keeps only those it still uses, in the
//! permitted and effective sets, sets `no_new_privs`, and checks every
//! thread. What still needs `CAP_SYS_ADMIN` afterwards (a uprobe for a
//! process found later, a socket in a target's network namespace) is done
//! by a helper process that keeps that capability ([`helper`]).
//!
//! Capabilities are per thread: [`restrict`] changes the calling thread,
//! and the threads it starts later inherit the result. The agent restricts
//! itself before its runtime starts any other thread, and [`check_threads`]
//! proves it.
use std::{fmt, fs, io};

pub mod helper;

/// A capability loupe uses, and when.
pub struct Capability {
    pub bit: u32,
    pub name: &'static str,
    /// What it is used for at start-up.
    pub start: &'static str,
    /// Who still uses it afterwards, and what for (empty: dropped once the
    /// probes are loaded).
    pub after: &'static [(Holder, &'static str)],
}

/// Who keeps a capability after start-up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Holder {
    Agent,
    Helper,
}

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Every capability loupe uses: the set the DaemonSet grants, no more.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        bit: CAP_BPF,
        name: "CAP_BPF",
        start: "create maps, load programs",
        after: &[(
            Holder::Agent,
            "read and update the maps, attach programs (kernels before 6.5 refuse any bpf() \
             call without it)",
        )],
    },
    Capability {
        bit: CAP_PERFMON,
        name: "CAP_PERFMON",
        start: "attach tracepoints; let programs read memory",
        after: &[],
    },
    Capability {
        bit: CAP_SYS_PTRACE,
        name: "CAP_SYS_PTRACE",
        start: "read other processes' /proc/PID/fd, maps, root and ns/net",
        after: &[
            (Holder::Agent, "the same, for processes found later"),
            (Holder::Helper, "uprobes for processes of other users"),
        ],
    },
    Capability {
        bit: CAP_DAC_READ_SEARCH,
        name: "CAP_DAC_READ_SEARCH",
        start: "read those /proc entries of processes that run as other users",
        after: &[(Holder::Agent, "the same, for processes found later")],
    },
    Capability {
        bit: CAP_SYS_ADMIN,
        name: "CAP_SYS_ADMIN",
        start: "mount tracefs when missing",
        after: &[(
            Holder::Helper,
            "create uprobes (the kernel asks for it); make sockets in other network \
             namespaces (setns)",
        )],
    },
    Capability {
        bit: CAP_SYS_RESOURCE,
        name: "CAP_SYS_RESOURCE",
        start: "raise RLIMIT_MEMLOCK (kernels before 5.11) and RLIMIT_NOFILE",
        after: &[],
    },
];

/// A set of capabilities, one bit each.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Caps(pub u64);

impl Caps {
    pub fn of(bits: impl IntoIterator<Item = u32>) -> Self {
        Self(bits.into_iter().fold(0, |set, bit| set | 1 << bit))
    }

    pub const fn has(self, bit: u32) -> bool {
        self.0 & (1 << bit) != 0
    }

    pub const fn within(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// What the holder keeps after start-up, on a kernel whose highest
    /// capability is `last` (kernels before 5.8 know no `CAP_BPF`, and let
    /// only `CAP_SYS_ADMIN` do its part).
    pub fn kept_by(holder: Holder, last: u32) -> Self {
        let mut kept = Self::of(
            CAPABILITIES
                .iter()
                .filter(|cap| cap.after.iter().any(|&(h, _)| h == holder))
                .map(|cap| cap.bit),
        );
        if holder == Holder::Agent && last < CAP_BPF {
            kept.0 &= !(1 << CAP_BPF);
            kept.0 |= 1 << CAP_SYS_ADMIN;
        }
        kept
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for bit in (0..64).filter(|&bit| self.has(bit)) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match CAPABILITIES.iter().find(|cap| cap.bit == bit) {
                Some(cap) => f.write_str(cap.name)?,
                None => write!(f, "capability {bit}")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    #[error("cannot read this thread's capabilities (capget): {0}")]
    Get(#[source] io::Error),
    #[error("cannot reduce this thread's capabilities to {keep} (capset): {source}")]
    Set {
        keep: Caps,
        #[source]
        source: io::Error,
    },
    #[error("cannot read /proc/self/task to check every thread's capabilities: {0}")]
    Tasks(#[source] io::Error),
    #[error(
        "thread {tid} ({name}) still holds {extra} after start-up; it was started before \
         the capabilities were dropped (a bug: please report it)"
    )]
    Thread { tid: u32, name: String, extra: Caps },
}

/// The highest capability this kernel knows.
pub fn last_capability() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's permitted and effective sets.
pub fn current() -> Result<(Caps, Caps), PrivilegeError> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and the two data words it reads into.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Get(io::Error::last_os_error()));
    }
    let join = |pick: fn(&CapData) -> u32| {
        Caps(u64::from(pick(&data[0])) | u64::from(pick(&data[1])) << 32)
    };
    Ok((join(|d| d.permitted), join(|d| d.effective)))
}

/// Sets `no_new_privs` and keeps only `keep` (of what the thread has) in
/// its permitted and effective sets; the inheritable and ambient sets are
/// emptied, and so is the bounding set where `CAP_SETPCAP` allows it.
/// Returns what is kept.
pub fn restrict(keep: Caps) -> Result<Caps, PrivilegeError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(io::Error::last_os_error()));
    }
    let (permitted, _) = current()?;
    let keep = Caps(keep.0 & permitted.0);
    if permitted.has(CAP_SETPCAP) {
        for bit in (0..=last_capability()).filter(|&bit| !keep.has(bit)) {
            // SAFETY: as above. A bit the kernel does not know is refused
            // with EINVAL, which changes nothing.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) };
        }
    }
    // SAFETY: as above (EINVAL before Linux 4.3, which has no ambient set).
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let word = |half: u32| (keep.0 >> (32 * half)) as u32;
    let data = [0, 1].map(|half| CapData {
        effective: word(half),
        permitted: word(half),
        inheritable: 0,
    });
    // SAFETY: a version-3 header and two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Set {
            keep,
            source: io::Error::last_os_error(),
        });
    }
    Ok(keep)
}

/// One thread's sets, from its `/proc/.../status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ThreadCaps {
    pub permitted: Caps,
    pub effective: Caps,
    pub bounding: Caps,
    pub no_new_privs: bool,
}

/// Reads the capability lines of a `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Option<ThreadCaps> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let caps = |name: &str| Some(Caps(u64::from_str_radix(field(name)?, 16).ok()?));
    Some(ThreadCaps {
        permitted: caps("CapPrm")?,
        effective: caps("CapEff")?,
        bounding: caps("CapBnd")?,
        no_new_privs: field("NoNewPrivs")? == "1",
    })
}

/// Checks that no thread of this process holds more than `keep`.
pub fn check_threads(keep: Caps) -> Result<(), PrivilegeError> {
    for entry in fs::read_dir("/proc/self/task").map_err(PrivilegeError::Tasks)? {
        let path = entry.map_err(PrivilegeError::Tasks)?.path();
        // A thread that ended meanwhile has nothing left to check.
        let Ok(status) = fs::read_to_string(path.join("status")) else {
            continue;
        };
        let Some(caps) = parse_status(&status) else {
            continue;
        };
        let extra = Caps((caps.permitted.0 | caps.effective.0) & !keep.0);
        if extra.0 != 0 {
            let tid = path
                .file_name()
                .and_then(|name| name.to_str()?.parse().ok())
                .unwrap_or(0);
            let name = fs::read_to_string(path.join("comm")).unwrap_or_default();
            return Err(PrivilegeError::Thread {
                tid,
                name: name.trim().to_owned(),
                extra,
            });
        }
    }
    Ok(())
}

/// Keeps `keep` in this (still single-threaded) process and proves it for
/// every thread; logs what is kept.
pub fn drop_to(keep: Caps, role: &'static str) -> Result<Caps, PrivilegeError> {
    let kept = restrict(keep)?;
    check_threads(kept)?;
    tracing::info!(role, kept = %kept, "capabilities dropped; no_new_privs set");
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_keeps_what_it_uses_later_and_the_helper_what_it_does() {
        let agent = Caps::kept_by(Holder::Agent, 40);
        assert_eq!(
            agent.to_string(),
            "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_BPF"
        );
        assert!(!agent.has(CAP_SYS_ADMIN));
        assert_eq!(
            Caps::kept_by(Holder::Helper, 40).to_string(),
            "CAP_SYS_PTRACE, CAP_SYS_ADMIN"
        );
        // Before CAP_BPF existed, CAP_SYS_ADMIN did its part.
        assert_eq!(
            Caps::kept_by(Holder::Agent, 37).to_string(),
            "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN"
        );
        assert_eq!(Caps(1 << 5).to_string(), "capability 5");
        assert_eq!(Caps(0).to_string(), "none");
    }

    #[test]
    fn reads_the_capability_lines_of_a_status_file() {
        let status = "Name:\tloupe\nCapInh:\t0000000000000000\nCapPrm:\t0000008000080004\n\
                      CapEff:\t0000008000080004\nCapBnd:\t000001ffffffffff\n\
                      CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let caps = parse_status(status).unwrap();
        assert_eq!(caps.permitted, Caps::kept_by(Holder::Agent, 40));
        assert_eq!(caps.effective, caps.permitted);
        assert!(caps.no_new_privs);
        assert!(caps.permitted.within(caps.bounding));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }
}
