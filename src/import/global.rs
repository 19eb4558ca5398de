//! The process-wide part: the `global` section, the directives that
//! Switchyard keeps once for the whole file wherever HAProxy wrote them
//! (`errorfile`, `unique-id-header`, logging), and the stats section, which
//! becomes `[admin]`.
//! Invariant: a value kept once is never silently overwritten by a second,
//! different one; the second is listed as skipped.

use super::Context;
use super::emit::{Admin, Output};
use super::lexer::Line;
use super::sections::Section;
use super::values;

/// Translates the `global` section.
pub fn section(cx: &mut Context, section: &Section, out: &mut Output) {
    for line in &section.body {
        match line.word(0) {
            "maxconn" => match line.word(1).parse::<u64>() {
                Ok(n) if n >= 1 => out.global.max_connections = Some(n),
                _ => cx.reject(line, "'maxconn' expects a positive integer"),
            },
            "hard-stop-after" => match values::duration(line.word(1)) {
                Ok(Some(d)) => out.global.grace = Some(d),
                Ok(None) => cx.skip(line, "0 has no Switchyard equivalent"),
                Err(e) => cx.reject(line, e),
            },
            "daemon" | "master-worker" => cx.skip(
                line,
                "Switchyard runs in the foreground; start it from systemd or a container",
            ),
            "user" | "group" | "uid" | "gid" | "chroot" => cx.skip(
                line,
                "run Switchyard as an unprivileged user from systemd or a container",
            ),
            "pidfile" => cx.skip(line, "no pid file; the service manager tracks the process"),
            "nbthread" | "nbproc" => cx.skip(line, "use `switchyard run --threads N`"),
            "log" => cx.skip(line, "the access log goes to stdout (global.access_log)"),
            "stats" => cx.skip(
                line,
                "use the admin server's API instead of the stats socket",
            ),
            "lua-load" | "lua-prepend-path" => cx.skip(line, "Lua scripts are not supported"),
            "ssl-default-bind-ciphers"
            | "ssl-default-bind-ciphersuites"
            | "ssl-default-bind-options"
            | "ssl-default-server-ciphers"
            | "ssl-default-server-options"
            | "ssl-dh-param-file" => cx.skip(
                line,
                "Switchyard's TLS settings are fixed (rustls defaults)",
            ),
            _ => cx.skip(line, "not supported by Switchyard"),
        }
    }
}

/// Whether `line` is kept once for the whole file, whichever section holds it.
pub fn is_file_wide(line: &Line) -> bool {
    matches!(
        (line.word(0), line.word(1)),
        (
            "errorfile" | "unique-id-header" | "unique-id-format" | "log",
            _
        ) | ("option", "httplog" | "dontlognull")
            | ("no", "log")
    )
}

/// Translates one file-wide line.
pub fn file_wide(cx: &mut Context, line: &Line, out: &mut Output) {
    match (line.word(0), line.word(1)) {
        ("errorfile", code) => {
            let Ok(status) = code.parse::<u16>() else {
                return cx.reject(line, "'errorfile' expects a status code and a file");
            };
            let file = line.word(2);
            if file.is_empty() {
                return cx.reject(line, "'errorfile' expects a status code and a file");
            }
            if !matches!(status, 502..=504) {
                return cx.skip(line, "Switchyard's [errors] pages are 502, 503 and 504");
            }
            match out.errors.get(&status) {
                Some(existing) if existing != file => cx.skip(
                    line,
                    format!(
                        "Switchyard has one {status} page for the whole file; {existing} is kept"
                    ),
                ),
                _ => {
                    out.errors.insert(status, file.to_owned());
                }
            }
        }
        ("unique-id-header", header) if !header.is_empty() => match &out.global.request_id_header {
            Some(existing) if existing != header => cx.skip(
                line,
                format!(
                    "Switchyard has one request id header for the whole file; {existing} is kept"
                ),
            ),
            _ => out.global.request_id_header = Some(header.to_owned()),
        },
        ("unique-id-header", _) => cx.reject(line, "'unique-id-header' expects a header name"),
        ("unique-id-format", _) => cx.skip(
            line,
            "Switchyard generates its own request ids (global.request_id); the format is not kept",
        ),
        ("log", "global") | ("option", "httplog" | "dontlognull") => {
            // The access log: one line per request on stdout, on by default.
        }
        _ => cx.skip(line, "the access log goes to stdout (global.access_log)"),
    }
}

/// Whether a proxy section is only HAProxy's stats page.
pub fn is_stats_only(section: &Section) -> bool {
    let has = |w: &str| section.body.iter().any(|l| l.word(0) == w);
    has("stats") && !has("server") && !has("use_backend") && !has("default_backend")
}

/// Translates a stats-only section into `[admin]`.
pub fn admin(cx: &mut Context, section: &Section, out: &mut Output) {
    if out.admin.is_some() {
        cx.skip(
            &section.header,
            "Switchyard has one admin server; an earlier stats section is used",
        );
        for line in &section.body {
            cx.skip(line, "in a second stats section");
        }
        return;
    }
    let mut admin = Admin::default();
    if !matches!(section.header.word(2), "" | "from") {
        match values::listen(section.header.word(2)) {
            Ok(listen) => admin.listen = Some(listen),
            Err(e) => cx.skip(&section.header, e),
        }
    }
    for line in &section.body {
        match (line.word(0), line.word(1)) {
            ("bind", addr) if admin.listen.is_none() => match values::listen(addr) {
                Ok(listen) if line.words.len() == 2 => admin.listen = Some(listen),
                Ok(listen) => {
                    admin.listen = Some(listen);
                    cx.skip(line, "bind options are not translated for the admin server");
                }
                Err(e) => cx.skip(line, e),
            },
            ("bind", _) => cx.skip(line, "the admin server listens on one address"),
            ("mode", "http") | ("stats", "enable") => {}
            ("stats", "uri") => admin.notes.push(format!(
                "HAProxy's stats page was at {} (line {}); Switchyard's is at / on this address.",
                line.word(2),
                line.number
            )),
            ("stats", "auth") => admin.notes.push(format!(
                "`stats auth` (line {}): the password becomes the admin token. Put it in a file named by \
                 token_file = \"...\" (mode 0600) or in SWITCHYARD_ADMIN_TOKEN; the browser login takes any user name.",
                line.number
            )),
            ("stats", "admin") if line.words[2..] == ["if", "TRUE"] => admin.notes.push(format!(
                "`stats admin if TRUE` (line {}): state changes from the page and the API need the admin token.",
                line.number
            )),
            ("stats", "admin") => cx.skip(
                line,
                "Switchyard allows state changes to whoever holds the admin token; conditions are not translated",
            ),
            ("stats", _) => cx.skip(line, "not an option of Switchyard's stats page"),
            _ if is_file_wide(line) => file_wide(cx, line, out),
            _ => cx.skip(line, "not translated for the admin server"),
        }
    }
    out.admin = Some(admin);
}
