//! Request and response heads, status lines, chunked coding and endpoint
//! templates over arbitrary bytes.
use crate::{
    enrich::endpoint::{Routes, Template},
    protocols::http1::{auth::AuthConfig, chunked::Chunked, head},
};

pub fn run(data: &[u8]) {
    let _ = head::parse_request(data, &AuthConfig::default());
    let _ = head::parse_request_start(data, &AuthConfig::default());
    let _ = head::parse_response(data);
    let _ = head::parse_status_line(data);
    let _ = head::looks_like_request(data);
    let mut chunked = Chunked::default();
    let used = chunked.feed(data);
    assert!(used <= data.len());
    if let Ok(text) = std::str::from_utf8(data) {
        let routes = Routes::new(text.lines().filter_map(Template::parse));
        for line in text.lines() {
            let endpoint = routes.endpoint(line);
            let unread = line.is_empty() && endpoint == "unknown";
            assert!(endpoint.starts_with('/') || endpoint == "*" || unread);
        }
    }
    let _ = crate::enrich::openapi::parse_paths(data);
}
