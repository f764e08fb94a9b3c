//! The series a served exchange counts in, kept between requests (see
//! `export::Recent`): found by the exchange's labels, checked against a
//! hash collision and a service slot that changed hands.
use std::sync::Arc;

use prometheus::{Histogram, IntCounter};

use crate::{
    export::ServiceId,
    protocols::http1::{
        auth::AuthType,
        exchange::Exchange,
        head::{Method, Version},
    },
};

/// What a served exchange's series are found by.
#[derive(Hash)]
pub(super) struct ServedKey<'a> {
    pub(super) service: u32,
    pub(super) method: Method,
    pub(super) status: Option<u16>,
    pub(super) auth: AuthType,
    pub(super) path: &'a str,
    pub(super) version: Version,
    pub(super) tls: bool,
}

/// The series a served exchange counts in, worked out from its labels
/// once per `Recent` period rather than per request.
pub(super) struct Served {
    /// The service's identity when this was worked out (`None`: one
    /// without, not kept); a slot that now holds another is a miss.
    id: Option<Arc<ServiceId>>,
    service: u32,
    method: Method,
    status: Option<u16>,
    auth: AuthType,
    path: Box<str>,
    version: Version,
    tls: bool,
    /// `None` for an excluded path.
    series: Option<ServedSeries>,
}

pub(super) struct ServedSeries {
    pub(super) requests: IntCounter,
    pub(super) duration: Histogram,
    pub(super) first_byte: Histogram,
    /// Counted too when the endpoint is over its budget.
    pub(super) overflow: Option<IntCounter>,
    /// `http_server_request_duration_seconds`, with the OpenTelemetry
    /// names on.
    pub(super) otel: Option<Histogram>,
}

impl Served {
    pub(super) fn new(
        key: &ServedKey<'_>,
        id: Option<Arc<ServiceId>>,
        series: Option<ServedSeries>,
    ) -> Self {
        Self {
            id,
            service: key.service,
            method: key.method,
            status: key.status,
            auth: key.auth,
            path: key.path.into(),
            version: key.version,
            tls: key.tls,
            series,
        }
    }

    /// Worth keeping: its service has an identity to check it against.
    pub(super) fn keepable(&self) -> bool {
        self.id.is_some()
    }

    pub(super) fn is(&self, key: &ServedKey<'_>, id: Option<&Arc<ServiceId>>) -> bool {
        self.id
            .as_ref()
            .zip(id)
            .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
            && self.service == key.service
            && self.method == key.method
            && self.status == key.status
            && self.auth == key.auth
            && self.version == key.version
            && self.tls == key.tls
            && *self.path == *key.path
    }

    pub(super) fn count(&self, exchange: &Exchange) {
        let Some(series) = &self.series else {
            return;
        };
        series.requests.inc();
        let seconds = |ns: u64| ns.saturating_sub(exchange.start_ns) as f64 / 1e9;
        series.duration.observe(seconds(exchange.end_ns));
        if let Some(otel) = &series.otel {
            otel.observe(seconds(exchange.end_ns));
        }
        series.first_byte.observe(seconds(exchange.first_byte_ns));
        if let Some(overflow) = &series.overflow {
            overflow.inc();
        }
    }
}
