//! The HTTP test service in Rust (hyper), with the routes of
//! `tests/fixtures/http_app.py`. Prints "ready" once listening.
//! Usage: http_app PORT
use std::{
    convert::Infallible,
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Frame, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    time::{Instant, Sleep, sleep_until},
};

type Body = BoxBody<Bytes, Infallible>;

fn respond(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .expect("static response")
}

/// A streamed body: first chunk after 20 ms, the last after 200 ms.
struct Stream {
    start: Instant,
    sent: u8,
    timer: Pin<Box<Sleep>>,
}

impl Stream {
    fn new() -> Self {
        let start = Instant::now();
        Self {
            start,
            sent: 0,
            timer: Box::pin(sleep_until(start + Duration::from_millis(20))),
        }
    }
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent == 2 {
            return Poll::Ready(None);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sent += 1;
        let next = self.start + Duration::from_millis(200);
        self.timer.as_mut().reset(next);
        let data: &'static [u8] = if self.sent == 1 {
            b"data: first\n\n"
        } else {
            b"data: last\n\n"
        };
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data)))))
    }
}

async fn route(request: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    // Read the request body before answering.
    let _ = request.into_body().collect().await;
    let item = path
        .strip_prefix("/items/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", _) if item => respond(StatusCode::OK, "{\"id\":1}"),
        ("POST", "/items") => respond(StatusCode::CREATED, "{\"created\":true}"),
        ("DELETE", _) if item => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()).boxed())
            .expect("static response"),
        (_, "/fail") => respond(StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"boom\"}"),
        (_, "/slow") => {
            tokio::time::sleep(Duration::from_millis(70)).await;
            respond(StatusCode::OK, "{\"slept\":0.07}")
        }
        (_, "/stream") => Response::builder()
            .header("content-type", "text/event-stream")
            .body(Stream::new().boxed())
            .expect("static response"),
        _ => respond(StatusCode::NOT_FOUND, "{\"detail\":\"Not Found\"}"),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: http_app PORT");
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("ready");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await;
        });
    }
}
