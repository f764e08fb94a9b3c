//! Keeping the agent's resident memory near what it uses (glibc only;
//! other C libraries keep their defaults).
//!
//! Two glibc behaviours inflate an agent's RSS: every thread that allocates
//! may get its own arena (the runtime's blocking threads read `/proc`, each
//! arena keeps what it once held), and memory freed below the top of the
//! heap is kept (the kernel's BTF, parsed once at start-up, leaves a hole of
//! about 15 MB).

/// One arena for all threads: the agent's work is serialised by one lock
/// anyway. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a glibc tuning call with a valid parameter, made before other
    // threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns freed heap memory to the kernel (after start-up's one-off work).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}
