//! A frontend (or the frontend half of a `listen`): `bind`, timeouts,
//! `default_backend`, and its routes, built from `use_backend`, `redirect`,
//! `http-request` and `http-response` rules in HAProxy's evaluation order:
//! answering rules (deny, redirect, return) first, then `use_backend`;
//! header and path changes ride on the routes whose conditions are theirs.
//! Invariant: a rule lands on a route only when exactly the requests its
//! condition selects take that route; otherwise it is listed as skipped.

use std::collections::BTreeSet;

use super::acl::{Acls, Problem};
use super::changes::{Change, apply, changes_what_later_rules_match};
use super::emit::{Action, Frontend, HeaderOps, Match, Route};
use super::lexer::Line;
use super::proxy::{Names, Role, role, skip_unknown};
use super::rules::{self, Effect, Rule};
use super::sections::{Kind, Section};
use super::{Context, global, values};

/// A rule that picks where a request goes (a backend or an answer).
struct Target {
    line: Line,
    matches: Vec<Match>,
    acls: Vec<String>,
    action: Action,
}

/// A frontend's rules as read, in HAProxy's evaluation groups.
#[derive(Default)]
struct Rules {
    /// `http-request deny/redirect/return`, in order.
    answers: Vec<Target>,
    /// `redirect`, evaluated after every `http-request` rule.
    redirects: Vec<Target>,
    /// `use_backend`, evaluated last.
    use_backends: Vec<Target>,
    changes: Vec<Change>,
    https: Vec<(Line, Rule)>,
}

pub fn frontend(
    cx: &mut Context,
    s: &Section,
    defaults: &[Line],
    names: Names<'_>,
) -> Option<Frontend> {
    let mut f = Frontend {
        name: s.name.clone(),
        ..Frontend::default()
    };
    let mut acls = Acls::default();
    for line in s.body.iter().filter(|l| l.word(0) == "acl") {
        if line.words.len() < 3 {
            cx.reject(line, "'acl' expects a name and a criterion");
        } else {
            acls.declare(line.number, line.word(1), line.words[2..].to_vec());
        }
    }
    if !matches!(s.header.word(2), "" | "from") {
        bind(cx, &s.header, 2, &mut f);
    }
    let mut rules = Rules::default();
    let mut forwardfor = false;
    let own = s.body.iter().map(|l| (l, false));
    let inherited = defaults.iter().map(|l| (l, true));
    for (line, is_inherited) in inherited.chain(own) {
        if global::is_file_wide(line) || line.word(0) == "acl" && !is_inherited {
            continue;
        }
        match role(line) {
            Role::Backend if s.kind == Kind::Frontend && !is_inherited => {
                cx.skip(
                    line,
                    "a backend directive in a frontend; HAProxy ignores it here",
                );
            }
            Role::Backend => {}
            Role::Unknown => skip_unknown(cx, line),
            Role::Frontend | Role::Both => {
                forwardfor |= read(cx, line, &acls, names, &mut f, &mut rules);
            }
        }
    }
    if f.listen.is_none() {
        cx.skip(
            &s.header,
            "no usable `bind` line: Switchyard's frontend needs an address to listen on",
        );
        for line in s.body.iter().filter(|l| role(l) != Role::Backend) {
            cx.skip(line, "in a frontend that is not translated");
        }
        return None;
    }
    f.forward_headers = Some(forwardfor);
    https(cx, &mut f, &rules.https);
    let used = routes(cx, &mut f, rules);
    for name in acls.names() {
        if !used.contains(name) {
            for number in acls.lines_of(name) {
                if let Some(line) = s.body.iter().find(|l| l.number == number) {
                    cx.skip(line, format!("ACL `{name}` is used by no translated rule"));
                }
            }
        }
    }
    Some(f)
}

/// Reads one frontend line into `f` or `rules`; whether it is
/// `option forwardfor`.
fn read(
    cx: &mut Context,
    line: &Line,
    acls: &Acls,
    names: Names<'_>,
    f: &mut Frontend,
    rules: &mut Rules,
) -> bool {
    match (line.word(0), line.word(1)) {
        // Switchyard's default: keep-alive, and the request's ACK carried
        // by its response (`listener::bind`).
        ("mode", _) | ("option", "http-keep-alive" | "tcp-smart-accept") => {}
        ("acl", _) => cx.skip(line, "an ACL in `defaults` is not translated"),
        ("bind", _) => bind(cx, line, 1, f),
        ("default_backend", name) => {
            if let Some(name) = backend_name(cx, line, name, names) {
                f.default_backend = Some(name);
            }
        }
        ("use_backend", name) => {
            let (args, guard) = rules::guarded(line, 2);
            if !args.is_empty() {
                cx.reject(
                    line,
                    "'use_backend' expects a backend and an optional condition",
                );
                return false;
            }
            let Some(name) = backend_name(cx, line, name, names) else {
                return false;
            };
            if let Some(target) = target(cx, acls, line, &guard, Action::Backend(name)) {
                rules.use_backends.push(target);
            }
        }
        ("option", "forwardfor") => {
            if line.words.len() > 2 {
                cx.skip(
                    line,
                    "options of `option forwardfor` are not translated; Switchyard appends the client address",
                );
            }
            return true;
        }
        ("timeout", which) => match values::duration(line.word(2)) {
            Err(e) => cx.reject(line, e),
            Ok(None) => cx.skip(line, "0 (no timeout) has no Switchyard equivalent"),
            Ok(Some(d)) => match which {
                "http-request" => f.client_header = Some(d),
                "http-keep-alive" => f.idle = Some(d),
                _ => cx.skip(
                    line,
                    "Switchyard times client heads (`timeout http-request`) and keep-alive idle (`timeout http-keep-alive`), not all client inactivity",
                ),
            },
        },
        ("maxconn", _) => cx.skip(
            line,
            "Switchyard limits connections over all frontends together (global.max_connections)",
        ),
        ("stats", _) => cx.skip(line, "the stats page lives on the admin server ([admin])"),
        ("redirect" | "http-request" | "http-response", _) => match rules::parse(line) {
            Err(Problem::Reject(m)) => cx.reject(line, m),
            Err(Problem::Skip(m)) => cx.skip(line, m),
            Ok(rule) => match rule.effect {
                Effect::RedirectHttps => rules.https.push((line.clone(), rule)),
                Effect::Terminal(action) => {
                    if let Some(target) = target(cx, acls, line, &rule.guard, action) {
                        match line.word(0) {
                            "redirect" => rules.redirects.push(target),
                            _ => rules.answers.push(target),
                        }
                    }
                }
                effect => {
                    if let Some((matches, acls)) = condition(cx, acls, line, &rule.guard) {
                        rules.changes.push(Change {
                            line: line.clone(),
                            matches,
                            acls,
                            effect,
                        });
                    }
                }
            },
        },
        _ => skip_unknown(cx, line),
    }
    false
}

fn target(
    cx: &mut Context,
    acls: &Acls,
    line: &Line,
    guard: &Option<(String, Vec<String>)>,
    action: Action,
) -> Option<Target> {
    let (matches, acls) = condition(cx, acls, line, guard)?;
    Some(Target {
        line: line.clone(),
        matches: matches.unwrap_or_else(|| vec![Match::default()]),
        acls,
        action,
    })
}

/// `redirect scheme https` for plain connections becomes `redirect_https`.
fn https(cx: &mut Context, f: &mut Frontend, https: &[(Line, Rule)]) {
    let is_tls = !f.certs.is_empty();
    for (line, rule) in https {
        match (&rule.guard, is_tls) {
            (None, false) => f.redirect_https = true,
            (guard, false) if rules::is_not_tls(guard) => f.redirect_https = true,
            (guard, true) if rules::is_not_tls(guard) => {}
            _ => cx.skip(
                line,
                "only `redirect scheme https` for plain connections is translated (redirect_https)",
            ),
        }
    }
}

/// Builds the routes of `f` from `rules`; returns the ACLs used by
/// translated rules.
fn routes(cx: &mut Context, f: &mut Frontend, rules: Rules) -> BTreeSet<String> {
    // Conditions evaluated after each change: HAProxy runs the `http-request`
    // rules in order, then `redirect`, then `use_backend`, each on the request
    // as changed so far.
    let mut later: Vec<(usize, &[Match])> = Vec::new();
    for t in &rules.answers {
        later.push((t.line.number, &t.matches));
    }
    for t in rules.redirects.iter().chain(&rules.use_backends) {
        later.push((usize::MAX, &t.matches));
    }
    for c in &rules.changes {
        if let Some(matches) = &c.matches {
            later.push((c.line.number, matches));
        }
    }
    let blocked: Vec<Option<String>> = rules
        .changes
        .iter()
        .map(|c| {
            let after = later
                .iter()
                .filter(|(n, _)| *n > c.line.number)
                .flat_map(|(_, m)| m.iter());
            changes_what_later_rules_match(&c.effect, after)
        })
        .collect();
    let mut used = BTreeSet::new();
    let targets = rules
        .answers
        .into_iter()
        .chain(rules.redirects)
        .chain(rules.use_backends);
    for t in targets {
        used.extend(t.acls);
        for m in t.matches {
            f.routes.push(route(m, t.action.clone()));
        }
    }
    let catch_all = rules.changes.iter().any(|c| c.matches.is_none());
    if let (true, Some(default)) = (catch_all, &f.default_backend) {
        f.routes
            .push(route(Match::default(), Action::Backend(default.clone())));
    }
    for (change, blocked) in rules.changes.into_iter().zip(blocked) {
        if let Some(reason) = blocked {
            cx.skip(&change.line, reason);
            continue;
        }
        match apply(f, &change) {
            Ok(()) => used.extend(change.acls),
            Err(reason) => cx.skip(&change.line, reason),
        }
    }
    used
}

fn route(m: Match, action: Action) -> Route {
    let matches = match m == Match::default() {
        // Every path starts with "/": a route that matches every request.
        true => Match {
            path_prefix: Some("/".into()),
            ..m
        },
        false => m,
    };
    Route {
        matches,
        action,
        rewrite: None,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
    }
}

fn backend_name(cx: &mut Context, line: &Line, name: &str, names: Names<'_>) -> Option<String> {
    if name.is_empty() {
        cx.reject(line, format!("'{}' expects a backend name", line.word(0)));
    } else if name.contains('%') {
        cx.skip(line, "a backend chosen by an expression is not translated");
    } else if !names.all.contains(name) {
        cx.reject(line, format!("unable to find required backend '{name}'"));
    } else if !names.http.contains(name) {
        cx.skip(line, format!("backend '{name}' is not translated"));
    } else {
        return Some(name.to_owned());
    }
    None
}

/// The route matches of a guard (`None` for no guard or an always-true one),
/// and the ACL names it uses; `None` after reporting a problem.
fn condition(
    cx: &mut Context,
    acls: &Acls,
    line: &Line,
    guard: &Option<(String, Vec<String>)>,
) -> Option<(Option<Vec<Match>>, Vec<String>)> {
    let Some((keyword, words)) = guard else {
        return Some((None, Vec::new()));
    };
    match acls.resolve(keyword, words) {
        Ok((matches, _)) if matches.is_empty() => {
            cx.skip(line, "the condition never holds");
            None
        }
        Ok((matches, names)) if matches == [Match::default()] => Some((None, names)),
        Ok((matches, names)) => Some((Some(matches), names)),
        Err(Problem::Reject(m)) => {
            cx.reject(line, m);
            None
        }
        Err(Problem::Skip(m)) => {
            cx.skip(line, m);
            None
        }
    }
}

/// Reads a `bind` line, or a section header that carries the address
/// (`listen NAME ADDR`): `at` is the address word's index.
fn bind(cx: &mut Context, line: &Line, at: usize, f: &mut Frontend) {
    let addr = line.word(at);
    if f.listen.is_some() {
        return cx.skip(
            line,
            "a Switchyard frontend listens on one address; add another [[frontend]]",
        );
    }
    let (first, more) = addr.split_once(',').unwrap_or((addr, ""));
    match values::listen(first) {
        Ok(listen) => f.listen = Some(listen),
        Err(e) => return cx.skip(line, e),
    }
    if !more.is_empty() {
        cx.skip(
            line,
            format!("only the first address is used; {more} needs its own [[frontend]]"),
        );
    }
    let mut is_ssl = false;
    let mut certs = Vec::new();
    let mut options = line.words[(at + 1).min(line.words.len())..].iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "ssl" => is_ssl = true,
            // Every Switchyard frontend defers accepts (TCP_DEFER_ACCEPT).
            "defer-accept" => {}
            "crt" => match options.next() {
                Some(cert) => certs.push(cert.clone()),
                None => return cx.reject(line, "'crt' expects a file"),
            },
            other => cx.skip(line, format!("bind option `{other}` is not translated")),
        }
    }
    match (is_ssl, certs.is_empty()) {
        (true, false) => f.certs = certs,
        (true, true) => cx.reject(line, "'ssl' on a bind line needs a certificate (crt)"),
        (false, false) => cx.skip(line, "`crt` without `ssl` is not used by HAProxy"),
        (false, true) => {}
    }
}
