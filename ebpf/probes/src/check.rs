//! Programs that do nothing: `loupe check` loads and attaches each to learn
//! which hook types this kernel allows, and the benchmark's floor runs them
//! on loupe's own hooks (what the hooks cost by themselves).
use aya_ebpf::{
    macros::{fentry, kprobe, raw_tracepoint, tracepoint, uprobe, uretprobe},
    programs::{
        FEntryContext, ProbeContext, RawTracePointContext, RetProbeContext, TracePointContext,
    },
};

#[tracepoint]
pub fn loupe_check_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn loupe_check_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

#[uprobe]
pub fn loupe_check_up(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub fn loupe_check_uret(_ctx: RetProbeContext) -> u32 {
    0
}

#[kprobe]
pub fn loupe_check_kp(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "do_sys_openat2")]
pub fn loupe_check_fe(_ctx: FEntryContext) -> i32 {
    0
}
