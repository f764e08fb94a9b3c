//! Writing records to the `EVENTS` ring buffer. A full buffer is counted in
//! `COUNTER_EVENTS_LOST`, never silently dropped.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use loupe_common::{event::Header, maps::COUNTER_EVENTS_LOST};

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

/// Copies `record` into the ring buffer.
#[inline(always)]
pub fn emit<T: Copy + 'static>(record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(0);
        }
        None => bump(COUNTER_EVENTS_LOST),
    }
}
