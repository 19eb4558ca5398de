use super::*;
use crate::admin::sampler::Rates;
use crate::admin::stats::{CheckView, ReloadView};
use crate::state::CountersSnapshot;

fn server(name: &str, status: &'static str) -> ServerStats {
    let mut counters = CountersSnapshot {
        requests: 7,
        active: 1,
        max_active: 2,
        bytes_in: 100,
        bytes_out: 2000,
        avg_total_us: 12_345,
        ..CountersSnapshot::default()
    };
    counters.responses = [0, 6, 0, 0, 1, 0];
    ServerStats {
        name: name.to_owned(),
        address: "10.0.0.1:80".to_owned(),
        status,
        admin_state: "ready",
        health: "UP",
        check_enabled: true,
        weight: 10,
        config_admin_state: "ready",
        config_weight: 10,
        backup: false,
        counters,
        rates: Rates::default(),
        check: CheckView {
            status: Some("L7OK"),
            code: Some(200),
            duration_ms: Some(3),
            rise: Some(2),
            fall: Some(3),
            message: Some("a, \"b\"".to_owned()),
            ..CheckView::default()
        },
        transitions_down: 1,
        last_change: 0,
        seconds_since_change: 42,
        downtime_seconds: 5,
        drain: None,
        seconds_since_last_request: Some(9),
    }
}

fn stats() -> Stats {
    let servers = vec![server("new-stack", "UP"), server("legacy", "MAINT")];
    Stats {
        generation: 1,
        uptime_seconds: 1,
        access_log_dropped: 0,
        now: 0,
        reload: ReloadView {
            reloads: 0,
            failures: 0,
            last_error: None,
            last_success: None,
        },
        frontends: vec![FrontendStats {
            name: "web".to_owned(),
            listen: "0.0.0.0:80".to_owned(),
            counters: CountersSnapshot {
                requests: 14,
                ..CountersSnapshot::default()
            },
            rates: Rates::default(),
            routes: Vec::new(),
            tls: None,
        }],
        backends: vec![BackendStats {
            name: "app".to_owned(),
            balance: "roundrobin",
            status: "UP",
            eligible: 1,
            drain_to_maint: false,
            discovered_from: None,
            totals: servers[0].counters.clone(),
            request_rate: 0.0,
            servers,
        }],
        recent_changes: Vec::new(),
        peers: None,
    }
}

/// The value of `field` in `line`.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let i = FIELDS.iter().position(|f| *f == name).expect("field");
    let mut columns = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find("\",").expect("closing quote");
            columns.push(&rest[..end + 2]);
            rest = &quoted[end + 2..];
        } else {
            let end = rest.find(',').expect("comma");
            columns.push(&rest[..end]);
            rest = &rest[end + 1..];
        }
    }
    columns[i]
}

#[test]
fn header_is_haproxys_field_list() {
    let csv = format(&stats(), 1);
    let header = csv.lines().next().expect("header");
    assert!(header.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,"));
    assert!(header.ends_with(",need_conn_est,uweight,"));
    assert_eq!(FIELDS[17], "status");
    assert_eq!(FIELDS[39], "hrsp_1xx");
    assert_eq!(FIELDS[55], "lastsess");
    assert_eq!(FIELDS[61], "ttime");
    assert_eq!(FIELDS[99], "uweight");
}

#[test]
fn rows_in_haproxys_order_with_values_in_place() {
    let csv = format(&stats(), 77);
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (field(l, "pxname"), field(l, "svname")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("web", "FRONTEND"),
            ("app", "new-stack"),
            ("app", "legacy"),
            ("app", "BACKEND")
        ]
    );
    let cases = [
        (0, "stot", "14"),
        (0, "status", "OPEN"),
        (0, "type", "0"),
        (0, "econ", ""),
        (1, "scur", "1"),
        (1, "smax", "2"),
        (1, "bin", "100"),
        (1, "bout", "2000"),
        (1, "status", "UP"),
        (1, "weight", "10"),
        (1, "chkdown", "1"),
        (1, "lastchg", "42"),
        (1, "downtime", "5"),
        (1, "pid", "77"),
        (1, "sid", "1"),
        (1, "type", "2"),
        (1, "check_status", "L7OK"),
        (1, "check_code", "200"),
        (1, "hrsp_2xx", "6"),
        (1, "hrsp_5xx", "1"),
        (1, "lastsess", "9"),
        (1, "last_chk", "\"a, \"\"b\"\"\""),
        (1, "ttime", "12"),
        (1, "addr", "10.0.0.1:80"),
        (1, "dreq", ""),
        (2, "status", "MAINT"),
        (2, "sid", "2"),
        (3, "status", "UP"),
        (3, "weight", "10"),
        (3, "act", "1"),
        (3, "type", "1"),
        (3, "algo", "roundrobin"),
    ];
    for (row, name, expected) in cases {
        assert_eq!(field(lines[row], name), expected, "row {row} field {name}");
    }
    for l in &lines {
        assert!(l.ends_with(','), "{l}");
    }
}

#[test]
fn csv_paths() {
    for (path, expected) in [
        ("/stats;csv", true),
        ("/stats%3Bcsv", true),
        ("/stats%3bcsv", true),
        ("/;csv", true),
        ("/stats", false),
        ("/x;csv", false),
    ] {
        assert_eq!(is_csv_path(path), expected, "{path}");
    }
}
