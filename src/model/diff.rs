//! What serving one topology instead of another changes, in config words:
//! `diff(running, next)` lists frontends, listeners, routes, backends,
//! servers, weights, states and checks added (`+`), removed (`-`) or changed
//! (`~`), one per line, for `switchyard check --diff`.
//! Invariant: pure; things are matched by name (routes by their
//! conditions, `route_label`), so reordering alone is not a change.

use std::time::Duration;

use super::{Backend, CheckKind, CheckSpec, Frontend, Route, Server, Target, Topology};

/// Every difference, running first then next order.
pub fn diff(running: &Topology, next: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    global(&mut out, running, next);
    for f in &next.frontends {
        match running.frontends.iter().find(|r| r.name == f.name) {
            None => out.push(format!("+ frontend {} listen {}", f.name, f.listen)),
            Some(r) => frontend(&mut out, (running, r), (next, f)),
        }
    }
    for r in &running.frontends {
        if !next.frontends.iter().any(|f| f.name == r.name) {
            out.push(format!("- frontend {} listen {}", r.name, r.listen));
        }
    }
    for b in &next.backends {
        match running.backends.iter().find(|r| r.name == b.name) {
            None => {
                out.push(format!("+ backend {}", b.name));
                for s in &b.servers {
                    out.push(added_server(b, s));
                }
                if let Some(d) = &b.discover {
                    out.push(format!("+ backend {} discover {}", b.name, discover(d)));
                }
                if let Some(c) = &b.check {
                    out.push(format!("+ backend {} check {}", b.name, check(c)));
                }
            }
            Some(r) => backend(&mut out, r, b),
        }
    }
    for r in &running.backends {
        if !next.backends.iter().any(|b| b.name == r.name) {
            out.push(format!("- backend {}", r.name));
        }
    }
    out
}

/// How a route is named in the diff: by its conditions. One function, so a
/// richer route `Display` can take its place.
pub fn route_label(route: &Route) -> String {
    let label = super::describe::RouteConditions(route).to_string();
    if label.is_empty() {
        "(every request)".to_owned()
    } else {
        label
    }
}

/// `5s`, `250ms`, `1m30s` style.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        _ => format!("{s}s"),
    }
}

fn changed(out: &mut Vec<String>, what: &str, key: &str, old: String, new: String) {
    if old != new {
        out.push(format!("~ {what}: {key} {old} -> {new}"));
    }
}

fn global(out: &mut Vec<String>, running: &Topology, next: &Topology) {
    let (r, n) = (&running.global, &next.global);
    changed(out, "global", "grace", duration(r.grace), duration(n.grace));
    changed(
        out,
        "global",
        "access_log",
        format!("{:?}", r.access_log),
        format!("{:?}", n.access_log),
    );
    changed(
        out,
        "global",
        "state_file",
        format!("{:?}", r.state_file),
        format!("{:?}", n.state_file),
    );
    changed(
        out,
        "global",
        "max_connections",
        connections(r.max_connections),
        connections(n.max_connections),
    );
    changed(
        out,
        "global",
        "threads",
        threads(r.threads),
        threads(n.threads),
    );
    changed(
        out,
        "global",
        "watch",
        r.watch.to_string(),
        n.watch.to_string(),
    );
    changed(
        out,
        "global",
        "resolvers",
        resolvers(&r.resolvers),
        resolvers(&n.resolvers),
    );
    changed(
        out,
        "admin",
        "listen",
        running.admin.listen.to_string(),
        next.admin.listen.to_string(),
    );
}

fn target(topology: &Topology, t: Option<&Target>) -> String {
    let name = |id: &super::BackendId| {
        topology
            .backends
            .get(id.0)
            .map_or_else(|| "?".to_owned(), |b| b.name.to_string())
    };
    match t {
        None => "none".to_owned(),
        Some(Target::Backend(id)) => format!("backend {}", name(id)),
        Some(Target::Split(parts)) => {
            let parts: Vec<String> = parts
                .iter()
                .map(|(id, w)| format!("{}={w}", name(id)))
                .collect();
            format!("split {}", parts.join(" "))
        }
        Some(Target::Redirect(r)) => format!(
            "redirect {} {}",
            r.code.as_u16(),
            r.location.to_str().unwrap_or("?")
        ),
        Some(Target::Respond(r)) => format!("respond {}", r.status.as_u16()),
        Some(Target::Deny) => "deny".to_owned(),
    }
}

fn frontend(
    out: &mut Vec<String>,
    (rt, r): (&Topology, &Frontend),
    (nt, n): (&Topology, &Frontend),
) {
    let what = format!("frontend {}", n.name);
    changed(
        out,
        &what,
        "listen",
        r.listen.to_string(),
        n.listen.to_string(),
    );
    changed(
        out,
        &what,
        "default_backend",
        target(rt, r.default_target.as_ref()),
        target(nt, n.default_target.as_ref()),
    );
    changed(
        out,
        &what,
        "forward_headers",
        r.forward_headers.to_string(),
        n.forward_headers.to_string(),
    );
    changed(
        out,
        &what,
        "timeouts.client_header",
        duration(r.timeouts.client_header),
        duration(n.timeouts.client_header),
    );
    changed(
        out,
        &what,
        "timeouts.idle",
        duration(r.timeouts.idle),
        duration(n.timeouts.idle),
    );
    changed(
        out,
        &what,
        "timeouts.body_idle",
        duration(r.timeouts.body_idle),
        duration(n.timeouts.body_idle),
    );
    changed(
        out,
        &what,
        "timeouts.write_idle",
        duration(r.timeouts.write_idle),
        duration(n.timeouts.write_idle),
    );
    for route in &n.routes {
        let label = route_label(route);
        match r.routes.iter().find(|x| route_label(x) == label) {
            None => out.push(format!(
                "+ {what} route {label} -> {}",
                target(nt, Some(&route.target))
            )),
            Some(old) => changed(
                out,
                &format!("{what} route {label}"),
                "target",
                target(rt, Some(&old.target)),
                target(nt, Some(&route.target)),
            ),
        }
    }
    for route in &r.routes {
        let label = route_label(route);
        if !n.routes.iter().any(|x| route_label(x) == label) {
            out.push(format!("- {what} route {label}"));
        }
    }
}

fn backend(out: &mut Vec<String>, r: &Backend, n: &Backend) {
    let what = format!("backend {}", n.name);
    changed(
        out,
        &what,
        "balance",
        format!("{:?}", r.balance).to_lowercase(),
        format!("{:?}", n.balance).to_lowercase(),
    );
    changed(
        out,
        &what,
        "host",
        opt(r.host.as_deref()),
        opt(n.host.as_deref()),
    );
    changed(
        out,
        &what,
        "retries",
        r.retries.to_string(),
        n.retries.to_string(),
    );
    changed(
        out,
        &what,
        "timeouts.connect",
        duration(r.timeouts.connect),
        duration(n.timeouts.connect),
    );
    changed(
        out,
        &what,
        "timeouts.response",
        duration(r.timeouts.response),
        duration(n.timeouts.response),
    );
    changed(
        out,
        &what,
        "timeouts.tunnel",
        duration(r.timeouts.tunnel),
        duration(n.timeouts.tunnel),
    );
    changed(
        out,
        &what,
        "cookie",
        opt(r.cookie.as_ref().map(|c| &*c.name)),
        opt(n.cookie.as_ref().map(|c| &*c.name)),
    );
    changed(
        out,
        &what,
        "passive_fall",
        opt(r.passive_fall.map(|f| f.to_string()).as_deref()),
        opt(n.passive_fall.map(|f| f.to_string()).as_deref()),
    );
    changed(
        out,
        &what,
        "drain_to_maint",
        r.drain_to_maint.to_string(),
        n.drain_to_maint.to_string(),
    );
    changed(
        out,
        &what,
        "discover",
        opt(r.discover.as_ref().map(discover).as_deref()),
        opt(n.discover.as_ref().map(discover).as_deref()),
    );
    match (&r.check, &n.check) {
        (None, Some(c)) => out.push(format!("+ {what} check {}", check(c))),
        (Some(_), None) => out.push(format!("- {what} check")),
        (Some(old), Some(new)) => {
            for ((key, old), (_, new)) in check_fields(old).into_iter().zip(check_fields(new)) {
                changed(out, &format!("{what} check"), key, old, new);
            }
        }
        (None, None) => {}
    }
    for s in &n.servers {
        match r.servers.iter().find(|x| x.name == s.name) {
            None => out.push(added_server(n, s)),
            Some(old) => server(out, &format!("server {}/{}", n.name, s.name), old, s),
        }
    }
    for s in &r.servers {
        if !n.servers.iter().any(|x| x.name == s.name) {
            out.push(format!("- server {}/{}", r.name, s.name));
        }
    }
}

fn added_server(b: &Backend, s: &Server) -> String {
    format!(
        "+ server {}/{} address {} weight {} state {}{}",
        b.name,
        s.name,
        s.address,
        s.weight,
        s.state.as_str(),
        if s.backup { " backup" } else { "" }
    )
}

fn server(out: &mut Vec<String>, what: &str, r: &Server, n: &Server) {
    changed(
        out,
        what,
        "address",
        r.address.to_string(),
        n.address.to_string(),
    );
    changed(
        out,
        what,
        "weight",
        r.weight.to_string(),
        n.weight.to_string(),
    );
    changed(
        out,
        what,
        "state",
        r.state.as_str().to_owned(),
        n.state.as_str().to_owned(),
    );
    changed(
        out,
        what,
        "backup",
        r.backup.to_string(),
        n.backup.to_string(),
    );
}

/// A check's keys and values, the same keys for every check.
fn check_fields(c: &CheckSpec) -> [(&'static str, String); 9] {
    let (kind, method, path, host, expect) = match &c.kind {
        CheckKind::Tcp => ("tcp", None, None, None, None),
        CheckKind::Http(h) => (
            "http",
            Some(h.method.to_string()),
            Some(h.path.to_string()),
            h.host.as_deref().map(str::to_owned),
            Some(format!("{}-{}", h.expect.min, h.expect.max)),
        ),
    };
    let none = || "none".to_owned();
    [
        ("kind", kind.to_owned()),
        ("method", method.unwrap_or_else(none)),
        ("path", path.unwrap_or_else(none)),
        ("host", host.unwrap_or_else(none)),
        ("expect", expect.unwrap_or_else(none)),
        ("interval", duration(c.interval)),
        ("timeout", duration(c.timeout)),
        ("rise", c.rise.to_string()),
        ("fall", c.fall.to_string()),
    ]
}

fn check(c: &CheckSpec) -> String {
    let kind = match &c.kind {
        CheckKind::Tcp => "tcp".to_owned(),
        CheckKind::Http(h) => format!(
            "http {} {}{} expect {}-{}",
            h.method,
            h.path,
            h.host
                .as_deref()
                .map_or(String::new(), |host| format!(" host {host}")),
            h.expect.min,
            h.expect.max
        ),
    };
    format!(
        "{kind} interval {} timeout {} rise {} fall {}",
        duration(c.interval),
        duration(c.timeout),
        c.rise,
        c.fall
    )
}

/// `dns users:8080 every 5s max 32`.
fn discover(d: &super::Discover) -> String {
    format!("dns {} every {} max {}", d.dns, duration(d.every), d.max)
}

/// The name servers, or the system resolver.
fn resolvers(list: &[std::net::SocketAddr]) -> String {
    if list.is_empty() {
        return "system".to_owned();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "none".to_owned(), str::to_owned)
}

/// `threads` as written, or how an unset one is found.
fn threads(n: Option<u16>) -> String {
    n.map_or_else(|| "one per CPU".to_owned(), |n| n.to_string())
}

/// `max_connections` as written, or how an unset one is found.
fn connections(n: Option<usize>) -> String {
    n.map_or_else(|| "from the open-file limit".to_owned(), |n| n.to_string())
}
