//! The one-time token cache behind the streaming URLs: `Exec`, `Attach` and `PortForward`
//! store their validated request under a random token; the first HTTP request naming the token
//! takes it out. A token not used within the TTL expires; an unknown, expired or used token is
//! a 404, as in kubelet's streaming library.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// Most requests waiting for their client at once (kubelet's limit); more is a DoS.
pub const MAX_IN_FLIGHT: usize = 1000;

/// Random bytes per token: 2^64 guesses per live token is out of reach within a minute.
const TOKEN_BYTES: usize = 8;

/// A cache of pending requests of type `T` keyed by one-time tokens.
#[derive(Debug)]
pub struct TokenCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

/// The cache is full of requests no client has used yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many streaming requests in flight ({MAX_IN_FLIGHT})")]
pub struct CacheFull;

impl<T> TokenCache<T> {
    /// An empty cache whose tokens expire `ttl` after they were issued.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` and returns its new token (hex).
    pub fn insert(&self, request: T) -> Result<String, CacheFull> {
        self.insert_at(request, Instant::now())
    }

    /// Takes the request of `token` out; `None` when unknown, used or expired.
    pub fn consume(&self, token: &str) -> Option<T> {
        self.consume_at(token, Instant::now())
    }

    fn insert_at(&self, request: T, now: Instant) -> Result<String, CacheFull> {
        let mut entries = self.lock();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(CacheFull);
        }
        loop {
            let token = new_token();
            if !entries.contains_key(&token) {
                entries.insert(token.clone(), (now + self.ttl, request));
                return Ok(token);
            }
        }
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<T> {
        let (expires, request) = self.lock().remove(token)?;
        (expires > now).then_some(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        // A panic while holding the lock leaves a consistent map (each step is one call).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_once() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let token = cache.insert("exec").unwrap();
        assert_eq!(token.len(), 16);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(cache.consume(&token), Some("exec"));
        assert_eq!(cache.consume(&token), None, "reused");
        assert_eq!(cache.consume("unknown"), None);
    }

    #[test]
    fn tokens_expire_after_the_ttl() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let start = Instant::now();
        let early = cache.insert_at(1, start).unwrap();
        let late = cache.insert_at(2, start).unwrap();
        assert_ne!(early, late);
        assert_eq!(
            cache.consume_at(&early, start + Duration::from_secs(59)),
            Some(1)
        );
        assert_eq!(
            cache.consume_at(&late, start + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn expired_entries_make_room() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            cache.insert_at((), start).unwrap();
        }
        assert_eq!(cache.insert_at((), start), Err(CacheFull));
        cache
            .insert_at((), start + Duration::from_secs(2))
            .expect("the old ones expired");
    }
}
