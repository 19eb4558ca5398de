//! The stats page at `/`: server-rendered HTML grouped like HAProxy's page
//! (a frontend table, then one table of servers per backend), readable
//! without JavaScript. A small inline script refreshes it, filters rows and
//! sends the actions with `fetch()` (JSON, the admin header, the browser's
//! own basic credentials): there are no `<form>` posts.
//! Invariant: every value comes from `stats::collect`; every text that is
//! not a number goes through `esc`. No external JS, CSS or fonts.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AdminContext;
use super::audit::Change;
use super::page_servers;
use super::stats::{self, FrontendStats, Stats};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

pub(super) async fn render(State(ctx): State<Arc<AdminContext>>) -> Response {
    let mut stats = stats::collect(&ctx.runtime, &ctx.sampler);
    stats.recent_changes = ctx.changes.list();
    stats.peers = super::api::peers_view(&ctx);
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             img-src data:; connect-src 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, html(&stats)).into_response()
}

/// The whole page.
pub fn html(stats: &Stats) -> String {
    let mut out = String::with_capacity(32 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<title>Switchyard stats</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n");
    header(&mut out);
    out.push_str(
        "<noscript><p class=\"note\">Actions and auto-refresh need JavaScript; the numbers \
         here are complete without it. Scripts can use the JSON API (docs/admin.md).</p></noscript>\n",
    );
    out.push_str("<div id=\"message\" role=\"status\"></div>\n<main id=\"content\">\n");
    content(&mut out, stats);
    out.push_str("</main>\n<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}

fn header(out: &mut String) {
    let _ = writeln!(
        out,
        "<header><div class=\"brand\"><span class=\"logo\">&#8644;</span> Switchyard \
         <span class=\"sub\">statistics report</span></div>\
         <div class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"Filter servers\" \
         aria-label=\"Filter servers\"> <label><input id=\"auto\" type=\"checkbox\" checked> \
         auto-refresh</label> <button id=\"reload\" type=\"button\">Reload config</button> \
         <a href=\"/stats;csv\">CSV</a> <a href=\"/api/stats\">JSON</a> <a href=\"/metrics\">metrics</a></div></header>"
    );
}

/// The part that auto-refresh replaces.
fn content(out: &mut String, stats: &Stats) {
    let reload = match &stats.reload.last_error {
        None => "<span class=\"ok\">last reload ok</span>".to_owned(),
        Some(_) => "<span class=\"bad\">last reload FAILED</span>".to_owned(),
    };
    if let Some(e) = &stats.reload.last_error {
        let _ = writeln!(
            out,
            "<section class=\"reload-failed\" id=\"reload-failed\" role=\"alert\"><h2>Config reload \
             failed: the running config is unchanged</h2><pre>{}</pre><p>Shown until a reload \
             succeeds.</p></section>",
            esc(e)
        );
    }
    let _ = writeln!(
        out,
        "<section class=\"summary\"><span>generation <b>{}</b></span><span>uptime <b>{}</b></span>\
         <span>reloads <b>{}</b> (failed {})</span><span>{}</span><span class=\"muted\" id=\"updated\" \
         data-now=\"{}\">updated just now</span></section>",
        stats.generation,
        duration(stats.uptime_seconds),
        stats.reload.reloads,
        stats.reload.failures,
        reload,
        stats.now,
    );
    if let Some(view) = &stats.peers {
        peers(out, view);
    }
    frontends(out, &stats.frontends);
    for b in &stats.backends {
        page_servers::backend(out, b);
    }
    changes(out, &stats.recent_changes);
}

fn frontends(out: &mut String, frontends: &[FrontendStats]) {
    out.push_str(
        "<section class=\"proxy\"><h2>Frontends</h2><table class=\"grid\"><thead><tr>\
         <th>Frontend</th><th>Listen</th><th>Status</th><th>Cur</th><th>Max</th><th>Requests</th>\
         <th>Rate</th><th>Bytes in</th><th>Bytes out</th><th>1xx</th><th>2xx</th><th>3xx</th>\
         <th>4xx</th><th>5xx</th><th>Chart</th></tr></thead><tbody>",
    );
    for f in frontends {
        let c = &f.counters;
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td><span class=\"st st-up\">OPEN</span></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.name),
            esc(&f.listen),
            c.active,
            c.max_active,
            c.requests,
            rate(f.rates.current),
            bytes(c.bytes_in),
            bytes(c.bytes_out),
            c.responses[0],
            c.responses[1],
            c.responses[2],
            c.responses[3],
            c.responses[4],
            page_servers::sparkline(&f.rates.history),
        );
    }
    out.push_str("</tbody></table>");
    for f in frontends {
        routes(out, f);
    }
    for f in frontends {
        if let Some(tls) = &f.tls {
            tls_section(out, &f.name, tls);
        }
    }
    out.push_str("</section>\n");
}

/// A TLS frontend's certificates and handshake counters.
fn tls_section(out: &mut String, frontend: &str, tls: &super::stats::TlsView) {
    let list = |items: &[super::stats::Labelled]| {
        items
            .iter()
            .map(|l| format!("{} {}", l.label, l.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        out,
        "<h3>TLS of {}</h3><p class=\"tls\">handshakes {}; versions: {}; ALPN: {}; failures: {}; \
         certificate loads failed: {}</p>",
        esc(frontend),
        tls.handshakes,
        esc(&list(&tls.versions)),
        esc(&list(&tls.alpn)),
        esc(&list(&tls.failures)),
        tls.certificate_load_failures,
    );
    if let Some(e) = &tls.certificate_error {
        let _ = write!(
            out,
            "<p class=\"bad certificate-error\">New certificates refused, the ones below keep \
             serving:</p><pre class=\"certificate-error\">{}</pre>",
            esc(e)
        );
    }
    out.push_str(
        "<table class=\"grid\"><thead><tr><th>Certificate</th><th>Names</th><th>Expires</th>\
         <th>SHA-256 fingerprint</th></tr></thead><tbody>",
    );
    for c in &tls.certificates {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"fingerprint\">{}</td></tr>",
            esc(&c.file),
            esc(&c.names.join(", ")),
            esc(&c.expires),
            esc(&c.fingerprint),
        );
    }
    out.push_str("</tbody></table>");
}

/// The routes of a frontend, with an editor for weighted splits.
fn routes(out: &mut String, f: &FrontendStats) {
    if f.routes.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h3>Routes of {}</h3><ol class=\"routes\" start=\"0\">",
        esc(&f.name)
    );
    for r in &f.routes {
        let _ = write!(
            out,
            "<li><span class=\"match\">{}</span> &rarr; ",
            esc(&r.matches)
        );
        match (&r.backend, &r.split) {
            (_, Some(parts)) => {
                let _ = write!(
                    out,
                    "<span class=\"split\" data-frontend=\"{}\" data-route=\"{}\">split ",
                    esc(&f.name),
                    r.index
                );
                for p in parts {
                    let _ = write!(
                        out,
                        "<label>{} <input class=\"split-weight\" type=\"number\" min=\"0\" max=\"256\" \
                         data-backend=\"{}\" value=\"{}\"></label> ",
                        esc(&p.backend),
                        esc(&p.backend),
                        p.weight
                    );
                }
                out.push_str(
                    "<button type=\"button\" class=\"split-apply\">Apply split</button></span>",
                );
                if let Some(file) = &r.config_split {
                    let file: Vec<String> = file
                        .iter()
                        .map(|p| format!("{}={}", p.backend, p.weight))
                        .collect();
                    let _ = write!(
                        out,
                        " <span class=\"changed runtime-route\" data-frontend=\"{}\" data-route=\"{}\">\
                         set at run time</span> <span class=\"muted\">(file: {})</span> \
                         <button type=\"button\" class=\"reset-route\">reset to config</button>",
                        esc(&f.name),
                        r.index,
                        esc(&file.join(" "))
                    );
                }
            }
            (Some(b), None) => {
                let _ = write!(out, "<b>{}</b>", esc(b));
            }
            (None, None) => {}
        }
        // The action beyond the backend: a direct answer, rewrite, header rules.
        let rest = match (&r.backend, &r.split) {
            (Some(b), _) => r.action.strip_prefix(b.as_str()).unwrap_or(&r.action),
            (None, Some(_)) => r
                .action
                .find(" rewrite ")
                .or_else(|| r.action.find(" request_headers "))
                .or_else(|| r.action.find(" response_headers "))
                .or_else(|| r.action.find(" timeouts."))
                .map_or("", |i| &r.action[i..]),
            (None, None) => &r.action,
        };
        if !rest.trim().is_empty() {
            let _ = write!(out, " <span class=\"action\">{}</span>", esc(rest.trim()));
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
}

/// The peer replicas and whether each holds the same operator state.
fn peers(out: &mut String, view: &super::peers::PeersView) {
    let _ = write!(
        out,
        "<section class=\"proxy\" id=\"peers\"><h2>Peers</h2><p>This replica: <b>{}</b>, \
         state digest <code>{}</code> ({} operator change(s)){}</p>",
        esc(&view.replica),
        esc(&view.digest),
        view.registers,
        if view.ready {
            ""
        } else {
            ", <span class=\"bad\">pulling the state from a peer (not ready)</span>"
        },
    );
    out.push_str(
        "<table class=\"grid\"><thead><tr><th>Peer</th><th>Configured as</th><th>Replica</th>\
         <th>Last exchange (UTC)</th><th>In sync</th><th>Error</th></tr></thead><tbody>",
    );
    if view.peers.is_empty() {
        out.push_str("<tr><td colspan=\"6\" class=\"muted\">no peer address yet</td></tr>");
    }
    for p in &view.peers {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.address),
            esc(&p.configured),
            esc(p.replica.as_deref().unwrap_or("-")),
            p.last_exchange.map_or_else(|| "never".to_owned(), utc),
            if p.in_sync {
                "<span class=\"ok\">yes</span>"
            } else {
                "<span class=\"bad\">no</span>"
            },
            esc(p.error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn changes(out: &mut String, changes: &[Change]) {
    out.push_str("<section class=\"proxy\"><h2>Recent changes</h2>");
    if changes.is_empty() {
        out.push_str("<p class=\"muted\">No changes since start.</p></section>\n");
        return;
    }
    out.push_str(
        "<table class=\"grid changes\"><thead><tr><th>When (UTC)</th><th>Who</th><th>From</th>\
         <th>Replica</th><th>What</th><th>Old</th><th>New</th></tr></thead><tbody>",
    );
    for c in changes {
        let _ = write!(
            out,
            "<tr><td class=\"when\" data-at=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.at,
            utc(c.at),
            esc(&c.who),
            esc(&c.from),
            esc(&if c.from_peer {
                format!("{} (from peer)", c.replica)
            } else {
                c.replica.clone()
            }),
            esc(&c.what),
            esc(&c.old),
            esc(&c.new)
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1.2 MB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3d4h`, `2h5m`, `4m12s`, `9s`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

pub fn rate(r: f64) -> String {
    if r < 10.0 && r > 0.0 {
        format!("{r:.1}/s")
    } else {
        format!("{r:.0}/s")
    }
}

/// Unix ms as `HH:MM:SS`, UTC.
fn utc(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(duration(9), "9s");
        assert_eq!(duration(252), "4m12s");
        assert_eq!(duration(7500), "2h5m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(2.54), "2.5/s");
        assert_eq!(utc(3_723_000), "01:02:03");
    }
}
