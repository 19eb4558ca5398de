//! The hot functions of one proxied request, each alone: server pick
//! (round robin and least connections over four servers), the head checks
//! (the CL+TE scanner over a typical head, the framing and limit checks),
//! the header rewrites both ways, and the counter updates of one request.
//! Route matching is in `benches/routing.rs`.
//!
//!   cargo bench --bench hot_path
#![expect(clippy::unwrap_used, reason = "fixed inputs written in this file")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use switchyard::balance::{Balancer, Member};
use switchyard::model::{AdminState, BackendName, BalanceAlgorithm, FrontendLimits, ServerName};
use switchyard::proxy::hot::{
    Forwarding, HeadScan, check_head, rewrite_request, rewrite_response, validate_request,
};
use switchyard::state::{Counters, Health, ServerState};

/// A browser-like GET head, 10 fields.
const HEAD: &[u8] = b"GET /api/users/42?expand=orders HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f2d1c; SWITCHYARD=app.a\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Mode: navigate\r\n\
Priority: u=0, i\r\n\r\n";

fn servers(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let state = ServerState::new(
                BackendName::new("app"),
                ServerName::new(&format!("s{i}")),
                AdminState::Ready,
                1 + i as u32,
            );
            state.set_health(Health::Up);
            Member {
                state: Arc::new(state),
                is_backup: false,
            }
        })
        .collect()
}

fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in HEAD.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(&line[..colon]).unwrap();
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).unwrap();
        headers.append(name, value);
    }
    headers
}

fn response_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-length", HeaderValue::from_static("512"));
    headers.insert(
        "date",
        HeaderValue::from_static("Mon, 30 Nov 2026 12:00:00 GMT"),
    );
    headers.insert("server", HeaderValue::from_static("users/1.4"));
    headers.insert("connection", HeaderValue::from_static("keep-alive"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers
}

fn bench(c: &mut Criterion) {
    for (name, algorithm) in [
        ("pick/roundrobin-4", BalanceAlgorithm::RoundRobin),
        ("pick/leastconn-4", BalanceAlgorithm::LeastConn),
    ] {
        let balancer = Balancer::new(algorithm, servers(4));
        c.bench_function(name, |b| {
            b.iter(|| black_box(balancer.pick(black_box(&[]))))
        });
    }

    c.bench_function("head/cl-te-scan", |b| {
        b.iter(|| {
            let mut scan = HeadScan::default();
            let mut verdicts = 0u32;
            scan.feed(black_box(HEAD), |_| verdicts += 1);
            black_box(verdicts)
        })
    });
    let headers = request_headers();
    let uri: http::Uri = "/api/users/42?expand=orders".parse().unwrap();
    c.bench_function("head/validate", |b| {
        b.iter(|| {
            black_box(validate_request(
                black_box(&Method::GET),
                Version::HTTP_11,
                black_box(&uri),
                black_box(&headers),
            ))
        })
    });
    let mut request = Request::get(uri.clone()).body(()).unwrap();
    *request.headers_mut() = headers.clone();
    c.bench_function("head/limits", |b| {
        b.iter(|| black_box(check_head(black_box(&request), &FrontendLimits::DEFAULT)))
    });

    let peer_ip = HeaderValue::from_static("203.0.113.7");
    let forwarding = Forwarding {
        peer_ip: &peer_ip,
        is_tls: false,
        add_forwarded: true,
        is_peer_trusted: false,
        host_override: None,
    };
    c.bench_function("rewrite/request", |b| {
        b.iter_batched_ref(
            request_headers,
            |h| rewrite_request(h, None, &forwarding),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("rewrite/response", |b| {
        b.iter_batched_ref(response_headers, rewrite_response, BatchSize::SmallInput)
    });

    let counters = Arc::new(Counters::default());
    c.bench_function("counters/one-request", |b| {
        b.iter(|| {
            let in_flight = counters.begin();
            counters.count_response(black_box(200));
            counters.add_bytes_out(black_box(512));
            counters.record_timings(
                Duration::from_micros(40),
                Duration::from_micros(120),
                Duration::from_micros(180),
            );
            drop(in_flight);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
