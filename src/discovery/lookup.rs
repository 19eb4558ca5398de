//! Looking up every address of a name: through the system resolver
//! (getaddrinfo, which follows `/etc/resolv.conf`: Docker's embedded DNS,
//! Kubernetes' cluster DNS), or, when `[global] resolvers` names servers,
//! with A and AAAA queries over UDP to them, in order.
//! Invariant: a lookup either returns the addresses the name has now
//! (possibly none) or fails; it never returns a partial answer, and it is
//! bounded: `LOOKUP_TIMEOUT` through the system resolver, `SERVER_TIMEOUT`
//! per name server asked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::model::ServerAddress;

/// Most time one lookup through the system resolver may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Most time one name server may take to answer both questions of a lookup
/// before the next one is asked (HAProxy's `timeout resolve` is 1s too).
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest answer asked for (EDNS0), as DNS flag day 2020 advises; it holds
/// about 70 A records.
const UDP_PAYLOAD: u16 = 1232;

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("the name does not exist (NXDOMAIN)")]
    NoSuchName,
    #[error("the name server failed (rcode {0})")]
    ServerFailed(u8),
    #[error("timed out")]
    TimedOut,
    #[error("the answer was truncated")]
    Truncated,
    #[error("{0}")]
    Io(String),
    #[error("malformed answer")]
    Malformed,
}

/// Every address `name` has now, each with `name`'s port, sorted.
pub async fn lookup(
    name: &ServerAddress,
    resolvers: &[SocketAddr],
) -> Result<Vec<SocketAddr>, LookupError> {
    let ips = ask(name, resolvers).await?;
    let mut addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, name.port))
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

async fn ask(name: &ServerAddress, resolvers: &[SocketAddr]) -> Result<Vec<IpAddr>, LookupError> {
    if resolvers.is_empty() {
        let system = tokio::net::lookup_host((&*name.host, name.port));
        return match tokio::time::timeout(LOOKUP_TIMEOUT, system).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(LookupError::Io(e.to_string())),
            Err(_) => Err(LookupError::TimedOut),
        };
    }
    let mut last = LookupError::TimedOut;
    for server in resolvers {
        let answer = tokio::time::timeout(SERVER_TIMEOUT, ask_server(&name.host, *server));
        match answer.await.unwrap_or(Err(LookupError::TimedOut)) {
            Ok(ips) => return Ok(ips),
            // The name server answered for the name: another would too.
            Err(e @ LookupError::NoSuchName) => return Err(e),
            Err(e) => {
                tracing::debug!(server = %server, host = %name.host, "name server failed: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// A and AAAA of `host` from one name server; both must succeed.
async fn ask_server(host: &str, server: SocketAddr) -> Result<Vec<IpAddr>, LookupError> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let io = |e: std::io::Error| LookupError::Io(e.to_string());
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let mut ips = Vec::new();
    for kind in [RecordType::A, RecordType::Aaaa] {
        let id = query_id();
        let query = encode_query(id, host, kind).ok_or(LookupError::NoSuchName)?;
        socket.send(&query).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(UDP_PAYLOAD)];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // Late answers to an earlier query are passed over.
            match decode_answer(id, &buf[..n]) {
                Err(LookupError::Malformed) => continue,
                Err(e) => return Err(e),
                Ok(found) => {
                    ips.extend(found);
                    break;
                }
            }
        }
    }
    Ok(ips)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordType {
    A,
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }
}

/// A query id no one on the path can guess (RFC 5452).
fn query_id() -> u16 {
    let mut bytes = [0u8; 2];
    let _unpredictable_or_zero =
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u16::from_be_bytes(bytes)
}

/// A recursive query for `host` with an EDNS0 record; `None` when `host` is
/// not a name that fits in a query.
fn encode_query(id: u16, host: &str, kind: RecordType) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + host.len());
    out.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question, one additional (OPT) record.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    for label in host.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&kind.code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // class IN
    // OPT: root name, type 41, class = payload size, ttl 0, no data.
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Some(out)
}

/// The addresses in the answer to query `id`: every A and AAAA record of
/// the answer section (a CNAME chain's target records included).
/// `Malformed` also stands for an answer to another query.
fn decode_answer(id: u16, packet: &[u8]) -> Result<Vec<IpAddr>, LookupError> {
    let mut r = Reader { packet, at: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let is_response = flags & 0x8000 != 0;
    if got_id != id || !is_response {
        return Err(LookupError::Malformed);
    }
    if flags & 0x0200 != 0 {
        return Err(LookupError::Truncated);
    }
    match flags & 0x000f {
        0 => {}
        3 => return Err(LookupError::NoSuchName),
        rcode => return Err(LookupError::ServerFailed(rcode as u8)),
    }
    let questions = r.u16()?;
    let answers = r.u16()?;
    r.skip(4)?; // authority and additional counts
    for _ in 0..questions {
        r.name()?;
        r.skip(4)?;
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        r.name()?;
        let kind = r.u16()?;
        let _class = r.u16()?;
        r.skip(4)?; // ttl
        let len = usize::from(r.u16()?);
        let data = r.take(len)?;
        match (kind, data.len()) {
            (1, 4) => ips.push(IpAddr::from(
                <[u8; 4]>::try_from(data).map_err(|_| LookupError::Malformed)?,
            )),
            (28, 16) => ips.push(IpAddr::from(
                <[u8; 16]>::try_from(data).map_err(|_| LookupError::Malformed)?,
            )),
            _ => {}
        }
    }
    Ok(ips)
}

/// A bounds-checked cursor over a packet.
struct Reader<'a> {
    packet: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LookupError> {
        let end = self.at.checked_add(n).ok_or(LookupError::Malformed)?;
        let bytes = self
            .packet
            .get(self.at..end)
            .ok_or(LookupError::Malformed)?;
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), LookupError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, LookupError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Passes over a name: labels ending in a zero length or a compression
    /// pointer (whose target is not followed: the name is not needed).
    fn name(&mut self) -> Result<(), LookupError> {
        loop {
            let len = self.take(1)?[0];
            match len {
                0 => return Ok(()),
                l if l & 0xc0 == 0xc0 => return self.skip(1),
                l if l & 0xc0 == 0 => self.skip(usize::from(l))?,
                _ => return Err(LookupError::Malformed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with these records (type, data), rcode and flags.
    fn answer(query: &[u8], rcode: u8, truncated: bool, records: &[(u16, &[u8])]) -> Vec<u8> {
        // The question ends 4 bytes after its name's zero length.
        let question_end = 12 + query[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5;
        let mut out = query[..question_end].to_vec();
        out[2] = 0x81 | if truncated { 0x02 } else { 0 };
        out[3] = 0x80 | rcode;
        out[6..8].copy_from_slice(&u16::try_from(records.len()).unwrap_or(0).to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        for (kind, data) in records {
            out.extend_from_slice(&[0xc0, 12]); // the question's name
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 5]);
            out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn queries_name_the_host_and_ask_for_recursion() {
        let q = encode_query(0x1234, "users.svc.", RecordType::Aaaa).unwrap_or_default();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..23], b"\x05users\x03svc\x00");
        assert_eq!(&q[23..27], &[0, 28, 0, 1]);
        for bad in ["", "a..b", &"x".repeat(64), &"a.".repeat(128)] {
            assert_eq!(encode_query(1, bad, RecordType::A), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_give_their_addresses_or_say_why_not() {
        let q = encode_query(7, "users", RecordType::A).unwrap_or_default();
        let v6 = Ipv6Addr::LOCALHOST.octets();
        let cname: &[u8] = b"\x03www\x00";
        type Case = (Vec<u8>, Result<Vec<IpAddr>, LookupError>);
        let cases: Vec<Case> = vec![
            (
                answer(
                    &q,
                    0,
                    false,
                    &[
                        (5, cname),
                        (1, &[10, 0, 0, 1]),
                        (28, &v6),
                        (1, &[10, 0, 0, 2]),
                    ],
                ),
                Ok(vec![
                    IpAddr::from([10, 0, 0, 1]),
                    IpAddr::from(Ipv6Addr::LOCALHOST),
                    IpAddr::from([10, 0, 0, 2]),
                ]),
            ),
            (answer(&q, 0, false, &[]), Ok(vec![])),
            (answer(&q, 3, false, &[]), Err(LookupError::NoSuchName)),
            (answer(&q, 2, false, &[]), Err(LookupError::ServerFailed(2))),
            (answer(&q, 0, true, &[]), Err(LookupError::Truncated)),
            // Another query's answer, a query, a short or cut packet.
            (
                answer(
                    &encode_query(8, "users", RecordType::A).unwrap_or_default(),
                    0,
                    false,
                    &[],
                ),
                Err(LookupError::Malformed),
            ),
            (q.clone(), Err(LookupError::Malformed)),
            (vec![0, 7, 0x81], Err(LookupError::Malformed)),
            (
                answer(&q, 0, false, &[(1, &[10, 0, 0, 1])])[..35].to_vec(),
                Err(LookupError::Malformed),
            ),
        ];
        for (packet, expected) in cases {
            assert_eq!(decode_answer(7, &packet), expected, "{packet:?}");
        }
    }
}
