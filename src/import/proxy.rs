//! The proxies: walks the sections in order (a `defaults` section applies to
//! the proxies after it, HAProxy's default mode is tcp), tells which side of
//! a proxy each directive configures, and sends each section to the
//! frontend, backend or admin translator.
//! Invariant: every line of a proxy section reaches exactly one translator
//! for each side it configures, or is listed as skipped.

use std::collections::BTreeSet;

use super::emit::Output;
use super::lexer::Line;
use super::sections::{Kind, Section};
use super::{Context, backend, frontend, global, values};

/// Which side of a proxy a directive configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Frontend,
    Backend,
    Both,
    /// Not known to the translator: listed as skipped where it appears.
    Unknown,
}

pub fn role(line: &Line) -> Role {
    match (line.word(0), line.word(1)) {
        ("bind" | "default_backend" | "use_backend" | "redirect" | "maxconn" | "stats", _)
        | ("timeout", "client" | "http-request" | "http-keep-alive" | "client-fin")
        | ("option", "http-keep-alive" | "tcp-smart-accept") => Role::Frontend,
        (
            "server" | "server-template" | "default-server" | "balance" | "cookie" | "http-check"
            | "retries",
            _,
        )
        | ("timeout", "connect" | "server" | "tunnel" | "check" | "queue" | "server-fin")
        | ("option", "httpchk" | "redispatch") => Role::Backend,
        ("acl" | "http-request" | "http-response" | "mode", _) | ("option", "forwardfor") => {
            Role::Both
        }
        _ => Role::Unknown,
    }
}

pub fn translate_all(cx: &mut Context, sections: &[Section], out: &mut Output) {
    let modes = http_modes(sections);
    let http_backends: BTreeSet<&str> = sections
        .iter()
        .zip(&modes)
        .filter(|(s, is_http)| {
            s.is_backend() && **is_http && !global::is_stats_only(s) && values::is_name(&s.name)
        })
        .map(|(s, _)| s.name.as_str())
        .collect();
    let all_backends: BTreeSet<&str> = sections
        .iter()
        .filter(|s| s.is_backend())
        .map(|s| s.name.as_str())
        .collect();
    let names = Names {
        http: &http_backends,
        all: &all_backends,
    };
    let mut defaults: Vec<Line> = Vec::new();
    for (section, is_http) in sections.iter().zip(modes) {
        match section.kind {
            Kind::Global => global::section(cx, section, out),
            Kind::Other => {
                let reason = format!(
                    "the `{}` section has no Switchyard equivalent",
                    section.header.word(0)
                );
                cx.skip(&section.header, reason.clone());
                for line in &section.body {
                    cx.skip(line, format!("in a `{}` section", section.header.word(0)));
                }
            }
            Kind::Defaults => {
                defaults.clear();
                for line in &section.body {
                    if global::is_file_wide(line) {
                        global::file_wide(cx, line, out);
                    } else if role(line) == Role::Unknown {
                        skip_unknown(cx, line);
                    } else {
                        defaults.push(line.clone());
                    }
                }
            }
            Kind::Frontend | Kind::Backend | Kind::Listen => {
                if global::is_stats_only(section) {
                    global::admin(cx, section, out);
                    continue;
                }
                if !is_http {
                    cx.skip(
                        &section.header,
                        "not `mode http`: Switchyard proxies HTTP only",
                    );
                    for line in &section.body {
                        cx.skip(line, "in a section that is not `mode http`");
                    }
                    continue;
                }
                if !values::is_name(&section.name) {
                    cx.skip(
                        &section.header,
                        "Switchyard names are letters, digits, `_`, `.` and `-`",
                    );
                    for line in &section.body {
                        cx.skip(line, "in a section whose name Switchyard cannot use");
                    }
                    continue;
                }
                match (section.header.word(2), section.kind) {
                    ("from", _) => cx.skip(
                        &section.header,
                        "named defaults: the `defaults` section just before this one applies",
                    ),
                    ("", _) | (_, Kind::Frontend | Kind::Listen) => {}
                    (_, _) => cx.skip(&section.header, "a backend header takes only a name"),
                }
                for line in section.body.iter().filter(|l| global::is_file_wide(l)) {
                    global::file_wide(cx, line, out);
                }
                if section.is_frontend() {
                    if let Some(f) = frontend::frontend(cx, section, &defaults, names) {
                        out.frontends.push(f);
                    }
                }
                if section.is_backend() {
                    out.backends.push(backend::backend(cx, section, &defaults));
                }
            }
        }
    }
}

/// The backends a frontend may name.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// Backends that are translated.
    pub http: &'a BTreeSet<&'a str>,
    /// Every backend HAProxy knows.
    pub all: &'a BTreeSet<&'a str>,
}

/// Whether each section is in `mode http`, by its own `mode` line or the
/// `defaults` before it (HAProxy's default is tcp).
fn http_modes(sections: &[Section]) -> Vec<bool> {
    let mode_of = |s: &Section| {
        s.body
            .iter()
            .rev()
            .find(|l| l.word(0) == "mode")
            .map(|l| l.word(1).to_owned())
    };
    let mut default = None;
    sections
        .iter()
        .map(|s| {
            if s.kind == Kind::Defaults {
                default = mode_of(s);
            }
            mode_of(s).or_else(|| default.clone()).as_deref() == Some("http")
        })
        .collect()
}

pub fn skip_unknown(cx: &mut Context, line: &Line) {
    let reason = match (line.word(0), line.word(1)) {
        ("tcp-request" | "tcp-response", _) => "TCP-level rules are not supported",
        ("stick-table" | "stick", _) => {
            "stick tables are not supported; use `cookie` for persistence"
        }
        ("capture", _) => "the access log has a fixed set of fields",
        ("compression", _) => "Switchyard does not compress responses",
        ("option", "http-server-close" | "httpclose" | "forceclose") => {
            "Switchyard keeps pooled keep-alive connections to servers"
        }
        ("option", _) => "this option has no Switchyard equivalent",
        _ => "not supported by Switchyard",
    };
    cx.skip(line, reason);
}
