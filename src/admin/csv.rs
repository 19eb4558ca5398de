//! The CSV export at `/stats;csv`, in HAProxy's format: its field names in
//! its order (HAProxy 2.x `show stat`, fields 0..=99 from `pxname` to
//! `uweight`), one FRONTEND row per frontend, then per backend its server
//! rows and a BACKEND row. Scripts that parse HAProxy's CSV keep working.
//! Invariant: the columns are `FIELDS` in order; a field Switchyard has no
//! value for stays empty in place, and every line ends with a comma, as
//! HAProxy writes it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AdminContext;
use super::stats::{self, BackendStats, FrontendStats, ServerStats, Stats};

/// HAProxy's stats fields, in order.
pub const FIELDS: [&str; 100] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
];

/// Paths HAProxy scripts ask for: `/stats;csv`, its encoded form and `/;csv`.
fn is_csv_path(path: &str) -> bool {
    matches!(path, "/stats;csv" | "/;csv") || path.eq_ignore_ascii_case("/stats%3bcsv")
}

pub(super) async fn render(State(ctx): State<Arc<AdminContext>>, uri: Uri) -> Response {
    if !is_csv_path(uri.path()) {
        let body = axum::Json(serde_json::json!({ "error": "not found" }));
        return (StatusCode::NOT_FOUND, body).into_response();
    }
    let stats = stats::collect(&ctx.runtime, &ctx.sampler);
    let body = format(&stats, std::process::id());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// One line per row, after the `# pxname,...` header.
pub fn format(stats: &Stats, pid: u32) -> String {
    let mut out = String::from("# ");
    for f in FIELDS {
        out.push_str(f);
        out.push(',');
    }
    out.push('\n');
    let mut iid = 0;
    for f in &stats.frontends {
        iid += 1;
        line(&mut out, &Row::Frontend(f), pid, iid);
    }
    for b in &stats.backends {
        iid += 1;
        for (i, s) in b.servers.iter().enumerate() {
            line(&mut out, &Row::Server(b, s, i + 1), pid, iid);
        }
        line(&mut out, &Row::Backend(b), pid, iid);
    }
    out
}

enum Row<'a> {
    Frontend(&'a FrontendStats),
    /// With its 1-based server id.
    Server(&'a BackendStats, &'a ServerStats, usize),
    Backend(&'a BackendStats),
}

fn line(out: &mut String, row: &Row<'_>, pid: u32, iid: usize) {
    for field in FIELDS {
        let v = match field {
            "pid" => pid.to_string(),
            "iid" => iid.to_string(),
            "mode" => "http".to_owned(),
            _ => value(row, field).unwrap_or_default(),
        };
        out.push_str(&escape(&v));
        out.push(',');
    }
    out.push('\n');
}

/// Quotes a value that holds a comma, quote or line break.
fn escape(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\"").replace(['\n', '\r'], " "))
    } else {
        v.to_owned()
    }
}

fn ms(us: u64) -> String {
    (us / 1000).to_string()
}

fn value(row: &Row<'_>, field: &str) -> Option<String> {
    let n = |v: u64| Some(v.to_string());
    let rate = |r: f64| Some(format!("{}", r.round()));
    match row {
        Row::Frontend(f) => {
            let c = &f.counters;
            match field {
                "pxname" => Some(f.name.clone()),
                "svname" => Some("FRONTEND".to_owned()),
                "scur" => n(c.active),
                "smax" => n(c.max_active),
                "stot" | "req_tot" => n(c.requests),
                "bin" => n(c.bytes_in),
                "bout" => n(c.bytes_out),
                "status" => Some("OPEN".to_owned()),
                "sid" => n(0),
                "type" => n(0),
                "rate" | "req_rate" => rate(f.rates.current),
                "rate_max" | "req_rate_max" => rate(f.rates.max),
                _ => responses(field, &c.responses),
            }
        }
        Row::Backend(b) => {
            let c = &b.totals;
            let ready = b
                .servers
                .iter()
                .filter(|s| s.status == "UP" || s.status == "no check");
            match field {
                "pxname" => Some(b.name.clone()),
                "svname" => Some("BACKEND".to_owned()),
                "status" => Some(b.status.to_owned()),
                "weight" | "uweight" => n(ready.clone().map(|s| u64::from(s.weight)).sum()),
                "act" => n(ready.clone().filter(|s| !s.backup).count() as u64),
                "bck" => n(ready.filter(|s| s.backup).count() as u64),
                "chkdown" => n(b.servers.iter().map(|s| s.transitions_down).sum()),
                "sid" => n(0),
                "type" => n(1),
                "rate" => rate(b.request_rate),
                "algo" => Some(b.balance.to_owned()),
                "lastsess" => {
                    Some(lastsess((c.last_request != 0).then(|| {
                        crate::state::now_millis().saturating_sub(c.last_request) / 1000
                    })))
                }
                _ => shared(field, c),
            }
        }
        Row::Server(b, s, sid) => {
            let c = &s.counters;
            let check = &s.check;
            match field {
                "pxname" => Some(b.name.clone()),
                "svname" => Some(s.name.clone()),
                "status" => Some(s.status.to_owned()),
                "weight" | "uweight" => n(u64::from(s.weight)),
                "act" => n(u64::from(!s.backup)),
                "bck" => n(u64::from(s.backup)),
                "chkdown" => n(s.transitions_down),
                "lastchg" => n(s.seconds_since_change),
                "downtime" => n(s.downtime_seconds),
                "sid" => n(*sid as u64),
                "type" => n(2),
                "rate" => rate(s.rates.current),
                "rate_max" => rate(s.rates.max),
                "lbtot" => n(c.requests),
                "check_status" => check.status.map(str::to_owned),
                "check_code" => check.code.map(|c| c.to_string()),
                "check_duration" => check.duration_ms.map(|d| d.to_string()),
                "last_chk" => check
                    .message
                    .clone()
                    .or_else(|| check.code.map(|c| c.to_string())),
                "check_desc" => check.status.map(|w| describe_check(w).to_owned()),
                "check_rise" => check.rise.map(|v| v.to_string()),
                "check_fall" => check.fall.map(|v| v.to_string()),
                "check_health" => check_health(s),
                "lastsess" => Some(lastsess(s.seconds_since_last_request)),
                "addr" => Some(s.address.clone()),
                _ => shared(field, c),
            }
        }
    }
}

/// Fields a backend and a server fill alike.
fn shared(field: &str, c: &crate::state::CountersSnapshot) -> Option<String> {
    let n = |v: u64| Some(v.to_string());
    match field {
        "qcur" | "qmax" | "qtime" => n(0),
        "scur" => n(c.active),
        "smax" => n(c.max_active),
        "stot" | "req_tot" => n(c.requests),
        "bin" => n(c.bytes_in),
        "bout" => n(c.bytes_out),
        "econ" => n(c.connection_errors),
        "eresp" => n(c.response_errors),
        "wretr" => n(c.retries),
        "wredis" => n(c.redispatches),
        "ctime" => Some(ms(c.avg_connect_us)),
        "rtime" => Some(ms(c.avg_response_us)),
        "ttime" => Some(ms(c.avg_total_us)),
        _ => responses(field, &c.responses),
    }
}

fn responses(field: &str, r: &[u64; 6]) -> Option<String> {
    let i = match field {
        "hrsp_1xx" => 0,
        "hrsp_2xx" => 1,
        "hrsp_3xx" => 2,
        "hrsp_4xx" => 3,
        "hrsp_5xx" => 4,
        "hrsp_other" => 5,
        _ => return None,
    };
    Some(r[i].to_string())
}

/// Seconds since the last request, `-1` if none (as HAProxy).
fn lastsess(seconds: Option<u64>) -> String {
    seconds.map_or_else(|| "-1".to_owned(), |s| s.to_string())
}

/// HAProxy's health value: `rise + fall - 1` is fully UP, 0 fully DOWN.
fn check_health(s: &ServerStats) -> Option<String> {
    let (rise, fall) = (s.check.rise?, s.check.fall?);
    let value = if s.health == "DOWN" {
        s.check.consecutive_ok.min(rise.saturating_sub(1))
    } else {
        (rise + fall - 1).saturating_sub(s.check.consecutive_fail)
    };
    Some(value.to_string())
}

fn describe_check(word: &str) -> &'static str {
    match word {
        "L7OK" => "Layer7 check passed",
        "L7STS" => "Layer7 wrong status",
        "L4OK" => "Layer4 check passed",
        "L4TOUT" => "Layer4 timeout",
        _ => "Layer4 connection problem",
    }
}

#[cfg(test)]
#[path = "csv_tests.rs"]
mod tests;
