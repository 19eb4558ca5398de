//! Who a request comes from and what it is called: the client's address
//! behind `trusted_proxies` (the rightmost untrusted address of
//! `X-Forwarded-For` + peer) and the request id (kept from a trusted peer,
//! generated otherwise). Owns `Identity` and request id generation.
//! Invariant: computed once per request from the head as received, before
//! any rewriting; malformed `X-Forwarded-For` entries are skipped, never an
//! error; a generated id takes one atomic increment and one allocation,
//! and its clones none.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::model::{Global, client_address};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Longest request id kept from a trusted peer.
const MAX_ID_LEN: usize = 128;

/// The client and the request id of one request.
#[derive(Debug)]
pub struct Identity {
    pub client_ip: IpAddr,
    /// `client_ip` as text: the connection's formatted peer when they agree.
    pub client_ip_text: HeaderValue,
    /// The TCP peer is in `trusted_proxies`: its `X-Forwarded-For` is
    /// appended to rather than replaced.
    pub is_peer_trusted: bool,
    /// Header name and value; `None` when request ids are off.
    pub request_id: Option<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// `peer_text` is the peer's IP formatted once per connection.
    pub fn of(peer: IpAddr, peer_text: &HeaderValue, global: &Global, headers: &HeaderMap) -> Self {
        let peer = peer.to_canonical();
        let trusted = &global.trusted_proxies;
        let is_peer_trusted = trusted.iter().any(|c| c.contains(peer));
        let client_ip = match is_peer_trusted {
            false => peer,
            true => client_address(
                peer,
                headers
                    .get_all(&X_FORWARDED_FOR)
                    .iter()
                    .map(HeaderValue::as_bytes),
                trusted,
            ),
        };
        let client_ip_text = match client_ip == peer {
            true => peer_text.clone(),
            false => {
                HeaderValue::try_from(client_ip.to_string()).unwrap_or_else(|_| peer_text.clone())
            }
        };
        let request_id = global.request_id.as_ref().map(|name| {
            let kept = headers
                .get(name)
                .filter(|v| is_peer_trusted && is_valid_id(v.as_bytes()));
            let mut id = kept.cloned().unwrap_or_else(generate_id);
            // One value per request: HPACK sends it as a literal that is
            // never indexed, instead of filling the h2 dynamic table with
            // values that never recur (and evicting the ones that do).
            id.set_sensitive(true);
            (name.clone(), id)
        });
        Identity {
            client_ip,
            client_ip_text,
            is_peer_trusted,
            request_id,
        }
    }

    /// The request id as text, empty when ids are off.
    pub fn request_id_text(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|(_, v)| v.to_str().ok())
            .unwrap_or("")
    }

    /// The client address as text.
    pub fn client_ip_str(&self) -> &str {
        self.client_ip_text.to_str().unwrap_or("")
    }

    /// Sets the request id header (upstream on requests, to the client on
    /// responses), replacing any other value.
    pub fn insert_request_id(&self, headers: &mut HeaderMap) {
        if let Some((name, value)) = &self.request_id {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// 1 to 128 visible ASCII characters.
fn is_valid_id(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A fresh id: 32 hex digits, a per-process random half and a per-request
/// half that a bijective mix of a counter makes unique within the process.
pub fn generate_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<u64> = OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::BuildHasher;
        let started = std::time::SystemTime::now();
        std::collections::hash_map::RandomState::new().hash_one((started, std::process::id()))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    hex(prefix, &mut text[..16]);
    hex(mix(n.wrapping_add(prefix)), &mut text[16..]);
    // One allocation that holds its own count: the value is cloned into
    // the request, the response and the log line, and a `Bytes` copied
    // from a slice would allocate again at its first clone.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).unwrap_or(HeaderValue::from_static("-"))
}

/// SplitMix64's finaliser: a bijection on `u64`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(mut n: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_hex() {
        let a = generate_id();
        let b = generate_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn id_validity() {
        assert!(is_valid_id(b"abc-123"));
        assert!(!is_valid_id(b""));
        assert!(!is_valid_id(b"a b"));
        assert!(!is_valid_id(&[b'a'; 129]));
    }
}
