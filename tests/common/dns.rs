//! A tiny DNS server for tests: answers every A and AAAA question over UDP
//! from a list of addresses the test changes, or with NXDOMAIN, or not at
//! all; counts the questions it received.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// What the server says to every question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These addresses (the A or AAAA ones, as asked); none is NOERROR with
    /// an empty answer.
    Records(Vec<IpAddr>),
    NxDomain,
    /// No answer at all: the lookup times out.
    Silent,
}

#[derive(Debug)]
struct Inner {
    answer: Mutex<Answer>,
    questions: AtomicUsize,
}

/// A running DNS server on 127.0.0.1; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DnsServer {
    pub async fn start(answer: Answer) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let inner = Arc::new(Inner {
            answer: Mutex::new(answer),
            questions: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let (i, s) = (Arc::clone(&inner), stop.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = tokio::select! {
                    () = s.cancelled() => break,
                    r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
                };
                i.questions.fetch_add(1, Ordering::SeqCst);
                let answer = i.answer.lock().unwrap().clone();
                if let Some(reply) = reply(&buf[..n], &answer) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        DnsServer { addr, inner, stop }
    }

    /// Answers with these addresses from now on.
    pub fn set(&self, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        self.answer(Answer::Records(ips));
    }

    pub fn answer(&self, answer: Answer) {
        *self.inner.answer.lock().unwrap() = answer;
    }

    /// Questions received so far.
    pub fn questions(&self) -> usize {
        self.inner.questions.load(Ordering::SeqCst)
    }
}

/// The reply to `query` (one question), `None` for silence or garbage.
fn reply(query: &[u8], answer: &Answer) -> Option<Vec<u8>> {
    let name_len = query.get(12..)?.iter().position(|&b| b == 0)? + 1;
    let question_end = 12 + name_len + 4;
    let question = query.get(..question_end)?;
    let kind = u16::from_be_bytes([question[question_end - 4], question[question_end - 3]]);
    let mut out = question.to_vec();
    out[2] = 0x81; // response, recursion desired
    let records: Vec<Vec<u8>> = match answer {
        Answer::Silent => return None,
        Answer::NxDomain => {
            out[3] = 0x83;
            Vec::new()
        }
        Answer::Records(ips) => {
            out[3] = 0x80;
            ips.iter()
                .filter_map(|ip| match (ip, kind) {
                    (IpAddr::V4(v4), 1) => Some(v4.octets().to_vec()),
                    (IpAddr::V6(v6), 28) => Some(v6.octets().to_vec()),
                    _ => None,
                })
                .collect()
        }
    };
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for data in records {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 1]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}
