//! The probes' bitmap of tracked processes (`TRACKED_BITS`), shared with
//! them through memory: the map is created mappable, and the agent sets
//! and clears bits with atomic operations. The probes mark a new process's
//! bit at any moment, often in the word of a process that just exited; a
//! read-modify-write through the map syscalls would lose that bit, and
//! the new process's first syscalls with it.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, IterableMap as _, MapData};
use loupe_common::maps::TRACKED_BITS_WORDS;

pub struct TrackedBits {
    words: NonNull<AtomicU64>,
    /// Keeps the map (and its fd) alive while mapped.
    _map: Array<MapData, u64>,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for TrackedBits {}
// SAFETY: as above.
unsafe impl Sync for TrackedBits {}

const BYTES: usize = TRACKED_BITS_WORDS as usize * 8;

impl TrackedBits {
    /// Maps the array; the error is the kernel's.
    pub fn new(map: Array<MapData, u64>) -> std::io::Result<Self> {
        let fd = map.map().fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of the map's fd, of the array's size.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let words = NonNull::new(at.cast::<AtomicU64>()).ok_or(std::io::ErrorKind::Other)?;
        Ok(Self { words, _map: map })
    }

    /// Sets or clears `pid`'s bit (beyond `PID_MAX_LIMIT`: nothing).
    pub fn set(&self, pid: u32, on: bool) {
        let index = (pid >> 6) as usize;
        if index >= TRACKED_BITS_WORDS as usize {
            return;
        }
        let bit = 1u64 << (pid & 63);
        // SAFETY: `index` is within the mapping.
        let word = unsafe { self.words.add(index).as_ref() };
        if on {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

impl Drop for TrackedBits {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.words.as_ptr().cast(), BYTES) };
    }
}
