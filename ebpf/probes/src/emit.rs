//! Writing records to the `EVENTS` ring buffer. A full buffer is counted in
//! `COUNTER_EVENTS_LOST`, never silently dropped.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    maps::ring_buf::RingBufEntry,
};
use loupe_common::{
    event::Header,
    maps::{COUNTER_EVENTS_LOST, EVENTS_WAKEUP_BYTES},
};

use crate::maps::{EVENTS, bump};

#[inline(always)]
pub fn header(kind: u32, tgid: u32) -> Header {
    Header {
        kind,
        tgid,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Hands a filled record to the agent. The agent is woken only when a
/// backlog builds up; otherwise it collects records on its polling timer.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    entry.submit(wake_flags());
}

/// The flags of a record handed over: wake the agent only when a backlog
/// builds up.
#[inline(always)]
pub fn wake_flags() -> u64 {
    let wake = EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= EVENTS_WAKEUP_BYTES;
    u64::from(if wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    })
}

/// Copies `record` into the ring buffer.
#[inline(always)]
pub fn emit<T: Copy + 'static>(record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            submit(entry);
        }
        None => bump(COUNTER_EVENTS_LOST),
    }
}
