//! The node's pod list from the Kubernetes API server, over TLS with the
//! service account's token, run as a collector (`kubernetes`) so that its
//! health is exported and its outages are logged once.
use std::{fs, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::pods::{PodIndex, SharedPods};
use crate::{collectors::Collector, config::kubernetes::KubernetesConfig, export::Metrics};

/// Largest pod list read (a node's pods fit many times over).
const MAX_BODY: usize = 64 << 20;

pub struct PodLookup {
    config: KubernetesConfig,
    pods: SharedPods,
    tls: Option<TlsConnector>,
}

impl PodLookup {
    pub fn new(config: KubernetesConfig, pods: SharedPods) -> Self {
        Self {
            config,
            pods,
            tls: None,
        }
    }

    /// The TLS client trusting the cluster's CA (read once it works).
    fn tls(&mut self) -> Result<TlsConnector, String> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        let ca = &self.config.ca_file;
        let pem = fs::read(ca).map_err(|e| format!("cannot read the CA {}: {e}", ca.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in pem_certificates(&pem) {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificate in it", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = TlsConnector::from(Arc::new(config));
        self.tls = Some(tls.clone());
        Ok(tls)
    }

    async fn fetch(&mut self) -> Result<PodIndex, String> {
        let tls = self.tls()?;
        let c = &self.config;
        let token = fs::read_to_string(&c.token_file)
            .map_err(|e| format!("cannot read the token {}: {e}", c.token_file.display()))?;
        let tcp = TcpStream::connect((c.host.as_str(), c.port))
            .await
            .map_err(|e| format!("cannot reach the API server {}:{}: {e}", c.host, c.port))?;
        let name = ServerName::try_from(c.host.clone()).map_err(|e| e.to_string())?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the API server: {e}"))?;
        let (mut send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::get(format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            c.node_name
        ))
        .header(header::HOST, c.host.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => ": the service account token was refused",
                403 => {
                    ": the service account may not list pods (see the ClusterRole in deploy/kubernetes)"
                }
                _ => "",
            };
            return Err(format!(
                "the API server answered {status} to the pod list{hint}"
            ));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the pod list: {e}"))?
            .to_bytes();
        PodIndex::parse(&body).map_err(|e| format!("the pod list is not a PodList: {e}"))
    }
}

/// The certificates of a PEM file.
fn pem_certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl Collector for PodLookup {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn collect(&mut self, _metrics: &Metrics) -> Result<(), String> {
        let index = self.fetch().await?;
        self.pods.replace(index);
        Ok(())
    }
}
