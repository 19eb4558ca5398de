//! Per-request cost of routing rules: matching over 50 routes with mixed
//! conditions (host, path prefix, exact path, regex, methods, headers,
//! cookies, query), a path rewrite, and header rules with templates applied.
//!
//!   cargo bench --bench routing

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use switchyard::model::{RequestView, Route, Variable};

/// 50 routes, ten of each shape, each on its own host or prefix.
fn config() -> String {
    let mut toml = String::from(
        "[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"mono\"\n",
    );
    for i in 0..10 {
        toml.push_str(&format!(
            "[[frontend.route]]\nhost = \"svc{i}.example.com\"\npath_prefix = \"/api\"\nbackend = \"new\"\n\
             [[frontend.route]]\npath = \"/exact/{i}\"\nmethods = [\"GET\", \"HEAD\"]\nbackend = \"new\"\n\
             [[frontend.route]]\npath_regex = \"^/v{i}[0-9]*/items/[0-9]+$\"\nbackend = \"new\"\n\
             [[frontend.route]]\npath_prefix = \"/canary{i}\"\nheaders = {{ \"X-Canary\" = \"1\" }}\ncookies = {{ beta = \"yes\" }}\nbackend = \"new\"\n\
             [[frontend.route]]\npath_prefix = \"/search{i}\"\nquery = {{ v = \"2\" }}\nrewrite = {{ strip_prefix = \"/search{i}\" }}\n\
             request_headers = {{ set = {{ \"X-Env\" = \"prod\", \"X-Client\" = \"{{client_ip}}\" }}, add = {{ \"X-Id\" = \"{{request_id}}\" }}, remove = [\"X-Debug\"] }}\n\
             backend = \"new\"\n"
        ));
    }
    toml.push_str(
        "[[backend]]\nname = \"mono\"\n[[backend.server]]\nname = \"m\"\naddress = \"127.0.0.1:1\"\n\
         [[backend]]\nname = \"new\"\n[[backend.server]]\nname = \"n\"\naddress = \"127.0.0.1:2\"\n",
    );
    toml
}

fn first_match<'a>(routes: &'a [Route], view: &RequestView<'_>) -> Option<&'a Route> {
    routes.iter().find(|r| r.matches(view))
}

fn bench(c: &mut Criterion) {
    let topology = switchyard::config::parse(&config(), Path::new("bench.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let routes = &topology.frontends[0].routes;
    assert_eq!(routes.len(), 50);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("www.example.com"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("x-canary", HeaderValue::from_static("1"));
    headers.insert("cookie", HeaderValue::from_static("session=abc; beta=yes"));
    headers.insert("x-debug", HeaderValue::from_static("1"));
    let view = |host, path, query| RequestView {
        host: Some(host),
        path,
        method: &Method::GET,
        headers: &headers,
        query,
    };
    let cases = [
        ("first route", view("svc0.example.com", "/api/users", None)),
        (
            "regex, middle",
            view("www.example.com", "/v5/items/42", None),
        ),
        (
            "canary cookie, last group",
            view("www.example.com", "/canary9/x", None),
        ),
        (
            "query, last route",
            view("www.example.com", "/search9/q", Some("v=2&x=1")),
        ),
        (
            "no match (default)",
            view("www.example.com", "/static/app.js", None),
        ),
    ];
    let mut group = c.benchmark_group("match 50 routes");
    for (name, v) in &cases {
        assert!(first_match(routes, v).is_some() || name.starts_with("no match"));
        group.bench_function(*name, |b| b.iter(|| first_match(routes, black_box(v))));
    }
    group.finish();

    let route = first_match(routes, &cases[3].1).unwrap_or(&routes[4]);
    let value_of = |v: Variable| match v {
        Variable::ClientIp => "203.0.113.9",
        Variable::RequestId => "4bf92f3577b34da6a3ce929d0e0e4736",
        Variable::Host => "www.example.com",
        Variable::Frontend => "web",
        Variable::Backend => "new",
        Variable::Server => "n",
    };
    c.bench_function(
        "header rules (set fixed + template, add template, remove)",
        |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |h| route.request_headers.apply(h, &value_of),
                BatchSize::SmallInput,
            )
        },
    );
    let rewrite = route
        .rewrite
        .as_ref()
        .unwrap_or_else(|| panic!("route has a rewrite"));
    c.bench_function("rewrite strip_prefix + normalise", |b| {
        b.iter(|| switchyard::proxy::rules::rewrite_path(rewrite, black_box("/search9/q/items")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
