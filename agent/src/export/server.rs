//! The HTTP endpoint: `/metrics` (Prometheus text format 0.0.4), `/healthz`
//! (the process is alive) and `/readyz` (probes attached and serving).
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::export::Metrics;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that sends no complete request within this time is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further clients wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

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
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts")
}

impl Endpoint {
    fn respond(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match request.uri().path() {
            "/metrics" => Response::builder()
                .header(header::CONTENT_TYPE, CONTENT_TYPE)
                .body(Full::new(Bytes::from(self.metrics.render())))
                .expect("static response parts"),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "probes not attached yet\n"),
            "/" => text(StatusCode::OK, "loupe: see /metrics, /healthz, /readyz\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Binds the listening socket (so that a taken port fails at start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /metrics");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                debug!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = endpoint.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %err, "metrics connection ended with an error");
            }
            drop(slot);
        });
    }
}
