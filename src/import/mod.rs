//! `switchyard import`: translates an HAProxy configuration into Switchyard's
//! TOML. A layer beside `config`: it reads HAProxy's grammar (`lexer`,
//! `sections`), maps what has an exact equivalent (`global`, `proxy`,
//! `frontend`, `changes`, `backend`, `check`, `rules`, `acl`, `criterion`,
//! `values`) and writes TOML text (`emit`); it builds no model and knows
//! nothing below `config`.
//! Invariant: nothing is dropped silently. Every line is either translated,
//! listed in `Translation::skipped` with its line number and the reason, or
//! the whole file is `Rejected` because HAProxy itself would refuse it.

mod acl;
mod backend;
mod changes;
mod check;
mod criterion;
mod emit;
mod frontend;
mod global;
mod lexer;
mod proxy;
mod rules;
mod sections;
mod values;

use std::collections::BTreeSet;
use std::fmt;

use lexer::Line;

/// The result of a translation HAProxy would accept.
#[derive(Debug)]
pub struct Translation {
    /// The Switchyard configuration, with the skipped lines as comments.
    pub toml: String,
    /// Every line (or part of one) not translated, in file order.
    pub skipped: Vec<Skipped>,
}

/// A line, or part of one, that was not translated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub line: usize,
    /// The line as written, comment removed.
    pub text: String,
    pub reason: String,
}

/// A line HAProxy would refuse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rejection {
    pub line: usize,
    pub message: String,
}

/// A file HAProxy would refuse, with every reason found.
#[derive(Debug, thiserror::Error)]
pub struct Rejected {
    pub file: String,
    pub errors: Vec<Rejection>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file, e.line, e.message)?;
        }
        Ok(())
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.text, self.reason)
    }
}

/// Translates the HAProxy configuration `source`; `file` names it in the
/// output's header and in errors.
pub fn translate(source: &str, file: &str) -> Result<Translation, Rejected> {
    let mut cx = Context::default();
    let (lines, errors, skipped) = lexer::lines(source);
    cx.rejections.extend(errors);
    cx.skipped.extend(skipped);
    let sections = sections::group(&mut cx, lines);
    let mut output = emit::Output::default();
    proxy::translate_all(&mut cx, &sections, &mut output);
    if !cx.rejections.is_empty() {
        let mut errors = cx.rejections;
        errors.sort();
        errors.dedup();
        return Err(Rejected {
            file: file.to_owned(),
            errors,
        });
    }
    let skipped: Vec<Skipped> = cx.skipped.into_iter().collect();
    Ok(Translation {
        toml: emit::render(&output, file, &skipped),
        skipped,
    })
}

/// What the translation found so far.
#[derive(Debug, Default)]
struct Context {
    /// Ordered by line; a `defaults` line inherited by several proxies is
    /// listed once.
    skipped: BTreeSet<Skipped>,
    rejections: Vec<Rejection>,
}

impl Context {
    fn skip(&mut self, line: &Line, reason: impl Into<String>) {
        self.skipped.insert(Skipped {
            line: line.number,
            text: line.text.clone(),
            reason: reason.into(),
        });
    }

    fn reject(&mut self, line: &Line, message: impl Into<String>) {
        self.rejections.push(Rejection {
            line: line.number,
            message: message.into(),
        });
    }
}
