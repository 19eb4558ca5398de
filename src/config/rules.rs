//! A route's extra conditions (`path`, `path_regex`, `methods`, `headers`,
//! `cookies`, `query`), its path `rewrite`, and the `request_headers` /
//! `response_headers` rules of routes and backends, compiled into the model.
//! Invariant: regexes, header names, values and templates are compiled
//! here, once; a rewrite that could yield a path without a leading `/` and a
//! rule that sets a hop-by-hop or framing header are errors.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use toml::Spanned;

use super::error::Collector;
use super::raw::{RawHeaderRules, RawRewrite, Text};
use super::validate::optional;
use super::values::{parse_cookie_name, parse_path_prefix};
use crate::model::{Direction, Expansion, HeaderMatch, HeaderRules, PathRegex, Rewrite, Template};

/// Headers a rule may not set or add: they describe one connection or the
/// message's framing, which the proxy owns.
const FORBIDDEN: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authorization",
    "content-length",
    "expect",
];

/// An exact path: starts with `/`, no whitespace, `?` or `#`.
pub(super) fn exact_path(s: &str) -> Result<Box<str>, String> {
    parse_path_prefix(s)?;
    Ok(s.into())
}

pub(super) fn regex(s: &str) -> Result<PathRegex, String> {
    regex::Regex::new(s)
        .map(PathRegex)
        .map_err(|e| format!("invalid regex: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `methods = ["GET", "HEAD"]`: upper-case method tokens.
pub(super) fn methods(
    c: &mut Collector<'_>,
    path: &str,
    raw: Option<&Spanned<Vec<Text>>>,
) -> Box<[http::Method]> {
    let Some(list) = raw else {
        return Box::new([]);
    };
    let field = format!("{path}.methods");
    if list.get_ref().is_empty() {
        c.at(
            list.span(),
            field.clone(),
            r#"expected at least one method, like ["GET", "HEAD"]"#,
        );
    }
    let mut methods = Vec::with_capacity(list.get_ref().len());
    for text in list.get_ref() {
        let s = text.get_ref();
        let is_token = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
        match http::Method::from_bytes(s.as_bytes()) {
            Ok(m) if is_token => methods.push(m),
            _ => c.at(
                text.span(),
                field.clone(),
                format!(r#"expected an upper-case method like "GET", got {s:?}"#),
            ),
        }
    }
    methods.into()
}

/// `headers = { "X-Canary" = "1", "X-Beta" = "*" }`.
pub(super) fn header_matches(
    c: &mut Collector<'_>,
    path: &str,
    raw: Option<&Spanned<BTreeMap<Text, Text>>>,
) -> Box<[HeaderMatch]> {
    let Some(map) = raw else {
        return Box::new([]);
    };
    let mut out = Vec::with_capacity(map.get_ref().len());
    for (name, value) in map.get_ref() {
        let field = format!("{path}.headers.{}", name.get_ref());
        let Some(name) = header_name(c, &field, name) else {
            continue;
        };
        let value = match value.get_ref().as_str() {
            "*" => None,
            v => match HeaderValue::from_str(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    c.at(
                        value.span(),
                        field,
                        format!("expected a header value or \"*\" (present), got {v:?}"),
                    );
                    continue;
                }
            },
        };
        out.push(HeaderMatch { name, value });
    }
    out.into()
}

/// `cookies = { beta = "yes" }` and `query = { v = "2" }`.
pub(super) fn pairs(
    c: &mut Collector<'_>,
    path: &str,
    key: &str,
    raw: Option<&Spanned<BTreeMap<Text, Text>>>,
) -> Box<[(Box<str>, Box<str>)]> {
    let Some(map) = raw else {
        return Box::new([]);
    };
    let mut out = Vec::with_capacity(map.get_ref().len());
    for (name, value) in map.get_ref() {
        let field = format!("{path}.{key}.{}", name.get_ref());
        let checked = match key {
            "cookies" => parse_cookie_name(name.get_ref()).map(|_| ()),
            _ => query_name(name.get_ref()),
        };
        if let Err(message) = checked {
            c.at(name.span(), field.clone(), message);
            continue;
        }
        let v = value.get_ref();
        if v.bytes()
            .any(|b| b.is_ascii_control() || b == b';' || b == b'&' || b == b' ')
        {
            c.at(
                value.span(),
                field,
                format!(
                    "expected a value without spaces, ';', '&' or control characters, got {v:?}"
                ),
            );
            continue;
        }
        out.push((name.get_ref().as_str().into(), v.as_str().into()));
    }
    out.into()
}

fn query_name(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.bytes()
            .any(|b| matches!(b, b'&' | b'=' | b'#' | b' ') || b.is_ascii_control())
    {
        Err(format!(
            "expected a query parameter name without '&', '=', '#' or spaces, got {s:?}"
        ))
    } else {
        Ok(())
    }
}

/// `rewrite = { strip_prefix = ... }`, `{ replace_prefix = { from, to } }`
/// or `{ regex = ..., to = ... }`.
pub(super) fn rewrite(
    c: &mut Collector<'_>,
    path: &str,
    spanned: &Spanned<RawRewrite>,
) -> Option<Rewrite> {
    let field = format!("{path}.rewrite");
    let r = spanned.get_ref();
    let kinds = usize::from(r.strip_prefix.is_some())
        + usize::from(r.replace_prefix.is_some())
        + usize::from(r.regex.is_some());
    if kinds != 1 {
        c.at(
            spanned.span(),
            field,
            "expected exactly one of strip_prefix, replace_prefix or regex (with to)",
        );
        return None;
    }
    if let Some(to) = r.to.as_ref().filter(|_| r.regex.is_none()) {
        c.at(
            to.span(),
            format!("{field}.to"),
            "applies only with regex; remove it",
        );
    }
    if let Some(prefix) = &r.strip_prefix {
        return optional(c, &field, "strip_prefix", Some(prefix), None, |s| {
            parse_path_prefix(s).map(|p| Some(Rewrite::StripPrefix(p)))
        });
    }
    if let Some(replace) = &r.replace_prefix {
        let rp = replace.get_ref();
        let at = format!("{field}.replace_prefix");
        if rp.from.is_none() || rp.to.is_none() {
            c.at(
                replace.span(),
                at.clone(),
                "expected both from and to, like { from = \"/api/users\", to = \"/users\" }",
            );
        }
        let from = optional(c, &at, "from", rp.from.as_ref(), None, |s| {
            parse_path_prefix(s).map(Some)
        });
        let to = optional(c, &at, "to", rp.to.as_ref(), None, |s| {
            rewrite_target(s).map(Some)
        });
        return Some(Rewrite::ReplacePrefix {
            from: from?,
            to: to?,
        });
    }
    let regex_text = r.regex.as_ref()?;
    let compiled = optional(c, &field, "regex", Some(regex_text), None, |s| {
        regex(s).map(Some)
    });
    let Some(to) = &r.to else {
        c.at(
            spanned.span(),
            format!("{field}.to"),
            "required with regex: the replacement, like \"/$1\"",
        );
        return None;
    };
    let compiled = compiled?;
    optional(c, &field, "to", Some(to), None, |s| {
        rewrite_target(s)?;
        let to = expansion(s, &compiled.0)?;
        Ok(Some(Rewrite::Regex {
            regex: compiled,
            to,
            source: s.into(),
        }))
    })
}

/// The replacement path must start with `/`, so that every rewritten path does.
fn rewrite_target(s: &str) -> Result<Box<str>, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "the rewritten path must start with '/', got {s:?}; a path without '/' cannot be forwarded"
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "expected a path without whitespace, '?' or '#', got {s:?}"
        ));
    }
    Ok(s.into())
}

/// Splits `/x/$1/${name}` into literals and capture groups, checking every
/// group exists; `$$` is a literal `$`.
fn expansion(s: &str, regex: &regex::Regex) -> Result<Box<[Expansion]>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (group, used) = if let Some(stripped) = after.strip_prefix('$') {
            literal.push('$');
            rest = stripped;
            continue;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in {s:?}"))?;
            (&inner[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            if end == 0 {
                return Err(format!(
                    "expected $1, ${{1}} or ${{name}} after '$' in {s:?}; write $$ for a literal $"
                ));
            }
            (&after[..end], end)
        };
        let index = match group.parse::<usize>() {
            Ok(n) if n < regex.captures_len() => n,
            Ok(n) => {
                return Err(format!(
                    "${n} names no group: the regex has {} capture group(s)",
                    regex.captures_len() - 1
                ));
            }
            Err(_) => regex
                .capture_names()
                .position(|name| name == Some(group))
                .ok_or_else(|| format!("${{{group}}} names no group of the regex"))?,
        };
        if !literal.is_empty() {
            parts.push(Expansion::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(Expansion::Group(index));
        rest = &after[used..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Expansion::Literal(literal.into()));
    }
    Ok(parts.into())
}

/// `request_headers` / `response_headers` of a route or backend.
pub(super) fn header_rules(
    c: &mut Collector<'_>,
    path: &str,
    key: &str,
    raw: Option<&Spanned<RawHeaderRules>>,
    direction: Direction,
) -> HeaderRules {
    let Some(raw) = raw else {
        return HeaderRules::default();
    };
    let field = format!("{path}.{key}");
    let r = raw.get_ref();
    let templates = |c: &mut Collector<'_>, verb: &str, map: Option<&BTreeMap<Text, Text>>| {
        let mut out = Vec::new();
        for (name, value) in map.into_iter().flatten() {
            let at = format!("{field}.{verb}.{}", name.get_ref());
            let Some(header) = header_name(c, &at, name) else {
                continue;
            };
            if FORBIDDEN.contains(&header.as_str()) {
                c.at(
                    name.span(),
                    at,
                    format!(
                        "{} is a hop-by-hop or framing header, which the proxy manages; it cannot be set or added",
                        header.as_str()
                    ),
                );
                continue;
            }
            match Template::parse(value.get_ref(), direction) {
                Ok(t) => out.push((header, t)),
                Err(message) => c.at(value.span(), at, message),
            }
        }
        out.into_boxed_slice()
    };
    let set = templates(c, "set", r.set.as_ref());
    let add = templates(c, "add", r.add.as_ref());
    let remove = r
        .remove
        .iter()
        .flatten()
        .filter_map(|name| header_name(c, &format!("{field}.remove"), name))
        .collect();
    HeaderRules { remove, set, add }
}

fn header_name(c: &mut Collector<'_>, field: &str, text: &Text) -> Option<HeaderName> {
    match HeaderName::from_bytes(text.get_ref().as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            c.at(
                text.span(),
                field.to_owned(),
                format!(
                    "expected a header name (letters, digits and !#$%&'*+-.^_`|~), got {:?}",
                    text.get_ref()
                ),
            );
            None
        }
    }
}
