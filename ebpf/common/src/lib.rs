//! Everything that crosses the kernel boundary between loupe's eBPF probes and
//! its userspace agent: map names and sizes, map keys and values, event
//! records, the tracepoint layouts the probes rely on, and what differs
//! between architectures.
//!
//! Every type here is `#[repr(C)]`, `Copy`, free of `bool`/`Option` and of
//! hidden padding (explicit `_pad` fields instead), and has a compile-time size
//! assertion, so the two sides cannot silently disagree.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod arch;
pub mod event;
pub mod layout;
pub mod maps;
pub mod tcp;

/// Asserts at compile time that a type has the size both sides expect.
#[macro_export]
macro_rules! assert_size {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
    };
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` marks types the agent may copy in and out of maps.
    use crate::{event, maps};

    macro_rules! pod {
        ($($ty:ty),* $(,)?) => {
            // SAFETY: every listed type is `#[repr(C)]`, `Copy`, has no padding
            // (checked by `assert_size!`) and is valid for any bit pattern.
            $(unsafe impl aya::Pod for $ty {})*
        };
    }

    pod!(
        maps::Target,
        maps::FdKey,
        maps::FdInfo,
        maps::ListenKey,
        maps::SockOwner,
        maps::TupleKey,
        maps::TlsKey,
        maps::ConnKey,
        maps::TlsCall,
        maps::CaptureRoute,
        event::Header,
        event::TcpState,
        event::Process,
        event::DataHeader,
    );
}
