//! HTTP basic authentication against the web configuration's bcrypt
//! hashes. A bcrypt check costs tens of milliseconds on purpose, so its
//! answers are remembered (by a SHA-256 of user, password and hash; the
//! password itself is never kept), at most one runs at a time on the
//! blocking pool, and past a few waiting, further attempts are turned
//! away: a scraper with the right password is answered from memory while
//! a client guessing passwords costs at most one core.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Answers remembered; past this many, the memory starts again.
const REMEMBERED: usize = 256;
/// bcrypt checks waiting at once; past this, attempts are turned away.
const MAX_WAITING: usize = 4;

/// What a request's credentials come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Missing or wrong: answered `401` with a `WWW-Authenticate` header.
    Denied,
    /// Too many checks waiting: answered `429`.
    Busy,
}

#[derive(Debug)]
pub struct Checker {
    remembered: Mutex<HashMap<[u8; 32], bool>>,
    waiting: AtomicUsize,
    running: Semaphore,
}

impl Checker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            remembered: Mutex::default(),
            waiting: AtomicUsize::new(0),
            running: Semaphore::new(1),
        })
    }

    /// Checks an `Authorization` header against `users`.
    pub async fn check(
        &self,
        header: Option<&HeaderValue>,
        users: &BTreeMap<String, String>,
    ) -> Verdict {
        let Some((user, password)) = header.and_then(credentials) else {
            return Verdict::Denied;
        };
        let Some(hash) = users.get(&user) else {
            return Verdict::Denied;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if let Some(&known) = self.lock().get(&key) {
            return verdict(known);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Busy;
        }
        let permit = self.running.acquire().await;
        let hash = hash.clone();
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        drop(permit);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let mut remembered = self.lock();
        if remembered.len() >= REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, matches);
        verdict(matches)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn verdict(matches: bool) -> Verdict {
    if matches {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

/// The user and password of a `Basic` header.
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bcrypt::hash("s3cret", 4)`, made once (the cost the tests can
    /// afford).
    fn users() -> BTreeMap<String, String> {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        BTreeMap::from([("prometheus".to_owned(), hash)])
    }

    fn basic(text: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_right_password_passes_and_is_remembered() {
        let checker = Checker::new();
        let users = users();
        let right = basic("prometheus:s3cret");
        assert_eq!(checker.check(Some(&right), &users).await, Verdict::Allowed);
        assert_eq!(checker.lock().len(), 1);
        assert_eq!(checker.check(Some(&right), &users).await, Verdict::Allowed);
        for wrong in [
            basic("prometheus:guess"),
            basic("nobody:s3cret"),
            basic("no colon"),
            HeaderValue::from_static("Bearer abc"),
            HeaderValue::from_static("Basic !!!"),
        ] {
            assert_eq!(checker.check(Some(&wrong), &users).await, Verdict::Denied);
        }
        assert_eq!(checker.check(None, &users).await, Verdict::Denied);
        // A password with a colon: the first colon ends the user.
        let mut users = users;
        users.insert("a".into(), bcrypt::hash("b:c", 4).unwrap());
        let colon = basic("a:b:c");
        assert_eq!(checker.check(Some(&colon), &users).await, Verdict::Allowed);
    }
}
