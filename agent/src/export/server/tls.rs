//! `tls_server_config` of the web configuration, as rustls serves it:
//! the certificate and key (files or inline PEM), client certificates
//! (`client_auth_type`, `client_ca_file`), protocol versions, and the
//! TLS 1.2 cipher suites and key-exchange curves by their Go names.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    CipherSuite, NamedGroup, RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version::{TLS12, TLS13},
};
use serde::Deserialize;

/// The section, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    /// Inline PEM, instead of the files.
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    /// Ignored by Go since 1.18, and by loupe.
    #[serde(rename = "prefer_server_cipher_suites")]
    _prefer_server_cipher_suites: Option<bool>,
}

/// A built server configuration and the files it came from.
pub struct Built {
    pub config: ServerConfig,
    pub files: Vec<PathBuf>,
}

/// A field that cannot be used, and why.
pub type FieldError = (&'static str, String);

/// Builds the server side of TLS from `section`, its files relative to
/// `dir`.
pub fn build(section: &FileTls, dir: &Path) -> Result<Built, FieldError> {
    let mut files = Vec::new();
    let mut pem = |field: &'static str,
                   file: &Option<String>,
                   inline: &Option<String>|
     -> Result<Vec<u8>, FieldError> {
        match (file, inline) {
            (Some(_), Some(_)) => Err((field, "give the file or the inline PEM, not both".into())),
            (Some(file), None) => {
                let path = dir.join(file);
                let bytes = std::fs::read(&path)
                    .map_err(|err| (field, format!("cannot read {}: {err}", path.display())))?;
                files.push(path);
                Ok(bytes)
            }
            (None, Some(text)) => Ok(text.clone().into_bytes()),
            (None, None) => Err((field, "missing: TLS needs a certificate and its key".into())),
        }
    };
    let cert_pem = pem(
        "tls_server_config.cert_file",
        &section.cert_file,
        &section.cert,
    )?;
    let key_pem = pem(
        "tls_server_config.key_file",
        &section.key_file,
        &section.key,
    )?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .ok()
        .filter(|c: &Vec<_>| !c.is_empty())
        .ok_or((
            "tls_server_config.cert_file",
            "no PEM certificate in it".into(),
        ))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        let reason = "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into();
        ("tls_server_config.key_file", reason)
    })?;

    let provider = Arc::new(provider(section)?);
    let versions = versions(section)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|err| ("tls_server_config.cipher_suites", err.to_string()))?;
    let verifier = client_verifier(section, dir, &provider, &mut files)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        let reason = format!("the certificate and key do not go together: {err}");
        ("tls_server_config.key_file", reason)
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Built { config, files })
}

/// ring's suites and groups, narrowed and ordered by the file. TLS 1.3's
/// suites are not configurable (as in Go).
fn provider(section: &FileTls) -> Result<CryptoProvider, FieldError> {
    // ring, as the Kubernetes client uses: newer rustls deprecates it for
    // lacking post-quantum key exchange, which aws-lc-rs (a C and CMake
    // build) would bring.
    #[allow(deprecated)]
    let mut provider = ring::default_provider();
    if let Some(names) = &section.cipher_suites {
        let mut chosen: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &TLS13)
            .copied()
            .collect();
        for name in names {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| s.version() == &TLS12 && go_suite_name(s.suite()) == *name)
                .ok_or_else(|| {
                    let known: Vec<String> = provider
                        .cipher_suites
                        .iter()
                        .filter(|s| s.version() == &TLS12)
                        .map(|s| go_suite_name(s.suite()))
                        .collect();
                    let reason = format!("`{name}` is not one loupe offers; these are: {known:?}");
                    ("tls_server_config.cipher_suites", reason)
                })?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if let Some(names) = &section.curve_preferences {
        let mut chosen = Vec::new();
        for name in names {
            let group = match name.as_str() {
                "X25519" => NamedGroup::X25519,
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                other => {
                    let reason =
                        format!("`{other}` is not offered; use X25519, CurveP256 or CurveP384");
                    return Err(("tls_server_config.curve_preferences", reason));
                }
            };
            if let Some(kx) = provider.kx_groups.iter().find(|k| k.name() == group) {
                chosen.push(*kx);
            }
        }
        provider.kx_groups = chosen;
    }
    Ok(provider)
}

/// Go's name of a TLS 1.2 suite (rustls's, without ChaCha20's `_SHA256`).
fn go_suite_name(suite: CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_suffix("_CHACHA20_POLY1305_SHA256") {
        Some(stem) => format!("{stem}_CHACHA20_POLY1305"),
        None => name,
    }
}

fn versions(section: &FileTls) -> Result<Vec<&'static SupportedProtocolVersion>, FieldError> {
    let rank = |field: &'static str, value: &Option<String>, default: u8| match value.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(2),
        Some("TLS13") => Ok(3),
        Some("TLS10" | "TLS11") => {
            Err((field, "TLS 1.0 and 1.1 are not offered: use TLS12".into()))
        }
        Some(other) => Err((field, format!("`{other}`: write TLS12 or TLS13"))),
    };
    let min = rank("tls_server_config.min_version", &section.min_version, 2)?;
    let max = rank("tls_server_config.max_version", &section.max_version, 3)?;
    if min > max {
        let reason = "above max_version".into();
        return Err(("tls_server_config.min_version", reason));
    }
    Ok([(2, &TLS12), (3, &TLS13)]
        .into_iter()
        .filter(|(rank, _)| (min..=max).contains(rank))
        .map(|(_, version)| version)
        .collect())
}

/// The client-certificate check `client_auth_type` asks for.
fn client_verifier(
    section: &FileTls,
    dir: &Path,
    provider: &Arc<CryptoProvider>,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, FieldError> {
    const FIELD: &str = "tls_server_config.client_auth_type";
    let optional = match section.client_auth_type.as_deref() {
        None | Some("NoClientCert") => {
            if section.client_ca_file.is_some() {
                let reason = "client_ca_file is set: say RequireAndVerifyClientCert or \
                              VerifyClientCertIfGiven"
                    .into();
                return Err((FIELD, reason));
            }
            return Ok(None);
        }
        Some("RequireAndVerifyClientCert") => false,
        Some("VerifyClientCertIfGiven") => true,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            let reason = format!(
                "{other} (a certificate taken without checking it) is not offered; use \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            );
            return Err((FIELD, reason));
        }
        Some(other) => return Err((FIELD, format!("`{other}` is not a client_auth_type"))),
    };
    let Some(ca_file) = &section.client_ca_file else {
        let reason = "client certificates are checked against client_ca_file: set it".into();
        return Err((FIELD, reason));
    };
    let path = dir.join(ca_file);
    let bytes = std::fs::read(&path).map_err(|err| {
        let reason = format!("cannot read {}: {err}", path.display());
        ("tls_server_config.client_ca_file", reason)
    })?;
    files.push(path);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let added = cert.ok().and_then(|c| roots.add(c).ok());
        if added.is_none() {
            let reason = "holds something that is not a CA certificate".into();
            return Err(("tls_server_config.client_ca_file", reason));
        }
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map(Some).map_err(|err| {
        let reason = format!("no usable CA certificate: {err}");
        ("tls_server_config.client_ca_file", reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> FileTls {
        serde_yaml_ng::from_str(yaml).expect("a section")
    }

    #[test]
    fn versions_between_the_bounds_and_old_ones_refused() {
        let all = versions(&section("cert_file: c")).unwrap();
        assert_eq!(all.len(), 2);
        let only13 = versions(&section("min_version: TLS13")).unwrap();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, TLS13.version);
        let err = versions(&section("min_version: TLS10")).unwrap_err();
        assert_eq!(err.0, "tls_server_config.min_version");
        let err = versions(&section("min_version: TLS13\nmax_version: TLS12")).unwrap_err();
        assert!(err.1.contains("above max_version"), "{err:?}");
    }

    #[test]
    fn suites_and_curves_by_their_go_names() {
        let chosen = provider(&section(
            "cipher_suites: [TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n\
             curve_preferences: [CurveP256, X25519]",
        ))
        .unwrap();
        let tls12: Vec<String> = chosen
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &TLS12)
            .map(|s| go_suite_name(s.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"]);
        assert!(chosen.cipher_suites.iter().any(|s| s.version() == &TLS13));
        let groups: Vec<NamedGroup> = chosen.kx_groups.iter().map(|k| k.name()).collect();
        assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::X25519]);
        let err = provider(&section("cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]")).unwrap_err();
        assert!(
            err.1.contains("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            "{err:?}"
        );
        let err = provider(&section("curve_preferences: [CurveP521]")).unwrap_err();
        assert_eq!(err.0, "tls_server_config.curve_preferences");
    }

    #[test]
    #[allow(deprecated)]
    fn client_certificates_need_a_ca_and_a_checked_kind() {
        let provider = Arc::new(ring::default_provider());
        let dir = Path::new("/nonexistent");
        let mut files = Vec::new();
        let mut check = |yaml: &str| {
            client_verifier(&section(yaml), dir, &provider, &mut files).map(|v| v.is_some())
        };
        assert_eq!(check("client_auth_type: NoClientCert"), Ok(false));
        let err = check("client_auth_type: RequireAndVerifyClientCert").unwrap_err();
        assert!(err.1.contains("client_ca_file"), "{err:?}");
        let err = check("client_auth_type: RequireAnyClientCert").unwrap_err();
        assert!(err.1.contains("VerifyClientCertIfGiven"), "{err:?}");
        let err = check("client_ca_file: ca.pem").unwrap_err();
        assert!(err.1.contains("RequireAndVerifyClientCert"), "{err:?}");
        let err = check("client_auth_type: Sometimes").unwrap_err();
        assert!(err.1.contains("not a client_auth_type"), "{err:?}");
    }
}
