//! Groups directive lines into HAProxy's sections (`global`, `defaults`,
//! `frontend`, `backend`, `listen`, and the others Switchyard has no use
//! for).
//! Invariant: every line belongs to exactly one section; a line before any
//! section, a proxy without a name, and a proxy name used twice on the same
//! side are rejected, as HAProxy rejects them.

use std::collections::BTreeSet;

use super::Context;
use super::lexer::Line;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    /// `userlist`, `peers`, `resolvers`, `cache`, ...
    Other,
}

#[derive(Debug)]
pub struct Section {
    pub kind: Kind,
    /// The proxy name; empty for `global` and unnamed `defaults`.
    pub name: String,
    pub header: Line,
    pub body: Vec<Line>,
}

impl Section {
    /// Whether this section accepts client connections.
    pub fn is_frontend(&self) -> bool {
        matches!(self.kind, Kind::Frontend | Kind::Listen)
    }

    /// Whether this section holds servers.
    pub fn is_backend(&self) -> bool {
        matches!(self.kind, Kind::Backend | Kind::Listen)
    }
}

const OTHER: &[&str] = &[
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "cache",
    "http-errors",
    "ring",
    "log-forward",
    "crt-store",
    "traces",
    "fcgi-app",
];

pub fn group(cx: &mut Context, lines: Vec<Line>) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut frontends = BTreeSet::new();
    let mut backends = BTreeSet::new();
    for line in lines {
        let kind = match line.word(0) {
            "global" => Some(Kind::Global),
            "defaults" => Some(Kind::Defaults),
            "frontend" => Some(Kind::Frontend),
            "backend" => Some(Kind::Backend),
            "listen" => Some(Kind::Listen),
            w if OTHER.contains(&w) => Some(Kind::Other),
            _ => None,
        };
        let Some(kind) = kind else {
            match sections.last_mut() {
                Some(s) => s.body.push(line),
                None => cx.reject(
                    &line,
                    format!("unknown keyword '{}' out of section", line.word(0)),
                ),
            }
            continue;
        };
        let name = line.word(1).to_owned();
        if matches!(kind, Kind::Frontend | Kind::Backend | Kind::Listen) {
            if name.is_empty() {
                cx.reject(&line, format!("'{}' expects a name", line.word(0)));
            }
            let duplicate = (matches!(kind, Kind::Frontend | Kind::Listen)
                && !frontends.insert(name.clone()))
                || (matches!(kind, Kind::Backend | Kind::Listen) && !backends.insert(name.clone()));
            if duplicate {
                cx.reject(
                    &line,
                    format!("proxy '{name}' has the same name as another one"),
                );
            }
        }
        sections.push(Section {
            kind,
            name,
            header: line,
            body: Vec::new(),
        });
    }
    sections
}
