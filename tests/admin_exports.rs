//! The admin server's exports over real sockets: HAProxy's CSV (header
//! line and row order) and Prometheus `/metrics` (parsed by a Prometheus
//! text-format parser, in Switchyard's and HAProxy's names).
#![allow(clippy::unwrap_used)]

mod admin_support;
mod common;

use std::io::BufRead;

use admin_support::Stack;
use common::eventually;
use serde_json::json;

/// HAProxy's `show stat` CSV fields, in order (HAProxy 2.x, 0..=99).
const HAPROXY_FIELDS: &str = "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,\
ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,\
iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,\
hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,\
cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,\
ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,\
check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,\
conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,\
qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,\
need_conn_est,uweight";

async fn set_maint(stack: &Stack, server: &str) {
    let path = format!("/api/backends/app/servers/{server}/state");
    let (status, answer) = stack
        .admin("PUT", &path, Some(json!({"state": "maint"})))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn csv_has_haproxys_columns_in_order() {
    let stack = Stack::start("").await;
    stack.served("/", 2).await;
    let auth = [("authorization", "Bearer test-token")];
    let (status, headers, csv) = stack.raw("GET", "/stats;csv", &auth, "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), format!("# {HAPROXY_FIELDS},"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        names,
        [
            ("web", "FRONTEND"),
            ("app", "new-stack"),
            ("app", "legacy"),
            ("app", "BACKEND"),
            ("other", "other-1"),
            ("other", "BACKEND")
        ]
    );
    let column = |name: &str| HAPROXY_FIELDS.split(',').position(|f| f == name).unwrap();
    assert_eq!(rows[1][column("stot")], "1");
    assert_eq!(rows[1][column("status")], "no check");
    assert_eq!(rows[3][column("stot")], "2");
    assert_eq!(rows[3][column("hrsp_2xx")], "2");
    assert_eq!(rows[0][column("dreq")], "");
    for r in &rows {
        assert_eq!(r.len(), HAPROXY_FIELDS.split(',').count() + 1, "{r:?}");
    }
    for path in ["/stats%3Bcsv", "/;csv"] {
        let (status, _, other) = stack.raw("GET", path, &auth, "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(other.lines().next(), csv.lines().next());
    }
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format")
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_parse_and_follow_the_counters() {
    let stack = Stack::start("").await;
    stack.served("/", 4).await;
    set_maint(&stack, "legacy").await;
    eventually("counters settle", || async {
        stack.server("app", "legacy").await["counters"]["active"] == 0
    })
    .await;
    // What the access log's writer counts when its queue is full.
    let process = stack.proxy.runtime.registry().process();
    for _ in 0..3 {
        process.count_access_log_dropped(1);
    }
    let auth = [("authorization", "Bearer test-token")];
    let (status, headers, text) = stack.raw("GET", "/metrics", &auth, "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = scrape(&text);
    let legacy = [("backend", "app"), ("server", "legacy")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = legacy.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        sample(&m, "switchyard_server_status", &with(("state", "MAINT"))),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "switchyard_server_status", &with(("state", "UP"))),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "switchyard_server_requests_total", &legacy),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "switchyard_server_responses_total",
            &with(("code", "2xx"))
        ),
        Some(2.0)
    );
    assert!(sample(&m, "switchyard_server_bytes_out_total", &legacy).unwrap() > 0.0);
    assert_eq!(
        sample(
            &m,
            "switchyard_frontend_requests_total",
            &[("frontend", "web")]
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &m,
            "switchyard_backend_requests_total",
            &[("backend", "app")]
        ),
        Some(4.0)
    );
    assert!(sample(&m, "switchyard_uptime_seconds", &[]).is_some());
    assert_eq!(
        sample(&m, "switchyard_access_log_dropped_total", &[]),
        Some(3.0)
    );
    let histogram = m
        .samples
        .iter()
        .find(|s| {
            s.metric == "switchyard_server_request_duration_seconds"
                && legacy.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .expect("request duration histogram");
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let last = buckets.last().expect("buckets");
            assert_eq!(last.count, 2.0, "both requests to legacy fall within 10 s");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        sample(&m, "switchyard_config_reloads_total", &[]),
        Some(0.0)
    );
    let reader = std::io::Cursor::new(text.as_bytes());
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        }
    }

    let (status, _, text) = stack.raw("GET", "/metrics?names=haproxy", &auth, "").await;
    assert_eq!(status, 200);
    let h = scrape(&text);
    let legacy = [("proxy", "app"), ("server", "legacy"), ("state", "MAINT")];
    assert_eq!(sample(&h, "haproxy_server_status", &legacy), Some(1.0));
    assert_eq!(
        sample(
            &h,
            "haproxy_server_sessions_total",
            &[("proxy", "app"), ("server", "new-stack")]
        ),
        Some(2.0)
    );
    assert!(h.samples.iter().all(|s| s.metric.starts_with("haproxy_")));
}
