//! A backend (or the backend half of a `listen`): balancing, servers and
//! `default-server`, cookie persistence, health checks (`option httpchk` in
//! its old one-line form and `http-check send`/`expect`), timeouts, retries,
//! unconditional header changes, and `server-template` as `discover`.
//! Invariant: Switchyard checks every server of a backend alike, so per-
//! server check settings are kept only where they agree; a server whose
//! settings differ is listed as skipped for that part.

use super::Context;
use super::acl::Problem;
use super::changes::add_op;
use super::emit::{Backend, Check, Discover, Server};
use super::lexer::Line;
use super::proxy::{Role, role, skip_unknown};
use super::rules::{self, Effect, Op};
use super::sections::{Kind, Section};
use super::{check, global, values};

/// Server keywords that take a value, so that an unknown one is skipped
/// with its value.
const WITH_VALUE: &[&str] = &[
    "maxconn",
    "minconn",
    "maxqueue",
    "slowstart",
    "port",
    "addr",
    "source",
    "resolvers",
    "resolve-prefer",
    "resolve-net",
    "init-addr",
    "agent-port",
    "agent-inter",
    "agent-addr",
    "agent-send",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "error-limit",
    "observe",
    "ca-file",
    "crt",
    "verify",
    "sni",
    "alpn",
    "proto",
    "pool-max-conn",
    "pool-purge-delay",
    "max-reuse",
    "id",
    "redir",
    "track",
    "check-sni",
    "ciphers",
    "namespace",
    "fastinter",
    "downinter",
    "crl-file",
    "ssl-min-ver",
    "ssl-max-ver",
    "check-proto",
    "check-alpn",
    "pool-low-conn",
    "tcp-ut",
    "log-proto",
    "ws",
    "hash-key",
];

/// What a `server` or `default-server` line says.
#[derive(Debug, Clone, Default)]
struct Params {
    check: bool,
    inter: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    weight: Option<u32>,
    backup: bool,
    disabled: bool,
    cookie: Option<String>,
}

pub fn backend(cx: &mut Context, s: &Section, defaults: &[Line]) -> Backend {
    let mut b = Backend {
        name: s.name.clone(),
        ..Backend::default()
    };
    let mut default_server = Params::default();
    let mut servers: Vec<(Line, Params)> = Vec::new();
    let mut http_check: Option<(Vec<Line>, Check)> = None;
    let mut check_lines: Vec<Line> = Vec::new();
    let mut check_timeout = None;
    let own = s.body.iter().map(|l| (l, false));
    let inherited = defaults.iter().map(|l| (l, true));
    for (line, is_inherited) in inherited.chain(own) {
        if global::is_file_wide(line) {
            continue;
        }
        match role(line) {
            Role::Frontend if s.kind == Kind::Backend && !is_inherited => {
                cx.skip(
                    line,
                    "a frontend directive in a backend; HAProxy ignores it here",
                );
                continue;
            }
            Role::Frontend => continue,
            Role::Both if is_inherited || s.kind == Kind::Listen => continue,
            Role::Unknown if s.kind == Kind::Listen => continue,
            Role::Unknown => {
                skip_unknown(cx, line);
                continue;
            }
            Role::Backend | Role::Both => {}
        }
        match (line.word(0), line.word(1)) {
            ("mode", _) | ("option", "redispatch") => {}
            ("acl", _) => cx.skip(line, "conditions in a backend are not translated"),
            ("balance", "roundrobin" | "leastconn") if line.words.len() == 2 => {
                b.balance = Some(line.word(1).to_owned());
            }
            ("balance", _) => cx.skip(line, "Switchyard balances by roundrobin or leastconn"),
            ("cookie", name) => cookie(cx, line, name, &mut b),
            ("retries", n) => match n.parse::<u32>() {
                Ok(n) if n <= 10 => b.retries = Some(n),
                Ok(_) => cx.skip(line, "Switchyard retries at most 10 times"),
                Err(_) => cx.reject(line, "'retries' expects an integer"),
            },
            ("timeout", which) => match values::duration(line.word(2)) {
                Err(e) => cx.reject(line, e),
                Ok(None) => cx.skip(line, "0 (no timeout) has no Switchyard equivalent"),
                Ok(Some(d)) => match which {
                    "connect" => b.connect = Some(d),
                    "server" => b.response = Some(d),
                    "tunnel" => b.tunnel = Some(d),
                    "check" => check_timeout = Some(d),
                    _ => cx.skip(line, "no Switchyard equivalent"),
                },
            },
            ("option", "httpchk") => {
                if let Some(check) = check::httpchk(cx, line) {
                    http_check = Some((vec![line.clone()], check));
                }
            }
            ("http-check", _) => check_lines.push(line.clone()),
            ("default-server", _) => params(cx, line, 1, &mut default_server),
            ("server", name) => {
                let mut p = default_server.clone();
                if !values::is_name(name) {
                    cx.skip(
                        line,
                        "Switchyard server names are letters, digits, `_`, `.` and `-`",
                    );
                    continue;
                }
                match values::server(line.word(2)) {
                    Ok(address) => {
                        params(cx, line, 3, &mut p);
                        b.servers.push(Server {
                            name: name.to_owned(),
                            address,
                            weight: p.weight,
                            is_maint: p.disabled,
                            is_backup: p.backup,
                        });
                        servers.push((line.clone(), p));
                    }
                    Err(_) if line.word(2).is_empty() => {
                        cx.reject(line, "'server' expects a name and an address");
                    }
                    Err(e) => cx.skip(line, e),
                }
            }
            ("server-template", _) => {
                let mut p = default_server.clone();
                if let Some(discover) = server_template(cx, line, &mut p, &b) {
                    b.discover = Some(discover);
                    servers.push((line.clone(), p));
                }
            }
            ("http-request" | "http-response", _) => headers(cx, line, &mut b),
            ("option", "forwardfor") => cx.skip(
                line,
                "Switchyard adds X-Forwarded-For per frontend (forward_headers)",
            ),
            _ => skip_unknown(cx, line),
        }
    }
    for line in &check_lines {
        match &mut http_check {
            Some((lines, check)) => {
                if check::http_check_line(cx, line, check) {
                    lines.push(line.clone());
                }
            }
            None => cx.skip(
                line,
                "`http-check` without `option httpchk` is not translated",
            ),
        }
    }
    checks(cx, &mut b, &servers, http_check, check_timeout);
    if b.cookie.is_some() {
        for (line, p) in &servers {
            if let Some(value) = &p.cookie {
                cx.skip(line, format!(
                    "cookie value `{value}`: Switchyard sets its own value per server; clients pinned by the old value are balanced again once"
                ));
            }
        }
    }
    b
}

fn cookie(cx: &mut Context, line: &Line, name: &str, b: &mut Backend) {
    if name.is_empty() {
        return cx.reject(line, "'cookie' expects a name");
    }
    let options: Vec<&str> = line.words[2..].iter().map(String::as_str).collect();
    if !options.contains(&"insert") {
        return cx.skip(line, "only `cookie NAME insert` persistence is translated");
    }
    b.cookie = Some(name.to_owned());
    let extra: Vec<&str> = options
        .iter()
        .copied()
        .filter(|o| {
            !matches!(
                *o,
                "insert" | "indirect" | "nocache" | "httponly" | "secure"
            )
        })
        .collect();
    if !extra.is_empty() {
        cx.skip(
            line,
            format!("cookie options `{}` are not translated", extra.join(" ")),
        );
    }
}

/// `server-template <prefix> <num | first-last> <fqdn>:<port> [params]`:
/// at most `num` servers from the name's records. Parameters that cannot
/// apply to discovered servers (weight, backup, disabled) are listed.
fn server_template(cx: &mut Context, line: &Line, p: &mut Params, b: &Backend) -> Option<Discover> {
    let (prefix, count, address) = (line.word(1), line.word(2), line.word(3));
    if address.is_empty() {
        cx.reject(
            line,
            "'server-template' expects a prefix, a number or range, and an address",
        );
        return None;
    }
    if b.discover.is_some() {
        cx.skip(line, "Switchyard discovers one name per backend");
        return None;
    }
    let range = match count.split_once('-') {
        Some((first, last)) => first.parse::<u32>().ok().zip(last.parse::<u32>().ok()),
        None => count.parse::<u32>().ok().map(|n| (1, n)),
    };
    let Some((first, last)) = range.filter(|(f, l)| 1 <= *f && f <= l) else {
        cx.reject(
            line,
            format!("'server-template': invalid number or range '{count}'"),
        );
        return None;
    };
    let max = last - first + 1;
    if max > 1024 {
        cx.skip(
            line,
            "Switchyard discovers at most 1024 servers per backend",
        );
        return None;
    }
    let dns = match values::server(address) {
        Ok(dns) => dns,
        Err(e) => {
            cx.skip(line, e);
            return None;
        }
    };
    let host = dns.rsplit_once(':').map_or("", |(h, _)| h);
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        cx.skip(
            line,
            "an IP address: Switchyard discovers servers from a DNS name; list it as a server",
        );
        return None;
    }
    params(cx, line, 4, p);
    for (is_set, what) in [
        (p.weight.is_some_and(|w| w != 1), "weight"),
        (p.backup, "backup"),
        (p.disabled, "disabled"),
    ] {
        if is_set {
            cx.skip(
                line,
                format!("`{what}`: discovered servers take weight 1, READY, and are not backups"),
            );
        }
    }
    Some(Discover {
        dns,
        max,
        haproxy_names: format!("{prefix}{first} to {prefix}{last}"),
    })
}

/// Reads the keywords of a `server` or `default-server` line from `from`.
fn params(cx: &mut Context, line: &Line, from: usize, p: &mut Params) {
    let mut words = line.words[from.min(line.words.len())..].iter();
    while let Some(word) = words.next() {
        let number = |w: Option<&String>| w.and_then(|v| v.parse::<u32>().ok());
        match word.as_str() {
            "check" => p.check = true,
            "no-check" => p.check = false,
            "backup" => p.backup = true,
            "no-backup" => p.backup = false,
            "disabled" => p.disabled = true,
            "enabled" => p.disabled = false,
            "inter" => match words.next().map(|w| values::duration(w)) {
                Some(Ok(Some(d))) => p.inter = Some(d),
                _ => cx.reject(line, "'inter' expects a time above 0"),
            },
            "rise" | "fall" => match number(words.next()) {
                Some(n) if n >= 1 => match word.as_str() {
                    "rise" => p.rise = Some(n),
                    _ => p.fall = Some(n),
                },
                _ => cx.reject(line, format!("'{word}' expects a positive integer")),
            },
            "weight" => match number(words.next()) {
                Some(n) if n <= 256 => p.weight = Some(n),
                _ => cx.reject(line, "'weight' expects an integer from 0 to 256"),
            },
            "cookie" => p.cookie = words.next().cloned(),
            other => {
                let value = match WITH_VALUE.contains(&other) {
                    true => words.next().map(|v| format!(" {v}")).unwrap_or_default(),
                    false => String::new(),
                };
                cx.skip(
                    line,
                    format!("server option `{other}{value}` is not translated"),
                );
            }
        }
    }
}

/// The backend's check from its servers' `check` keywords and the check
/// lines.
fn checks(
    cx: &mut Context,
    b: &mut Backend,
    servers: &[(Line, Params)],
    http: Option<(Vec<Line>, Check)>,
    timeout: Option<String>,
) {
    let checked: Vec<&(Line, Params)> = servers.iter().filter(|(_, p)| p.check).collect();
    let Some((_, first)) = checked.first() else {
        for line in http.iter().flat_map(|(lines, _)| lines) {
            cx.skip(
                line,
                "no server has `check`, so HAProxy never sends this check",
            );
        }
        return;
    };
    let mut check = http.map(|(_, c)| c).unwrap_or_default();
    check.interval = first.inter.clone();
    check.rise = first.rise;
    check.fall = first.fall;
    check.timeout = timeout;
    for (line, p) in servers {
        if !p.check {
            cx.skip(
                line,
                "HAProxy does not check this server; Switchyard checks every server of a backend",
            );
        } else if (&p.inter, p.rise, p.fall) != (&first.inter, first.rise, first.fall) {
            cx.skip(line, "check inter/rise/fall differ from the first checked server's; Switchyard checks a backend's servers alike");
        }
    }
    b.check = Some(check);
}

fn headers(cx: &mut Context, line: &Line, b: &mut Backend) {
    let rule = match rules::parse(line) {
        Ok(rule) => rule,
        Err(Problem::Reject(m)) => return cx.reject(line, m),
        Err(Problem::Skip(m)) => return cx.skip(line, m),
    };
    if rule.guard.is_some() {
        return cx.skip(line, "conditions in a backend are not translated");
    }
    let Effect::Header { is_response, op } = rule.effect else {
        return cx.skip(line, "only header changes are translated in a backend");
    };
    if let (false, Op::Set(name, value)) = (is_response, &op) {
        if name.eq_ignore_ascii_case("host") && !value.contains('{') {
            b.host = Some(value.clone());
            return;
        }
    }
    let ops = match is_response {
        true => &mut b.response_headers,
        false => &mut b.request_headers,
    };
    if let Err(reason) = add_op(ops, &op) {
        cx.skip(line, reason);
    }
}
