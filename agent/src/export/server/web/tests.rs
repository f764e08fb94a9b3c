use std::fs;

use super::*;

/// A scratch directory of its own per test.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loupe-web-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(dir: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
    let path = dir.join("web.yml");
    fs::write(&path, text).unwrap();
    WebConfig::load(&path)
}

/// The error's text, or a panic naming what loaded instead.
fn refused(dir: &Path, text: &str) -> String {
    match load(dir, text) {
        Ok(config) => panic!("{text}: loaded {config:?}"),
        Err(err) => err.to_string(),
    }
}

const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

#[test]
fn basic_auth_and_headers_without_tls() {
    let dir = dir("plain");
    let config = load(
        &dir,
        &format!(
            "basic_auth_users:\n  prometheus: {HASH}\nhttp_server_config:\n  http2: true\n  \
             headers:\n    X-Frame-Options: deny\n"
        ),
    )
    .unwrap();
    assert!(config.tls.is_none());
    assert_eq!(
        config.users.get("prometheus").map(String::as_str),
        Some(HASH)
    );
    assert_eq!(config.headers.len(), 1);
    assert_eq!(config.headers[0].0, "x-frame-options");
    // An empty file is no protection at all, and valid.
    let empty = load(&dir, "").unwrap();
    assert!(empty.tls.is_none() && empty.users.is_empty());
}

#[test]
fn mistakes_name_the_field_and_the_fix() {
    let dir = dir("mistakes");
    let cases = [
        ("basic_auth_users:\n  a: plaintext\n", "htpasswd -nBC 10 a"),
        (
            "tls_config:\n  cert_file: x\n",
            "unknown field `tls_config`",
        ),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "cannot be set",
        ),
        (
            "tls_server_config:\n  key_file: k.pem\n",
            "tls_server_config.cert_file: missing",
        ),
        (
            "tls_server_config:\n  cert_file: nowhere.pem\n  key_file: k.pem\n",
            "cannot read",
        ),
        ("- a list\n", "not a web configuration file"),
    ];
    for (text, expected) in cases {
        let err = refused(&dir, text);
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(err.contains("web.yml"), "{err}");
    }
}

#[test]
fn bcrypt_hashes_are_told_from_other_text() {
    assert_eq!(bcrypt_cost(HASH), Some(10));
    assert_eq!(bcrypt_cost(&HASH.replace("$2y$", "$2b$")), Some(10));
    assert_eq!(bcrypt_cost("$2y$10$short"), None);
    assert_eq!(
        bcrypt_cost("$1$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"),
        None
    );
    assert_eq!(bcrypt_cost(&HASH.replace("$10$", "$99$")), None);
}

#[test]
fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last() {
    let dir = dir("reload");
    let path = dir.join("web.yml");
    fs::write(&path, format!("basic_auth_users:\n  a: {HASH}\n")).unwrap();
    let web = Web::load(&path, false).unwrap();
    let checked_long_ago = |web: &Web| {
        let mut state = web.state.lock().unwrap();
        state.checked = Instant::now() - CHECK_EVERY * 2;
    };
    let (config, reload) = web.current();
    assert_eq!((config.users.len(), reload), (1, None));
    // Rewritten with a second user: read again at the next check.
    fs::write(
        &path,
        format!("basic_auth_users:\n  a: {HASH}\n  bb: {HASH}\n"),
    )
    .unwrap();
    checked_long_ago(&web);
    let (config, reload) = web.current();
    assert_eq!((config.users.len(), reload), (2, Some(Reload::Loaded)));
    // Broken: the last good one stays, and the failure is told once.
    fs::write(&path, "basic_auth_users: [\n").unwrap();
    checked_long_ago(&web);
    let (config, reload) = web.current();
    assert_eq!((config.users.len(), reload), (2, Some(Reload::Failed)));
    checked_long_ago(&web);
    assert_eq!(web.current().1, None);
}
