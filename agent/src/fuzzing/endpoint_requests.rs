//! Arbitrary bytes from a client of the endpoint, which asks for basic
//! authentication: it never panics, answers HTTP or nothing, and never
//! serves `/metrics` to a request without the right credentials.
use std::sync::{Arc, OnceLock, atomic::AtomicBool};

use crate::export::{
    Metrics,
    server::{Endpoint, answer_bytes, web::WebConfig},
};

/// `fuzz:pw`, as a `Basic` credential.
const RIGHT: &[u8] = b"ZnV6ejpwdw==";

fn fixture() -> &'static (Endpoint, Arc<WebConfig>) {
    static FIXTURE: OnceLock<(Endpoint, Arc<WebConfig>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let hash = bcrypt::hash("pw", 4).expect("a bcrypt hash");
        let text = format!("basic_auth_users:\n  fuzz: {hash}\n");
        let web = WebConfig::parse(std::path::Path::new("fuzz.yml"), &text).expect("valid");
        let endpoint = Endpoint {
            metrics: Metrics::new(),
            ready: Arc::new(AtomicBool::new(true)),
            web: None,
        };
        (endpoint, Arc::new(web))
    })
}

pub fn run(data: &[u8]) {
    let (endpoint, web) = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let answer = runtime.block_on(answer_bytes(endpoint.clone(), Arc::clone(web), data));
    if answer.is_empty() {
        return;
    }
    assert!(
        answer.starts_with(b"HTTP/1."),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let served_metrics = answer.windows(b"# HELP ".len()).any(|w| w == b"# HELP ");
    if served_metrics {
        assert!(
            data.windows(RIGHT.len()).any(|w| w == RIGHT),
            "metrics served without the credentials"
        );
    }
}
