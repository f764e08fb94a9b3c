//! The privileged helper: the two things the agent still needs
//! `CAP_SYS_ADMIN` for once its probes are loaded, done by a process of
//! its own that keeps that capability and `CAP_SYS_PTRACE`, and nothing
//! else.
//!
//! - **A TCP socket in a target's network namespace** (for the OpenAPI
//!   fetch). A socket belongs to the namespace it was created in, so only
//!   its creation needs the namespace: the helper enters the namespace the
//!   agent sends (a descriptor of `/proc/PID/ns/net`), creates the socket,
//!   returns to its own namespace and sends the socket back. The agent
//!   binds, connects and reads.
//! - **A uprobe's perf event** (for the OpenSSL hooks of processes found
//!   later): the agent sends the library as an open file, the offset and
//!   the process; the helper creates the event and sends it back; the
//!   agent attaches its program.
//!
//! The helper reads one fixed-size request and one descriptor at a time,
//! and parses nothing else. It is this binary run as `loupe helper`,
//! started before the agent drops its capabilities; it ends when the
//! agent's end of their socket pair closes.
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::{fs::MetadataExt, process::CommandExt},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, Mutex},
};

use super::{Caps, Holder};
use crate::kernel::uprobes::{self, Opener};

/// The descriptor the helper finds its end of the socket pair at.
const HELPER_FD: RawFd = 3;

/// The agent's handle on the helper (cheap to clone). Without a helper,
/// sockets reach only the agent's own namespace, and uprobes are created
/// in the agent itself.
#[derive(Clone, Default)]
pub struct Helper {
    channel: Option<Arc<Mutex<Channel>>>,
}

struct Channel {
    fd: OwnedFd,
    child: Child,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open the network namespace of process {pid} (/proc/{pid}/ns/net): {source}")]
    Open {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a socket for process {pid}: {source}")]
    Socket {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "process {pid} is in another network namespace and no helper runs (loupe started \
         without CAP_SYS_ADMIN, or the helper could not start)"
    )]
    NoHelper { pid: u32 },
    #[error("the privileged helper failed for process {pid}: {source}")]
    Helper {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// What the agent asks, in 16 bytes: the operation, its small arguments,
/// the process, the file offset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Request {
    /// A TCP socket of this address family in the attached namespace.
    Socket { family: u8 },
    /// A uprobe's perf event in the attached file.
    Uprobe { pid: u32, offset: u64, ret: bool },
}

const REQUEST_LEN: usize = 16;

impl Request {
    fn encode(self) -> [u8; REQUEST_LEN] {
        let mut bytes = [0; REQUEST_LEN];
        match self {
            Self::Socket { family } => bytes[..2].copy_from_slice(&[1, family]),
            Self::Uprobe { pid, offset, ret } => {
                bytes[0] = 2;
                bytes[1] = u8::from(ret);
                bytes[4..8].copy_from_slice(&pid.to_le_bytes());
                bytes[8..].copy_from_slice(&offset.to_le_bytes());
            }
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; REQUEST_LEN] = bytes.try_into().ok()?;
        let pid = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
        let offset = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        match bytes[0] {
            1 => Some(Self::Socket { family: bytes[1] }),
            2 if bytes[1] <= 1 => Some(Self::Uprobe {
                pid,
                offset,
                ret: bytes[1] == 1,
            }),
            _ => None,
        }
    }
}

impl Helper {
    /// Starts the helper: call it while the agent still holds
    /// `CAP_SYS_ADMIN`, before any other thread runs.
    pub fn start() -> io::Result<Self> {
        let (ours, theirs) = socket_pair()?;
        let their_fd = theirs.as_raw_fd();
        let mut command = Command::new("/proc/self/exe");
        command
            .arg("helper")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(their_fd, HELPER_FD) < 0
                    || libc::fcntl(HELPER_FD, libc::F_SETFD, 0) < 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(theirs);
        Ok(Self {
            channel: Some(Arc::new(Mutex::new(Channel { fd: ours, child }))),
        })
    }

    /// Sends one request with `fd` attached; the answer's descriptor.
    fn ask(&self, request: Request, fd: RawFd) -> Option<io::Result<OwnedFd>> {
        let channel = self.channel.as_ref()?;
        let mut channel = channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let answer =
            send(&channel.fd, &request.encode(), fd).and_then(|()| receive_reply(&channel.fd));
        if answer.is_err() {
            // A helper that ended is reaped here; later requests fail.
            let _ = channel.child.try_wait();
        }
        Some(answer)
    }

    /// A TCP socket (`family`: `AF_INET` or `AF_INET6`) in the network
    /// namespace of `pid`: made here when that is the agent's own.
    pub fn socket(&self, pid: u32, family: libc::c_int) -> Result<OwnedFd, NetnsError> {
        let open =
            |path: String| File::open(path).map_err(|source| NetnsError::Open { pid, source });
        let theirs = open(format!("/proc/{pid}/ns/net"))?;
        let ours = open("/proc/self/ns/net".to_owned())?;
        let same = match (theirs.metadata(), ours.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return tcp_socket(family).map_err(|source| NetnsError::Socket { pid, source });
        }
        let family = u8::try_from(family).unwrap_or(0);
        self.ask(Request::Socket { family }, theirs.as_raw_fd())
            .ok_or(NetnsError::NoHelper { pid })?
            .map_err(|source| NetnsError::Helper { pid, source })
    }
}

impl Opener for Helper {
    fn uprobe(&self, file: &File, pid: u32, offset: u64, ret: bool) -> io::Result<OwnedFd> {
        let request = Request::Uprobe { pid, offset, ret };
        self.ask(request, file.as_raw_fd())
            .unwrap_or_else(|| uprobes::open_event(file, pid, offset, ret))
    }
}

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn tcp_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Room for one descriptor's control message.
const CONTROL: usize = 64;

/// Sends `data` as one message, with `fd` attached when it is one.
fn send(channel: &OwnedFd, data: &[u8], fd: RawFd) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u8; CONTROL];
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive
    // the call, the kernel only reads through them, and the control
    // buffer has room for one descriptor.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if fd >= 0 {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        libc::sendmsg(channel.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL)
    };
    match usize::try_from(sent) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(io::ErrorKind::WriteZero.into()),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// Receives one message into `data` and the first descriptor attached, if
/// any (others are closed). `Ok(None)`: the other end closed.
fn receive(channel: &OwnedFd, data: &mut [u8]) -> io::Result<Option<(usize, Option<OwnedFd>)>> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u8; CONTROL];
    // SAFETY: as in `send`; every descriptor received is taken over.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL as _;
        let got = libc::recvmsg(channel.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC);
        let Ok(got) = usize::try_from(got) else {
            return Err(io::Error::last_os_error());
        };
        if got == 0 && msg.msg_controllen == 0 {
            return Ok(None);
        }
        let mut fd = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count =
                    ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for index in 0..count {
                    let raw =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>().add(index));
                    let owned = OwnedFd::from_raw_fd(raw);
                    fd.get_or_insert(owned);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
        Ok(Some((got, fd)))
    }
}

/// The helper's answer: errno 0 and a descriptor, or an errno.
fn receive_reply(channel: &OwnedFd) -> io::Result<OwnedFd> {
    let mut errno = [0u8; 4];
    match receive(channel, &mut errno)? {
        None => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the helper has ended",
        )),
        Some((4, fd)) => match (i32::from_le_bytes(errno), fd) {
            (0, Some(fd)) => Ok(fd),
            (0, None) => Err(io::Error::other("the helper sent no descriptor")),
            (errno, _) => Err(io::Error::from_raw_os_error(errno)),
        },
        Some(_) => Err(io::Error::other("the helper's answer is malformed")),
    }
}

/// Enters `ns`, makes a socket, and comes back to `home`.
fn socket_in(ns: &OwnedFd, home: &File, family: libc::c_int) -> io::Result<OwnedFd> {
    let enter = |fd: RawFd| {
        // SAFETY: setns on a descriptor we hold; the kernel checks that it
        // is a network namespace.
        if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    enter(ns.as_raw_fd())?;
    let socket = tcp_socket(family);
    // Not coming back would put every later socket in that namespace:
    // end the helper instead.
    if let Err(err) = enter(home.as_raw_fd()) {
        eprintln!("loupe helper: cannot return to its own network namespace: {err}");
        std::process::exit(1);
    }
    socket
}

/// Does what one request asks, with the descriptor that came with it.
fn answer(request: Request, fd: &OwnedFd, home: &File) -> io::Result<OwnedFd> {
    match request {
        Request::Socket { family } => socket_in(fd, home, libc::c_int::from(family)),
        Request::Uprobe { pid, offset, ret } => {
            let file = File::from(fd.try_clone()?);
            uprobes::open_event(&file, pid, offset, ret)
        }
    }
}

/// `loupe helper`: serves the agent that started it until it ends.
pub fn serve() -> ExitCode {
    // SAFETY: the agent passed its end of the pair at this descriptor; it
    // is ours from here on.
    let channel = unsafe { OwnedFd::from_raw_fd(HELPER_FD) };
    if let Err(err) = super::drop_to(
        Caps::kept_by(Holder::Helper, super::last_capability()),
        "helper",
    ) {
        eprintln!("loupe helper: {err}");
        return ExitCode::FAILURE;
    }
    let home = match File::open("/proc/self/ns/net") {
        Ok(home) => home,
        Err(err) => {
            eprintln!("loupe helper: cannot open its own network namespace: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut buffer = [0u8; REQUEST_LEN + 1];
    loop {
        let (request, fd) = match receive(&channel, &mut buffer) {
            Ok(Some((len, fd))) => (Request::decode(&buffer[..len]), fd),
            Ok(None) => return ExitCode::SUCCESS,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                eprintln!("loupe helper: {err}");
                return ExitCode::FAILURE;
            }
        };
        let answered = match (request, fd) {
            (Some(request), Some(fd)) => answer(request, &fd, &home),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let sent = match answered {
            Ok(out) => send(&channel, &0i32.to_le_bytes(), out.as_raw_fd()),
            Err(err) => {
                let errno = err.raw_os_error().unwrap_or(libc::EIO);
                send(&channel, &errno.to_le_bytes(), -1)
            }
        };
        if sent.is_err() {
            return ExitCode::SUCCESS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_the_trip_and_nothing_else_decodes() {
        let requests = [
            Request::Socket { family: 10 },
            Request::Uprobe {
                pid: 4_000_000,
                offset: u64::MAX - 3,
                ret: true,
            },
            Request::Uprobe {
                pid: 1,
                offset: 0x1234,
                ret: false,
            },
        ];
        for request in requests {
            assert_eq!(Request::decode(&request.encode()), Some(request));
        }
        assert_eq!(Request::decode(&[1; 15]), None, "too short");
        assert_eq!(Request::decode(&[1; 17]), None, "too long");
        assert_eq!(Request::decode(&[3; 16]), None, "no such operation");
        let mut bad_flag = requests[1].encode();
        bad_flag[1] = 2;
        assert_eq!(Request::decode(&bad_flag), None);
    }

    #[test]
    fn a_descriptor_crosses_the_pair_and_errors_come_back_as_errnos() {
        let (a, b) = socket_pair().unwrap();
        let file = File::open("/proc/self/ns/net").unwrap();
        send(&a, &0i32.to_le_bytes(), file.as_raw_fd()).unwrap();
        let fd = receive_reply(&b).unwrap();
        let ino = |fd: &OwnedFd| {
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .unwrap()
                .ino()
        };
        assert_eq!(ino(&fd), file.metadata().unwrap().ino());
        send(&a, &libc::EPERM.to_le_bytes(), -1).unwrap();
        let err = receive_reply(&b).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        drop(a);
        assert!(receive_reply(&b).is_err(), "a closed end is an error");
    }

    #[test]
    fn a_socket_in_the_own_namespace_needs_no_helper() {
        let socket = Helper::default()
            .socket(std::process::id(), libc::AF_INET)
            .unwrap();
        assert!(socket.as_raw_fd() >= 0);
        assert!(matches!(
            Helper::default().socket(std::process::id(), libc::AF_UNIX),
            Err(NetnsError::Socket { .. })
        ));
    }
}
