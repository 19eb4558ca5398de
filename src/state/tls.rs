//! TLS handshake counters of one frontend: handshakes completed, failures by
//! reason, TLS versions and ALPN protocols negotiated. Kept across reloads by
//! frontend name, beside the frontend's traffic `Counters`.
//! Invariant: plain atomics, no locks; every enum below has a fixed label
//! used by the API, the page and Prometheus alike.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No handshake within the frontend's `client_header` timeout.
    Timeout,
    /// No protocol version, cipher suite or other parameter in common
    /// (TLS 1.1 and older clients land here).
    Incompatible,
    /// The client aborted with an alert (e.g. it did not trust the
    /// certificate).
    Alert,
    /// Not TLS, or a malformed handshake message.
    Malformed,
    /// The connection closed or failed mid-handshake.
    Closed,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Incompatible,
        HandshakeFailure::Alert,
        HandshakeFailure::Malformed,
        HandshakeFailure::Closed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::Alert => "alert",
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::Closed => "closed",
        }
    }

    fn index(self) -> usize {
        match self {
            HandshakeFailure::Timeout => 0,
            HandshakeFailure::Incompatible => 1,
            HandshakeFailure::Alert => 2,
            HandshakeFailure::Malformed => 3,
            HandshakeFailure::Closed => 4,
        }
    }
}

/// The TLS version a handshake settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

    pub fn label(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// The application protocol ALPN chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http11,
    /// The client offered no ALPN (HTTP/1.1 is spoken).
    None,
}

impl Alpn {
    pub const ALL: [Alpn; 3] = [Alpn::H2, Alpn::Http11, Alpn::None];

    pub fn label(self) -> &'static str {
        match self {
            Alpn::H2 => "h2",
            Alpn::Http11 => "http/1.1",
            Alpn::None => "none",
        }
    }

    fn index(self) -> usize {
        match self {
            Alpn::H2 => 0,
            Alpn::Http11 => 1,
            Alpn::None => 2,
        }
    }
}

/// One frontend's handshake counters.
#[derive(Debug, Default)]
pub struct TlsCounters {
    failures: [AtomicU64; 5],
    versions: [AtomicU64; 2],
    alpn: [AtomicU64; 3],
}

/// A copy of `TlsCounters` at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCountersSnapshot {
    pub handshakes: u64,
    pub failures: Vec<(HandshakeFailure, u64)>,
    pub versions: Vec<(TlsVersion, u64)>,
    pub alpn: Vec<(Alpn, u64)>,
}

impl TlsCounters {
    pub fn count_handshake(&self, version: TlsVersion, alpn: Alpn) {
        let v = match version {
            TlsVersion::Tls12 => 0,
            TlsVersion::Tls13 => 1,
        };
        self.versions[v].fetch_add(1, Ordering::Relaxed);
        self.alpn[alpn.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_failure(&self, reason: HandshakeFailure) {
        self.failures[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TlsCountersSnapshot {
        let versions: Vec<(TlsVersion, u64)> = TlsVersion::ALL
            .iter()
            .zip(&self.versions)
            .map(|(v, n)| (*v, n.load(Ordering::Relaxed)))
            .collect();
        TlsCountersSnapshot {
            handshakes: versions.iter().map(|(_, n)| n).sum(),
            failures: HandshakeFailure::ALL
                .iter()
                .map(|r| (*r, self.failures[r.index()].load(Ordering::Relaxed)))
                .collect(),
            versions,
            alpn: Alpn::ALL
                .iter()
                .map(|a| (*a, self.alpn[a.index()].load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_handshakes_over_versions() {
        let c = TlsCounters::default();
        c.count_handshake(TlsVersion::Tls13, Alpn::H2);
        c.count_handshake(TlsVersion::Tls12, Alpn::None);
        c.count_failure(HandshakeFailure::Incompatible);
        let s = c.snapshot();
        assert_eq!(s.handshakes, 2);
        assert_eq!(
            s.versions,
            vec![(TlsVersion::Tls12, 1), (TlsVersion::Tls13, 1)]
        );
        assert_eq!(s.alpn[0], (Alpn::H2, 1));
        assert_eq!(s.failures[1], (HandshakeFailure::Incompatible, 1));
    }
}
