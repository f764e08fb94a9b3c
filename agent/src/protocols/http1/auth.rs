//! Which authentication scheme a request uses, and (when the operator
//! configured a key) a pseudonym of who made it. Tokens, keys and cookies
//! are looked at here and dropped: only the scheme and an HMAC-SHA-256
//! pseudonym leave this module.
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// `Authorization: Bearer` with a three-part base64url token.
    Jwt,
    /// Any other bearer token.
    Bearer,
    /// An API-key header (`X-API-Key` or a configured one).
    ApiKey,
    Basic,
    /// A configured session cookie.
    Session,
    #[default]
    None,
}

impl AuthType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Bearer => "bearer",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Session => "session",
            Self::None => "none",
        }
    }
}

/// The scheme of a request and, if enabled, its principal's pseudonym.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub kind: AuthType,
    pub principal: Option<String>,
}

/// Key and length of principal pseudonyms.
#[derive(Clone, PartialEq, Eq)]
pub struct PrincipalKey {
    pub secret: Vec<u8>,
    /// Hex characters kept of the HMAC.
    pub hex_len: usize,
}

impl std::fmt::Debug for PrincipalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PrincipalKey {{ secret: <redacted>, hex_len: {} }}",
            self.hex_len
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Lower-case header names that carry an API key.
    pub api_key_headers: Vec<String>,
    /// Cookie names that mark a session.
    pub session_cookies: Vec<String>,
    /// Set to pseudonymise principals.
    pub principal: Option<PrincipalKey>,
    /// Lower-case names of the request headers route rules take label
    /// values from (an allowlist; parsing keeps no other header value).
    pub label_headers: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_key_headers: vec!["x-api-key".into(), "api-key".into()],
            session_cookies: vec!["session".into(), "sessionid".into(), "session_id".into()],
            principal: None,
            label_headers: Vec::new(),
        }
    }
}

/// HMAC-SHA-256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn pseudonym(key: &PrincipalKey, identity: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in hmac_sha256(&key.secret, identity) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex.truncate(key.hex_len.clamp(4, 64));
    hex
}

/// Decodes unpadded base64url; `None` on any other byte.
fn base64url(text: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn is_jwt(token: &[u8]) -> bool {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    parts.len() == 3
        && parts[..2]
            .iter()
            .all(|p| !p.is_empty() && base64url(p).is_some())
}

/// The unverified `sub` claim of a JWT.
fn jwt_subject(token: &[u8]) -> Option<String> {
    let payload = base64url(token.split(|&b| b == b'.').nth(1)?)?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    match claims.get("sub")? {
        serde_json::Value::String(sub) => Some(sub.clone()),
        serde_json::Value::Number(sub) => Some(sub.to_string()),
        _ => None,
    }
}

fn cookie_names(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b';').filter_map(|pair| {
        let name = pair.split(|&b| b == b'=').next()?;
        Some(name.trim_ascii())
    })
}

/// Classifies a request's headers.
pub fn classify(headers: &[httparse::Header<'_>], config: &AuthConfig) -> Auth {
    let mut auth = Auth::default();
    let mut identity: Option<Vec<u8>> = None;
    for header in headers {
        let name = header.name;
        let value = header.value.trim_ascii();
        if name.eq_ignore_ascii_case("authorization") {
            let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
                Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
                None => (value, &b""[..]),
            };
            if scheme.eq_ignore_ascii_case(b"bearer") {
                if is_jwt(rest) {
                    auth.kind = AuthType::Jwt;
                    identity = jwt_subject(rest).map(String::into_bytes);
                } else {
                    auth.kind = AuthType::Bearer;
                }
            } else if scheme.eq_ignore_ascii_case(b"basic") {
                auth.kind = AuthType::Basic;
            }
            break; // Authorization decides.
        }
        if auth.kind == AuthType::None
            && config
                .api_key_headers
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        {
            auth.kind = AuthType::ApiKey;
            identity = Some(value.to_vec());
        } else if auth.kind == AuthType::None
            && name.eq_ignore_ascii_case("cookie")
            && cookie_names(value).any(|c| config.session_cookies.iter().any(|s| c == s.as_bytes()))
        {
            auth.kind = AuthType::Session;
        }
    }
    if let (Some(key), Some(identity)) = (&config.principal, identity) {
        auth.principal = Some(pseudonym(key, &identity));
    }
    auth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &'static str)]) -> Vec<httparse::Header<'static>> {
        list.iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    // {"alg":"HS256"} . {"sub":"user-42","name":"x"} . signature
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIiwibmFtZSI6IngifQ.c2lnbmF0dXJl";

    #[test]
    fn classifies_schemes() {
        let config = AuthConfig::default();
        let kind = |list: &[(&'static str, &'static str)]| classify(&headers(list), &config).kind;
        let bearer_jwt = format!("Bearer {JWT}").leak();
        assert_eq!(kind(&[("Authorization", bearer_jwt)]), AuthType::Jwt);
        assert_eq!(
            kind(&[("authorization", "Bearer abc123")]),
            AuthType::Bearer
        );
        assert_eq!(kind(&[("Authorization", "Basic dTpw")]), AuthType::Basic);
        assert_eq!(kind(&[("X-API-Key", "k-123")]), AuthType::ApiKey);
        assert_eq!(
            kind(&[("Cookie", "theme=dark; session=abc")]),
            AuthType::Session
        );
        assert_eq!(kind(&[("Cookie", "theme=dark")]), AuthType::None);
        assert_eq!(kind(&[("Authorization", "Digest x")]), AuthType::None);
        assert_eq!(kind(&[]), AuthType::None);
        // Authorization wins over a key header that comes first.
        assert_eq!(
            kind(&[("X-API-Key", "k"), ("Authorization", "Basic dTpw")]),
            AuthType::Basic
        );
    }

    #[test]
    fn principals_are_pseudonyms_only_with_a_key() {
        let bearer_jwt = format!("Bearer {JWT}").leak();
        let list = headers(&[("Authorization", bearer_jwt)]);
        assert_eq!(classify(&list, &AuthConfig::default()).principal, None);
        let config = AuthConfig {
            principal: Some(PrincipalKey {
                secret: b"k".to_vec(),
                hex_len: 8,
            }),
            ..AuthConfig::default()
        };
        let auth = classify(&list, &config);
        let expected = pseudonym(config.principal.as_ref().unwrap(), b"user-42");
        assert_eq!(auth.principal.as_deref(), Some(expected.as_str()));
        assert_eq!(expected.len(), 8);
        assert!(!format!("{auth:?}{config:?}").contains("user-42"));
        let key = classify(&headers(&[("X-API-Key", "sk-secret")]), &config);
        assert!(key.principal.is_some_and(|p| !p.contains("secret")));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(mac[..4], [0x60, 0xe4, 0x31, 0x59]);
    }

    #[test]
    fn base64url_and_jwt_shapes() {
        assert_eq!(base64url(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64url(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64url(b"a$b"), None);
        assert!(is_jwt(JWT.as_bytes()));
        assert!(!is_jwt(b"abc.def"));
        assert!(!is_jwt(b"a.b.c.d"));
        assert_eq!(jwt_subject(b"x.bm90LWpzb24.y"), None);
    }
}
