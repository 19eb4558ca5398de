//! The stats page's backend sections: one table of servers per backend with
//! HAProxy's columns, colour-coded status, drain progress, a sparkline of
//! request and error rates, and the action bar (checkbox per row, action
//! dropdown, Apply) that the page's script sends to the JSON API.

use std::fmt::Write;

use super::page::{bytes, duration, esc, rate};
use super::sampler::Sample;
use super::stats::{BackendStats, ServerStats};

const HEAD: &str = "<thead><tr class=\"groups\"><th rowspan=\"2\"><input type=\"checkbox\" \
    class=\"sel-all\" aria-label=\"select all\"></th><th rowspan=\"2\">Server</th>\
    <th colspan=\"4\">Status</th><th colspan=\"2\">Sessions</th><th colspan=\"3\">Requests</th>\
    <th colspan=\"2\">Bytes</th><th colspan=\"5\">Responses</th><th colspan=\"2\">Errors</th>\
    <th colspan=\"2\">Warnings</th><th colspan=\"4\">Health check</th><th colspan=\"3\">Downs</th>\
    <th colspan=\"3\">Avg time (ms)</th><th rowspan=\"2\">Last 5 min<br><span class=\"legend\">\
    <i class=\"lr\"></i>req/s <i class=\"le\"></i>err/s</span></th></tr>\
    <tr><th>Status</th><th>Admin</th><th>Health</th><th>Weight</th><th>Cur</th><th>Max</th>\
    <th>Total</th><th>Rate</th><th>Last</th><th>In</th><th>Out</th><th>1xx</th><th>2xx</th>\
    <th>3xx</th><th>4xx</th><th>5xx</th><th title=\"connection errors\">Conn</th>\
    <th title=\"response errors\">Resp</th><th title=\"retries\">Retr</th>\
    <th title=\"redispatches\">Redis</th><th>Last check</th><th>Code</th><th>Dur</th>\
    <th title=\"consecutive ok / fail of rise / fall\">Rise/Fall</th><th title=\"UP to DOWN transitions\">Chk down</th>\
    <th>Last chg</th><th>Downtime</th><th>Conn</th><th>Resp</th><th>Total</th></tr></thead>";

/// One backend's section.
pub fn backend(out: &mut String, b: &BackendStats) {
    let name = esc(&b.name);
    let _ = write!(
        out,
        "<section class=\"proxy backend\" data-backend=\"{name}\"><h2>{name} \
         <span class=\"st st-{}\">{}</span> <span class=\"muted\">{} &middot; {} of {} servers \
         taking traffic{}{}</span></h2><div class=\"scroll\"><table class=\"grid servers\">{HEAD}<tbody>",
        b.status.to_ascii_lowercase(),
        b.status,
        b.balance,
        b.eligible,
        b.servers.len(),
        if b.drain_to_maint {
            " &middot; drain to maint"
        } else {
            ""
        },
        b.discovered_from
            .as_deref()
            .map(|dns| format!(" &middot; discovered from {}", esc(dns)))
            .unwrap_or_default(),
    );
    for s in &b.servers {
        server(out, &b.name, s);
    }
    let t = &b.totals;
    let _ = write!(
        out,
        "</tbody><tfoot><tr class=\"total\"><td></td><td class=\"name\">Backend</td>\
         <td><span class=\"st st-{}\">{}</span></td><td></td><td></td><td></td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td></td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td colspan=\"7\"></td><td>{}</td><td>{}</td><td>{}</td><td></td></tr></tfoot></table></div>",
        b.status.to_ascii_lowercase(),
        b.status,
        t.active,
        t.max_active,
        t.requests,
        rate(b.request_rate),
        bytes(t.bytes_in),
        bytes(t.bytes_out),
        responses(&t.responses),
        t.connection_errors,
        t.response_errors,
        t.retries,
        t.redispatches,
        ms(t.avg_connect_us),
        ms(t.avg_response_us),
        ms(t.avg_total_us),
    );
    let _ = writeln!(
        out,
        "<div class=\"actions\" data-backend=\"{name}\">For the selected servers: \
         <select class=\"action\" aria-label=\"action\"><option value=\"\">Choose an action...</option>\
         <option value=\"ready\">Set state to READY</option><option value=\"drain\">Set state to DRAIN</option>\
         <option value=\"maint\">Set state to MAINT</option><option value=\"check-off\">Disable health checks</option>\
         <option value=\"check-on\">Enable health checks</option><option value=\"weight\">Set weight</option></select> \
         <input class=\"weight\" type=\"number\" min=\"0\" max=\"256\" placeholder=\"weight\" aria-label=\"weight\"> \
         <button type=\"button\" class=\"apply\">Apply</button></div></section>"
    );
}

fn server(out: &mut String, backend: &str, s: &ServerStats) {
    let c = &s.counters;
    let status_class = match s.status {
        "no check" => "up".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    let drain = s.drain.as_ref().map_or_else(String::new, |d| {
        format!(
            "<div class=\"drain\" title=\"draining since {} s\">{} active &middot; {}</div>",
            d.seconds,
            d.active,
            duration(d.seconds)
        )
    });
    let check = &s.check;
    let check_text = match (check.status, &check.message) {
        (Some(word), Some(m)) => format!("<span title=\"{}\">{word}</span>", esc(m)),
        (Some(word), None) => word.to_owned(),
        (None, _) if !s.check_enabled => "disabled".to_owned(),
        (None, _) => check.reason.as_deref().map_or("&ndash;".to_owned(), esc),
    };
    let rise_fall = match (check.rise, check.fall) {
        (Some(r), Some(f)) => format!(
            "{}/{} of {r}/{f}",
            check.consecutive_ok, check.consecutive_fail
        ),
        _ => "&ndash;".to_owned(),
    };
    let health = if s.check_enabled {
        s.health.to_owned()
    } else {
        format!("{} <span class=\"muted\">(checks off)</span>", s.health)
    };
    let _ = write!(
        out,
        "<tr class=\"row-{status_class}{changed}\" data-backend=\"{b}\" data-server=\"{n}\">\
         <td><input type=\"checkbox\" class=\"sel\" value=\"{n}\" aria-label=\"select {n}\"></td>\
         <td class=\"name\" title=\"{addr}\">{n}{backup}<div class=\"addr\">{addr}</div></td>\
         <td><span class=\"st st-{status_class}\">{status}</span>{drain}</td><td>{admin}</td>\
         <td>{health}</td><td>{weight}</td><td>{cur}</td><td>{max}</td><td>{total}</td><td>{rate}</td>\
         <td>{last}</td><td>{bin}</td><td>{bout}</td>{resp}<td>{econ}</td><td>{eresp}</td>\
         <td>{retr}</td><td>{redis}</td><td>{check_text}</td><td>{code}</td><td>{dur}</td>\
         <td>{rise_fall}</td><td>{downs}</td><td>{lastchg}</td><td>{downtime}</td><td>{ct}</td>\
         <td>{rt}</td><td>{tt}</td><td>{chart}</td></tr>",
        b = esc(backend),
        n = esc(&s.name),
        changed = if s.admin_state != s.config_admin_state || s.weight != s.config_weight {
            " runtime"
        } else {
            ""
        },
        addr = esc(&s.address),
        backup = if s.backup {
            " <span class=\"muted\">(backup)</span>"
        } else {
            ""
        },
        status = s.status.to_uppercase(),
        admin = runtime_mark(
            &s.admin_state.to_uppercase(),
            (s.admin_state != s.config_admin_state).then(|| s.config_admin_state.to_uppercase()),
        ),
        weight = runtime_mark(
            &s.weight.to_string(),
            (s.weight != s.config_weight).then(|| s.config_weight.to_string()),
        ),
        cur = c.active,
        max = c.max_active,
        total = c.requests,
        rate = rate(s.rates.current),
        last = s
            .seconds_since_last_request
            .map_or("never".to_owned(), duration),
        bin = bytes(c.bytes_in),
        bout = bytes(c.bytes_out),
        resp = responses(&c.responses),
        econ = c.connection_errors,
        eresp = c.response_errors,
        retr = c.retries,
        redis = c.redispatches,
        code = check.code.map_or(String::new(), |c| c.to_string()),
        dur = check
            .duration_ms
            .map_or(String::new(), |d| format!("{d} ms")),
        downs = s.transitions_down,
        lastchg = duration(s.seconds_since_change),
        downtime = duration(s.downtime_seconds),
        ct = ms(c.avg_connect_us),
        rt = ms(c.avg_response_us),
        tt = ms(c.avg_total_us),
        chart = sparkline(&s.rates.history),
    );
}

/// A value an operator changed at run time: marked, with the file's value
/// beside it and a "reset to config" button (`page.js` finds its row).
pub(super) fn runtime_mark(value: &str, file_value: Option<String>) -> String {
    match file_value {
        None => value.to_owned(),
        Some(file) => format!(
            "<span class=\"changed\" title=\"set at run time\">{value}</span> \
             <span class=\"muted\">(file: {})</span> \
             <button type=\"button\" class=\"reset\">reset to config</button>",
            esc(&file)
        ),
    }
}

fn responses(r: &[u64; 6]) -> String {
    r[..5].iter().map(|n| format!("<td>{n}</td>")).collect()
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// An inline SVG of request (blue) and error (red) rates, oldest left.
pub fn sparkline(history: &[Sample]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 26.0;
    if history.len() < 2 {
        return "<span class=\"muted small\">collecting&hellip;</span>".to_owned();
    }
    let max = history
        .iter()
        .map(|s| s.requests.max(s.errors))
        .fold(0.0_f64, f64::max)
        .max(0.1);
    let step = W / (super::sampler::SAMPLES - 1) as f64;
    let start = W - step * (history.len() - 1) as f64;
    let line = |pick: fn(&Sample) -> f64| -> String {
        history
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let x = start + step * i as f64;
                let y = H - 1.0 - (pick(s) / max) * (H - 2.0);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let last = history.last().copied().unwrap_or_default();
    format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
         <title>now {:.1} req/s, {:.1} err/s; peak {:.1}/s</title>\
         <polyline class=\"req\" points=\"{}\"/><polyline class=\"err\" points=\"{}\"/></svg>",
        last.requests,
        last.errors,
        max,
        line(|s| s.requests),
        line(|s| s.errors),
    )
}
