//! Programs that do nothing: `loupe check` loads and attaches each to learn
//! which hook types this kernel allows.
use aya_ebpf::{
    macros::{fentry, kprobe, raw_tracepoint, tracepoint, uprobe},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
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

#[kprobe]
pub fn loupe_check_kp(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "do_sys_openat2")]
pub fn loupe_check_fe(_ctx: FEntryContext) -> i32 {
    0
}
