//! Route templates from a service's own OpenAPI document (FastAPI serves
//! one at `/openapi.json`): fetched by the agent from the target, inside the
//! target's network namespace so that it works for pods.
//!
//! The request carries `User-Agent: loupe/VERSION`, so the request parser
//! never counts it, and the connection's port is reported before it is
//! opened, so that the connection metrics can leave it out too.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

/// Largest document read.
const MAX_DOCUMENT: usize = 8 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Paths kept from one document (the endpoint budget bounds labels anyway).
const MAX_PATHS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("{0}")]
    Namespace(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no OpenAPI document at {path}: HTTP status {status}")]
    Status { path: String, status: u16 },
    #[error("the response is not HTTP")]
    NotHttp,
    #[error("the OpenAPI document is not JSON with a `paths` object: {0}")]
    Document(String),
}

/// The path templates of an OpenAPI (or Swagger 2) JSON document.
pub fn parse_paths(json: &[u8]) -> Result<Vec<String>, OpenApiError> {
    let document: serde_json::Value =
        serde_json::from_slice(json).map_err(|err| OpenApiError::Document(err.to_string()))?;
    let paths = document
        .get("paths")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| OpenApiError::Document("no `paths` object".into()))?;
    Ok(paths
        .keys()
        .filter(|path| path.starts_with('/'))
        .take(MAX_PATHS)
        .cloned()
        .collect())
}

/// Splits an HTTP/1.0 response read to its end into status and body.
fn split_response(raw: &[u8]) -> Result<(u16, &[u8]), OpenApiError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(OpenApiError::NotHttp)?;
    let status =
        crate::protocols::http1::head::parse_status_line(raw).ok_or(OpenApiError::NotHttp)?;
    Ok((status, &raw[head_end + 4..]))
}

/// The address family of a socket that can reach `addr`.
pub fn family(addr: SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// Fetches and parses the document over `socket`, a TCP socket made in
/// the target's network namespace (`crate::privileges::helper`).
/// Blocking: run it on a thread of its own. `announce` receives the local
/// port before the connection is made.
pub fn fetch(
    socket: OwnedFd,
    addr: SocketAddr,
    path: &str,
    announce: impl FnOnce(u16),
) -> Result<Vec<String>, OpenApiError> {
    let connect_err = |source| OpenApiError::Connect { addr, source };
    let mut stream = connect_announced(socket, addr, announce).map_err(connect_err)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(connect_err)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(connect_err)?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: loupe/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).map_err(connect_err)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_DOCUMENT as u64)
        .read_to_end(&mut raw)
        .map_err(connect_err)?;
    let (status, body) = split_response(&raw)?;
    if status != 200 {
        return Err(OpenApiError::Status {
            path: path.to_owned(),
            status,
        });
    }
    parse_paths(body)
}

/// Connects from a port bound (and announced) first.
fn connect_announced(
    socket: OwnedFd,
    addr: SocketAddr,
    announce: impl FnOnce(u16),
) -> std::io::Result<TcpStream> {
    let stream = TcpStream::from(socket);
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    bind(&stream, local)?;
    announce(local_port(&stream)?);
    connect(&stream, addr)?;
    Ok(stream)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn bind(stream: &TcpStream, addr: SocketAddr) -> std::io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: valid fd and sockaddr of the given length.
    let rc = unsafe { libc::bind(stream.as_raw_fd(), (&raw const storage).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn connect(stream: &TcpStream, addr: SocketAddr) -> std::io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: valid fd and sockaddr of the given length (blocking connect).
    let rc = unsafe { libc::connect(stream.as_raw_fd(), (&raw const storage).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn local_port(stream: &TcpStream) -> std::io::Result<u16> {
    stream.local_addr().map(|addr| addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_of_openapi_documents() {
        let doc =
            br#"{"openapi":"3.1.0","paths":{"/items/{item_id}":{"get":{}},"/items":{},"x":{}}}"#;
        let mut paths = parse_paths(doc).unwrap();
        paths.sort();
        assert_eq!(paths, ["/items", "/items/{item_id}"]);
        assert!(parse_paths(b"{}").is_err());
        assert!(parse_paths(b"<html>").is_err());
    }

    #[test]
    fn splits_responses() {
        let (status, body) = split_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n{}").unwrap();
        assert_eq!((status, body), (200, &b"{}"[..]));
        assert!(split_response(b"garbage").is_err());
    }

    #[test]
    fn fetches_from_a_local_server_and_announces_the_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, peer) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = conn.read(&mut request).unwrap();
            let text = String::from_utf8_lossy(&request[..n]).into_owned();
            conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n{\"paths\":{\"/a/{b}\":{}}}")
                .unwrap();
            (text, peer.port())
        });
        let mut announced = 0;
        let me = std::process::id();
        let paths = std::thread::spawn(move || {
            let socket = crate::privileges::helper::Helper::default()
                .socket(me, family(addr))
                .unwrap();
            fetch(socket, addr, "/openapi.json", |port| announced = port).map(|p| (p, announced))
        })
        .join()
        .unwrap()
        .unwrap();
        let (request, peer_port) = server.join().unwrap();
        assert_eq!(paths.0, ["/a/{b}"]);
        assert_eq!(paths.1, peer_port, "the announced port is the one used");
        assert!(
            request.starts_with("GET /openapi.json HTTP/1.0\r\n"),
            "{request}"
        );
        assert!(request.contains("User-Agent: loupe/"), "{request}");
    }
}
