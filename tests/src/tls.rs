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

/// A certificate authority of the test's own, and certificates it signs
/// (`openssl` on the command line), in a directory of the test's own.
pub struct Authority {
    pub dir: PathBuf,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("loupe-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("authority directory");
        let authority = Self { dir };
        authority.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=loupe test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        authority
    }

    fn openssl(&self, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?} failed");
    }

    /// Issues `NAME.pem` and `NAME.key` for common name `cn`, valid for
    /// 127.0.0.1 and localhost (a server) or as a client.
    pub fn issue(&self, name: &str, cn: &str) {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extensions file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }

    /// The path of a file in the authority's directory.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
