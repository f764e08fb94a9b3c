//! The HTTP endpoint: `/metrics` (Prometheus text format 0.0.4), `/healthz`
//! (the process is alive) and `/readyz` (probes attached and serving);
//! with a web configuration file (`--web.config.file`, [`web`]), over TLS
//! and behind basic authentication. Held against hostile clients
//! ([`conns`]): bounded connections and heads, timeouts on handshakes,
//! heads and stalled answers.
mod basic_auth;
mod conns;
mod tls;
pub mod web;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket},
};
use tracing::{debug, info};

use self::{
    basic_auth::{Checker, Verdict},
    conns::{Registry, Tracked},
    web::{Reload, Web, WebConfig},
};
use crate::export::Metrics;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that sends no complete request head within this time is
/// dropped (a slowloris sends one byte at a time).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake not done within this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that reads and writes nothing this long is closed (a
/// client that stopped reading its answer, an idle keep-alive).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head read (hyper's buffer); longer ones are refused.
const MAX_HEAD: usize = 16 << 10;
/// A rendering of `/metrics` this recent is served again: a flood of
/// scrapes costs at most 100 renderings a second, and the answers stalled
/// in slow clients share a few bodies.
const RENDER_REUSE: Duration = Duration::from_millis(10);

/// Why the endpoint turned a request or a connection away (the `reason`
/// of `loupe_web_refused_total`).
#[derive(Clone, Copy, Debug)]
enum Refused {
    Unauthorized,
    AuthBusy,
    TlsHandshake,
    Idle,
    Evicted,
}

impl Refused {
    const ALL: [Self; 5] = [
        Self::Unauthorized,
        Self::AuthBusy,
        Self::TlsHandshake,
        Self::Idle,
        Self::Evicted,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::AuthBusy => "auth_busy",
            Self::TlsHandshake => "tls_handshake",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}; choose another address with --listen")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoint {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    /// TLS and authentication, from `--web.config.file`.
    pub web: Option<Arc<Web>>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts")
}

/// The last rendering of `/metrics`, and when it was made.
#[derive(Default)]
struct Rendered(Mutex<Option<(Instant, Bytes)>>);

impl Rendered {
    fn get(&self, metrics: &Metrics) -> Bytes {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((at, body)) if at.elapsed() < RENDER_REUSE => body.clone(),
            _ => {
                let body = Bytes::from(metrics.render());
                *last = Some((Instant::now(), body.clone()));
                body
            }
        }
    }
}

/// What every connection shares.
struct Shared {
    endpoint: Endpoint,
    checker: Arc<Checker>,
    rendered: Rendered,
    registry: Arc<Registry>,
}

impl Shared {
    fn new(endpoint: Endpoint) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            checker: Checker::new(),
            rendered: Rendered::default(),
            registry: Registry::new(),
        })
    }

    async fn respond(
        &self,
        request: &Request<hyper::body::Incoming>,
        web: Option<&WebConfig>,
    ) -> Response<Full<Bytes>> {
        let mut response = self.answer(request, web).await;
        if let Some(web) = web {
            for (name, value) in &web.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response
    }

    async fn answer(
        &self,
        request: &Request<hyper::body::Incoming>,
        web: Option<&WebConfig>,
    ) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        let path = request.uri().path();
        let probe = matches!(path, "/healthz" | "/readyz");
        let auth_probes = self.endpoint.web.as_ref().is_some_and(|w| w.auth_probes);
        if let Some(web) = web.filter(|w| !w.users.is_empty() && (!probe || auth_probes)) {
            let header = request.headers().get(header::AUTHORIZATION);
            match self.checker.check(header, &web.users).await {
                Verdict::Allowed => {}
                Verdict::Denied => {
                    self.count_refused(Refused::Unauthorized);
                    let mut denied = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                    denied.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic"),
                    );
                    return denied;
                }
                Verdict::Busy => {
                    self.count_refused(Refused::AuthBusy);
                    return text(StatusCode::TOO_MANY_REQUESTS, "too many sign-ins at once\n");
                }
            }
        }
        let ready = self.endpoint.ready.load(Ordering::Acquire);
        match path {
            "/metrics" => Response::builder()
                .header(header::CONTENT_TYPE, CONTENT_TYPE)
                .body(Full::new(self.rendered.get(&self.endpoint.metrics)))
                .expect("static response parts"),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if ready => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "probes not attached yet\n"),
            "/" => text(StatusCode::OK, "loupe: see /metrics, /healthz, /readyz\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn count_refused(&self, reason: Refused) {
        self.endpoint
            .metrics
            .web_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// Connections the kernel queues before they are accepted (up to
/// `net.core.somaxconn`): under a flood of connections, a full queue drops
/// a scraper's SYN, and its retry comes a second later.
const BACKLOG: u32 = 4096;

/// Binds the listening socket (so that a taken port fails at start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    socket
        .and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(BACKLOG)
        })
        .map_err(|source| BindError { addr, source })
}

/// Serves until the task is dropped. Accepting never waits: past the
/// connection limit, the connection idle longest makes room.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    if let Ok(addr) = listener.local_addr() {
        let tls = endpoint.web.is_some();
        info!(%addr, web_config = tls, "serving /metrics");
    }
    // Every series from the start, at 0: a rate or an alert on them has
    // something to compare with.
    for reload in Reload::ALL {
        let reloads = &endpoint.metrics.web_config_reloads;
        reloads.with_label_values(&[reload.as_str()]);
    }
    for reason in Refused::ALL {
        endpoint
            .metrics
            .web_refused
            .with_label_values(&[reason.as_str()]);
    }
    let shared = Shared::new(endpoint);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: let some close.
                debug!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (admitted, evicted) = shared.registry.admit();
        if evicted {
            shared.count_refused(Refused::Evicted);
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let conn = Arc::clone(&admitted.conn);
            let io = Tracked::new(stream, Arc::clone(&conn));
            tokio::select! {
                () = connection(io, &shared) => {}
                () = conn.evicted() => {}
                () = conn.idle(IDLE_TIMEOUT) => shared.count_refused(Refused::Idle),
            }
            debug!(%peer, "metrics connection closed");
            drop(admitted);
        });
    }
}

/// One connection: its TLS handshake if the web configuration asks for
/// TLS, then its requests.
async fn connection<S>(io: Tracked<S>, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let web = shared.endpoint.web.as_ref().map(|web| {
        let (config, reload) = web.current();
        if let Some(reload) = reload {
            let reloads = &shared.endpoint.metrics.web_config_reloads;
            reloads.with_label_values(&[reload.as_str()]).inc();
        }
        config
    });
    match web.as_ref().and_then(|w| w.tls.clone()) {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(stream)) => http(stream, shared, web).await,
                Ok(Err(err)) => {
                    debug!(error = %err, "TLS handshake failed");
                    shared.count_refused(Refused::TlsHandshake);
                }
                Err(_) => shared.count_refused(Refused::TlsHandshake),
            }
        }
        None => http(io, shared, web).await,
    }
}

async fn http<S>(io: S, shared: &Arc<Shared>, web: Option<Arc<WebConfig>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared_for_requests = Arc::clone(shared);
    let service = service_fn(move |request| {
        let (shared, web) = (Arc::clone(&shared_for_requests), web.clone());
        async move { Ok::<_, Infallible>(shared.respond(&request, web.as_deref()).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    if let Err(err) = builder.serve_connection(TokioIo::new(io), service).await {
        debug!(error = %err, "metrics connection ended with an error");
    }
}

/// What the endpoint writes back to a client that wrote `request` and
/// then closed its side, with `web`'s users (for the fuzz target
/// `endpoint_requests`).
#[cfg(any(test, feature = "fuzzing"))]
pub async fn answer_bytes(endpoint: Endpoint, web: Arc<WebConfig>, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut client, server) = tokio::io::duplex(64 << 10);
    let shared = Shared::new(endpoint);
    let serving = tokio::spawn(async move { http(server, &shared, Some(web)).await });
    let _ = client.write_all(request).await;
    let _ = client.shutdown().await;
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer).await;
    let _ = serving.await;
    answer
}
