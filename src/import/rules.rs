//! `http-request`, `http-response` and `redirect` lines as effects: a
//! terminal answer (deny, redirect, return), a header change, a path rewrite
//! or the switch to HTTPS; and the condition that guards each.
//! Invariant: an effect is built only when Switchyard's route keys say the
//! same; otherwise the caller gets the reason.

use super::acl::Problem;
use super::criterion;
use super::emit::Action;
use super::lexer::Line;
use super::values;

#[derive(Debug, Clone)]
pub enum Effect {
    Terminal(Action),
    RedirectHttps,
    Header { is_response: bool, op: Op },
    Rewrite { regex: String, to: String },
}

#[derive(Debug, Clone)]
pub enum Op {
    Set(String, String),
    Add(String, String),
    Remove(String),
}

impl Op {
    pub fn name(&self) -> &str {
        match self {
            Op::Set(n, _) | Op::Add(n, _) | Op::Remove(n) => n,
        }
    }
}

/// A rule and its guard: `if`/`unless` and the words after it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub effect: Effect,
    pub guard: Option<(String, Vec<String>)>,
}

/// Splits the words of `line` from `from` at its `if`/`unless`.
pub fn guarded(line: &Line, from: usize) -> (&[String], Option<(String, Vec<String>)>) {
    let words = &line.words[from.min(line.words.len())..];
    match words.iter().position(|w| w == "if" || w == "unless") {
        Some(at) => (
            &words[..at],
            Some((words[at].clone(), words[at + 1..].to_vec())),
        ),
        None => (words, None),
    }
}

/// Whether a guard is HAProxy's "not over TLS": `if !{ ssl_fc }` or
/// `unless { ssl_fc }`.
pub fn is_not_tls(guard: &Option<(String, Vec<String>)>) -> bool {
    let Some((keyword, words)) = guard else {
        return false;
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        (keyword.as_str(), words.as_slice()),
        ("if", ["!{", "ssl_fc", "}"] | ["!", "{", "ssl_fc", "}"])
            | ("unless", ["{", "ssl_fc", "}"])
    )
}

/// Reads an `http-request`, `http-response` or `redirect` line.
pub fn parse(line: &Line) -> Result<Rule, Problem> {
    let (is_response, from) = match line.word(0) {
        "redirect" => (false, 1),
        "http-response" => (true, 2),
        _ => (false, 2),
    };
    let (args, guard) = guarded(line, from);
    let action = if line.word(0) == "redirect" {
        "redirect"
    } else {
        line.word(1)
    };
    let effect = match (is_response, action) {
        (_, "set-header" | "add-header") => {
            let [name, value] = args else {
                return Err(Problem::Reject(format!(
                    "'{action}' expects a header name and a value"
                )));
            };
            let value = values::template(value, is_response).map_err(Problem::Skip)?;
            let op = match action {
                "set-header" => Op::Set(name.clone(), value),
                _ => Op::Add(name.clone(), value),
            };
            Effect::Header { is_response, op }
        }
        (_, "del-header") => match args {
            [name] => Effect::Header {
                is_response,
                op: Op::Remove(name.clone()),
            },
            [] => return Err(Problem::Reject("'del-header' expects a header name".into())),
            _ => {
                return Err(Problem::Skip(
                    "del-header with a match method is not translated".into(),
                ));
            }
        },
        (false, "replace-path") => {
            let [regex, to] = args else {
                return Err(Problem::Reject(
                    "'replace-path' expects a regex and a replacement".into(),
                ));
            };
            criterion::pcre_only(regex)?;
            Effect::Rewrite {
                regex: regex.clone(),
                to: replacement(to)?,
            }
        }
        (false, "redirect") => redirect(args)?,
        (false, "deny") => match args {
            [] => Effect::Terminal(Action::Deny),
            [status, code] if status == "deny_status" && code == "403" => {
                Effect::Terminal(Action::Deny)
            }
            _ => {
                return Err(Problem::Skip(
                    "deny with a status or body other than 403 is not translated; use `respond`"
                        .into(),
                ));
            }
        },
        (false, "return") => respond(args)?,
        (_, other) => {
            return Err(Problem::Skip(format!(
                "the action `{other}` has no Switchyard equivalent"
            )));
        }
    };
    Ok(Rule { effect, guard })
}

fn redirect(args: &[String]) -> Result<Effect, Problem> {
    let (Some(kind), Some(to)) = (args.first(), args.get(1)) else {
        return Err(Problem::Reject(
            "'redirect' expects location, prefix or scheme and a value".into(),
        ));
    };
    let mut code = None;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        match option.as_str() {
            "code" => {
                let value = rest.next().map(String::as_str).unwrap_or("");
                match value.parse::<u16>() {
                    Ok(c @ (301 | 302 | 303 | 307 | 308)) => code = Some(c),
                    _ => return Err(Problem::Reject(format!("invalid redirect code '{value}'"))),
                }
            }
            other => {
                return Err(Problem::Skip(format!(
                    "redirect option `{other}` is not translated"
                )));
            }
        }
    }
    match kind.as_str() {
        "scheme" if to.eq_ignore_ascii_case("https") && code.is_none() => Ok(Effect::RedirectHttps),
        "scheme" if to.eq_ignore_ascii_case("https") => Err(Problem::Skip(
            "redirect_https chooses its own status; drop `code` to translate this line".into(),
        )),
        "scheme" => Err(Problem::Skip(format!(
            "redirect to scheme {to} is not translated"
        ))),
        "location" | "prefix" if to.contains('%') => Err(Problem::Skip(
            "a redirect target with log-format expressions is not translated".into(),
        )),
        "location" | "prefix" => Ok(Effect::Terminal(Action::Redirect {
            to: to.clone(),
            // HAProxy's default redirect status.
            code: Some(code.unwrap_or(302)),
            keep_path: kind == "prefix",
        })),
        other => Err(Problem::Reject(format!("unknown redirect type '{other}'"))),
    }
}

fn respond(args: &[String]) -> Result<Effect, Problem> {
    let mut status = 200;
    let (mut body, mut body_file, mut content_type) = (None, None, None);
    let mut rest = args.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().cloned();
        let value =
            value.ok_or_else(|| Problem::Reject(format!("'return {option}' expects a value")))?;
        match option.as_str() {
            "status" => {
                status = value
                    .parse()
                    .ok()
                    .filter(|s| (200..=599).contains(s))
                    .ok_or_else(|| Problem::Reject(format!("invalid return status '{value}'")))?;
            }
            "content-type" => content_type = Some(value),
            "string" => body = Some(value),
            "file" => body_file = Some(value),
            other => {
                return Err(Problem::Skip(format!(
                    "return option `{other}` is not translated"
                )));
            }
        }
    }
    Ok(Effect::Terminal(Action::Respond {
        status,
        body,
        body_file,
        content_type,
    }))
}

/// A replace-path replacement (`\1`) in the regex crate's syntax (`${1}`).
fn replacement(to: &str) -> Result<String, Problem> {
    if to.contains('%') {
        return Err(Problem::Skip(
            "a replacement with log-format expressions is not translated".into(),
        ));
    }
    let mut out = String::with_capacity(to.len());
    let mut chars = to.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let digit = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{digit}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}
