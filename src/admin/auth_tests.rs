use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            header::HeaderName::from_static(name),
            header::HeaderValue::from_static(value),
        );
    }
    map
}

fn guard() -> Guard {
    Guard::new(
        "s3cret".to_owned(),
        SocketAddr::from(([127, 0, 0, 1], 8001)),
    )
}

#[test]
fn constant_time_compare() {
    for (a, b, expected) in [
        ("s3cret", "s3cret", true),
        ("s3cret", "s3creT", false),
        ("s3cre", "s3cret", false),
        ("s3cret\0", "s3cret", false),
        ("", "", true),
        ("", "x", false),
    ] {
        assert_eq!(
            constant_time_eq(a.as_bytes(), b.as_bytes()),
            expected,
            "{a:?} {b:?}"
        );
    }
}

#[test]
fn base64_round_trips_known_values() {
    for (text, expected) in [
        ("YWRtaW46czNjcmV0", Some("admin:s3cret")),
        ("Og==", Some(":")),
        ("YQ", Some("a")),
        ("YWI=", Some("ab")),
        ("", Some("")),
        ("!!!!", None),
        ("Y", None),
    ] {
        let got = BASE64
            .decode(text)
            .ok()
            .map(|b| String::from_utf8(b).expect("utf-8"));
        assert_eq!(got.as_deref(), expected, "{text}");
    }
}

#[test]
fn credentials_from_bearer_and_basic() {
    let g = guard();
    for (value, expected) in [
        ("Bearer s3cret", Some("token")),
        ("bearer  s3cret ", Some("token")),
        ("Basic YWRtaW46czNjcmV0", Some("admin")), // admin:s3cret
        ("Basic OnMzY3JldA==", Some("basic")),     // :s3cret
        ("Basic YWRtaW46d3Jvbmc=", None),          // admin:wrong
        ("Bearer wrong", None),
        ("Digest s3cret", None),
        ("s3cret", None),
    ] {
        let mut map = HeaderMap::new();
        map.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_str(value).expect("value"),
        );
        let who = g.authenticate(&map).map(|c| c.who);
        assert_eq!(who.as_deref(), expected, "{value}");
    }
    assert!(g.authenticate(&HeaderMap::new()).is_none());
}

#[test]
fn host_allow_list() {
    let g = guard();
    for (host, expected) in [
        ("127.0.0.1:8001", true),
        ("localhost:8001", true),
        ("LOCALHOST:8001", true),
        ("[::1]:8001", true),
        ("127.0.0.1:8002", false),
        ("evil.example:8001", false),
        ("localhost", false),
        ("", false),
    ] {
        assert_eq!(g.is_allowed_host(host), expected, "{host}");
    }
    let any = Guard::new("t".to_owned(), SocketAddr::from(([0, 0, 0, 0], 9000)));
    assert!(any.is_allowed_host("10.1.2.3:9000"));
    assert!(!any.is_allowed_host("10.1.2.3:9001"));
    assert!(!any.is_allowed_host("rebound.example:9000"));
}

#[test]
fn csrf_rules() {
    let host = "127.0.0.1:8001";
    let json = ("content-type", "application/json");
    let admin = ("x-switchyard-admin", "1");
    type Case<'a> = (Method, &'a [(&'static str, &'static str)], bool);
    let cases: &[Case] = &[
        (Method::GET, &[], true),
        (Method::HEAD, &[("sec-fetch-site", "cross-site")], true),
        (Method::PUT, &[json, admin], true),
        (
            Method::PUT,
            &[("content-type", "application/json; charset=utf-8"), admin],
            true,
        ),
        (
            Method::PUT,
            &[json, admin, ("sec-fetch-site", "same-origin")],
            true,
        ),
        (
            Method::PUT,
            &[json, admin, ("sec-fetch-site", "none")],
            true,
        ),
        (
            Method::PUT,
            &[json, admin, ("origin", "http://127.0.0.1:8001")],
            true,
        ),
        (Method::PUT, &[json], false),
        (Method::PUT, &[admin], false),
        (
            Method::POST,
            &[("content-type", "application/x-www-form-urlencoded"), admin],
            false,
        ),
        (
            Method::POST,
            &[("content-type", "text/plain"), admin],
            false,
        ),
        (
            Method::PUT,
            &[json, admin, ("sec-fetch-site", "cross-site")],
            false,
        ),
        (
            Method::PUT,
            &[json, admin, ("sec-fetch-site", "same-site")],
            false,
        ),
        (
            Method::PUT,
            &[json, admin, ("origin", "http://evil.example")],
            false,
        ),
        (Method::PUT, &[json, admin, ("origin", "null")], false),
        (Method::DELETE, &[], false),
    ];
    for (method, pairs, allowed) in cases {
        let got = csrf_violation(method, &headers(pairs), host);
        assert_eq!(got.is_none(), *allowed, "{method} {pairs:?}: {got:?}");
    }
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let g = guard();
    let ip: IpAddr = [192, 0, 2, 1].into();
    let other: IpAddr = [192, 0, 2, 2].into();
    let start = Instant::now();
    for _ in 0..MAX_FAILURES {
        assert_eq!(g.throttled_for(ip, start), None);
        g.record_failure(ip, start);
    }
    assert_eq!(g.throttled_for(ip, start), Some(FAILURE_WINDOW));
    let later = start + Duration::from_secs(45);
    assert_eq!(g.throttled_for(ip, later), Some(Duration::from_secs(15)));
    assert_eq!(g.throttled_for(other, start), None);
    assert_eq!(g.throttled_for(ip, start + FAILURE_WINDOW), None);
}

#[test]
fn secret_sources_and_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loopback = model::Admin {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token_file: None,
        peers: Vec::new(),
        replica: None,
    };
    let explicit = resolve_secret(&loopback, Some(" abc \n".to_owned()), dir.path());
    assert_eq!(explicit.expect("explicit"), "abc");

    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").expect("write");
    let with_file = model::Admin {
        token_file: Some(file),
        ..loopback.clone()
    };
    assert_eq!(
        resolve_secret(&with_file, None, dir.path()).expect("file"),
        "from-file"
    );

    let public = model::Admin {
        listen: SocketAddr::from(([0, 0, 0, 0], 8001)),
        token_file: None,
        peers: Vec::new(),
        replica: None,
    };
    if std::env::var(TOKEN_ENV).is_err() {
        let refused = resolve_secret(&public, None, dir.path());
        assert!(matches!(
            refused,
            Err(AdminError::UnprotectedNonLoopback(_))
        ));
        let generated = resolve_secret(&loopback, None, dir.path()).expect("generated");
        assert_eq!(generated.len(), 64);
        let path = generated_token_path(dir.path());
        let stored = std::fs::read_to_string(&path).expect("stored");
        assert_eq!(stored.trim(), generated);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
