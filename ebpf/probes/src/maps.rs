//! The maps every probe shares, and small helpers around them.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use loupe_common::{
    layout::{FileOffsets, KernelOffsets},
    maps::{
        CAPTURE_RAISES_CAPACITY, CAPTURE_ROUTES_LEN, COUNTER_MAP_FULL, COUNTERS_LEN, CaptureRoute,
        ConnKey, EVENTS_BYTES, FDS_CAPACITY, FdInfo, FdKey, LATE_ACCEPTS_CAPACITY,
        LISTENERS_CAPACITY, ListenKey, PENDING_FD_CAPACITY, PREEXISTING_CAPACITY, SOCKETS_CAPACITY,
        SWITCH_RAISES, SWITCHES_LEN, SockOwner, TLS_CALLS_CAPACITY, TLS_CONNS_CAPACITY,
        TRACKED_BITS_WORDS, TRACKED_CAPACITY, Target, TlsCall, TlsKey, TupleKey,
    },
};

#[map]
pub static TRACKED: HashMap<u32, Target> = HashMap::with_max_entries(TRACKED_CAPACITY, 0);

/// `BPF_F_MMAPABLE` (Linux 5.5).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Mappable: the agent sets and clears bits in place, atomically.
#[map]
pub static TRACKED_BITS: Array<u64> = Array::with_max_entries(TRACKED_BITS_WORDS, BPF_F_MMAPABLE);

#[map]
pub static FDS: HashMap<FdKey, FdInfo> = HashMap::with_max_entries(FDS_CAPACITY, 0);

#[map]
pub static LISTENERS: HashMap<ListenKey, SockOwner> =
    HashMap::with_max_entries(LISTENERS_CAPACITY, 0);

#[map]
pub static SOCKETS: HashMap<u64, SockOwner> = HashMap::with_max_entries(SOCKETS_CAPACITY, 0);

#[map]
pub static PREEXISTING: HashMap<TupleKey, SockOwner> =
    HashMap::with_max_entries(PREEXISTING_CAPACITY, 0);

/// Not an LRU map (an LRU update costs several times a plain one): entries
/// are removed when consumed, and the agent sweeps those of dead threads.
#[map]
pub static PENDING_FD: HashMap<u32, u32> = HashMap::with_max_entries(PENDING_FD_CAPACITY, 0);

#[map]
pub static LATE_ACCEPTS: HashMap<u32, u32> = HashMap::with_max_entries(LATE_ACCEPTS_CAPACITY, 0);

#[map]
pub static TLS_CONNS: LruHashMap<TlsKey, FdInfo> =
    LruHashMap::with_max_entries(TLS_CONNS_CAPACITY, 0);

#[map]
pub static TLS_CALLS: LruHashMap<u64, TlsCall> =
    LruHashMap::with_max_entries(TLS_CALLS_CAPACITY, 0);

#[map]
pub static CAPTURE_RAISES: HashMap<ConnKey, u32> =
    HashMap::with_max_entries(CAPTURE_RAISES_CAPACITY, 0);

#[map]
pub static SWITCHES: Array<u32> = Array::with_max_entries(SWITCHES_LEN, 0);

#[map]
pub static CAPTURE_ROUTES: Array<CaptureRoute> = Array::with_max_entries(CAPTURE_ROUTES_LEN, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Set by the agent at load time from the running kernel's BTF.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    sock_net: 0,
    net_inum: 0,
    files_valid: 0,
    files: FileOffsets {
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_inode: 0,
        file_private: 0,
        inode_mode: 0,
        socket_sk: 0,
    },
};

#[inline(always)]
pub fn kernel_offsets() -> KernelOffsets {
    // SAFETY: a plain read of a global the loader may have rewritten; volatile
    // so that the compiler does not fold the default value in.
    unsafe { core::ptr::read_volatile(&raw const KERNEL_OFFSETS) }
}

/// Reads a value of kernel memory at `addr` (through offsets the agent
/// resolved from BTF).
#[inline(always)]
pub fn read_kernel<T>(addr: u64) -> Option<T> {
    // SAFETY: a checked kernel read (`bpf_probe_read_kernel` faults safely).
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// `(tgid, tid)` of the current task.
#[inline(always)]
pub fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// Whether `tgid` may be tracked: one array read (the verifier inlines
/// array lookups). False means certainly not tracked.
#[inline(always)]
pub fn maybe_tracked(tgid: u32) -> bool {
    TRACKED_BITS
        .get(tgid >> 6)
        .is_some_and(|word| word & (1 << (tgid & 63)) != 0)
}

/// Marks `tgid` tracked in the bitmap with an atomic add (`lock +=`,
/// which every kernel's BPF has): the agent clears the bits of processes
/// that are gone, and other CPUs mark theirs, in the same words meanwhile.
/// A bit is set once, by the fork that makes its process (so adding it
/// cannot carry into the next).
#[inline(always)]
pub fn mark_tracked(tgid: u32) {
    let bit: u64 = 1 << (tgid & 63);
    if let Some(word) = TRACKED_BITS.get_ptr_mut(tgid >> 6) {
        // SAFETY: pointer into the array's value (8-aligned); an atomic
        // add of a bit that is clear.
        unsafe {
            if *word & bit == 0 {
                core::arch::asm!(
                    "lock *(u64 *)({word} + 0) += {bit}",
                    word = in(reg) word,
                    bit = in(reg) bit,
                    options(nostack),
                );
            }
        }
    }
}

/// Reads a field of the tracepoint record directly (tracepoint programs may
/// load from their context; no helper call).
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` is a field of the record (checked against the format
    // by the agent); the verifier checks the bounds of context accesses.
    unsafe { ctx.as_ptr().cast::<u8>().add(offset).cast::<T>().read() }
}

/// The tracked process `tgid`, if any.
#[inline(always)]
pub fn tracked(tgid: u32) -> Option<Target> {
    TRACKED.get_ptr(tgid).map(|target| {
        // SAFETY: the pointer comes from a successful lookup; `Target` is
        // plain data, a concurrently replaced value is still a valid one.
        unsafe { *target }
    })
}

/// Whether the agent turned a switch on.
#[inline(always)]
pub fn switch(index: u32) -> bool {
    switch_value(index) != 0
}

/// The value the agent set in a switch (0 if unset).
#[inline(always)]
pub fn switch_value(index: u32) -> u32 {
    SWITCHES.get(index).copied().unwrap_or(0)
}

/// Adds the capture budget the agent raised for the connection `info` of
/// process `tgid`, if it did (`CAPTURE_RAISES`), and consumes it.
#[inline(always)]
pub fn take_raise(tgid: u32, info: *mut FdInfo) {
    if switch_value(SWITCH_RAISES) == 0 {
        return;
    }
    // SAFETY: in-place reads and updates of the looked-up value.
    unsafe {
        let key = ConnKey {
            tgid,
            _pad: 0,
            conn: (*info).conn,
        };
        if let Some(&bytes) = CAPTURE_RAISES.get(key) {
            if bytes > (*info).capture {
                (*info).capture = bytes;
            }
            let _ = CAPTURE_RAISES.remove(key);
        }
    }
}

#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *slot += 1 };
    }
}

/// Inserts into a hash map, counting a refusal (map full) instead of hiding it.
#[inline(always)]
pub fn insert<K, V>(map: &HashMap<K, V>, key: &K, value: &V) {
    if map.insert(key, value, 0).is_err() {
        bump(COUNTER_MAP_FULL);
    }
}
