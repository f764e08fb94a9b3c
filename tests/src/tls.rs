//! TLS for the test servers: a self-signed certificate per test, and the
//! agent configuration that turns the OpenSSL uprobes on.
use std::{path::PathBuf, process::Command};

/// A config file with `[http] tls = true`, named after `test`; its path.
pub fn tls_config(test: &str) -> String {
    let path = std::env::temp_dir().join(format!("loupe-tls-{test}-{}.toml", std::process::id()));
    // With the OpenTelemetry names, whose `url_scheme` says `https`.
    let config = "[http]\ntls = true\n[export]\nconventions = [\"loupe\", \"otel\"]\n";
    std::fs::write(&path, config).expect("write the config");
    path.display().to_string()
}

/// A self-signed certificate and its key, in a directory of the test's own.
pub struct Certificate {
    dir: PathBuf,
}

impl Certificate {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("loupe-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("certificate directory");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl req failed");
        Self { dir }
    }

    pub fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }

    pub fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
