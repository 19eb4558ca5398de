//! One ACL criterion (`hdr(host) -i a.com b.com`, `path_beg /api`, ...) as
//! the route matches it stands for; several patterns are alternatives.
//! Invariant: only host, path and method fetches are translated, and each
//! only into matches that select exactly what HAProxy's match selects.

use super::acl::Problem;
use super::emit::Match;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Str,
    Beg,
    End,
    Reg,
}

/// One ACL criterion (`hdr(host) -i a.com b.com`) as alternatives.
pub fn criterion(words: &[String]) -> Result<Vec<Match>, Problem> {
    let Some(fetch) = words.first() else {
        return Err(Problem::Reject("acl without a criterion".into()));
    };
    let (base, method) = match fetch.to_ascii_lowercase().as_str() {
        "hdr(host)" | "req.hdr(host)" => ("host", Method::Str),
        "hdr_beg(host)" => ("host", Method::Beg),
        "hdr_end(host)" => ("host", Method::End),
        "hdr_reg(host)" => ("host", Method::Reg),
        "path" => ("path", Method::Str),
        "path_beg" => ("path", Method::Beg),
        "path_end" => ("path", Method::End),
        "path_reg" => ("path", Method::Reg),
        "method" => ("method", Method::Str),
        other => {
            return Err(Problem::Skip(format!(
                "the fetch `{other}` has no route equivalent (host, path and method only)"
            )));
        }
    };
    let mut method = method;
    let mut ci = false;
    let mut i = 1;
    while let Some(flag) = words.get(i).filter(|w| w.starts_with('-')) {
        i += 1;
        match flag.as_str() {
            "-i" => ci = true,
            "--" => break,
            "-m" => {
                let m = words.get(i).map(String::as_str).unwrap_or("");
                i += 1;
                method = match m {
                    "str" => Method::Str,
                    "beg" => Method::Beg,
                    "end" => Method::End,
                    "reg" => Method::Reg,
                    "" => return Err(Problem::Reject("`-m` without a match method".into())),
                    other => {
                        return Err(Problem::Skip(format!(
                            "match method `-m {other}` has no route equivalent"
                        )));
                    }
                };
            }
            other => {
                return Err(Problem::Skip(format!(
                    "ACL flag `{other}` is not translated"
                )));
            }
        }
    }
    let values = &words[i.min(words.len())..];
    if values.is_empty() {
        return Err(Problem::Skip(
            "an ACL without patterns matches nothing".into(),
        ));
    }
    match base {
        "host" => host(method, ci, values),
        "path" => path(method, ci, values),
        _ => methods(ci, values),
    }
}

fn host(method: Method, ci: bool, values: &[String]) -> Result<Vec<Match>, Problem> {
    if !ci {
        return Err(Problem::Skip(
            "without -i HAProxy compares the Host case-sensitively; Switchyard compares host names in any case (add -i if that is meant)".into(),
        ));
    }
    let mut out = Vec::new();
    for v in values {
        let v = v.to_ascii_lowercase();
        if v.contains(':') {
            return Err(Problem::Skip(format!(
                "host pattern {v:?} has a port; Switchyard matches the host without its port"
            )));
        }
        let host = match method {
            Method::Str if !v.is_empty() && !v.contains('*') => v,
            Method::End if v.len() > 1 && v.starts_with('.') && !v.contains('*') => format!("*{v}"),
            Method::End => {
                return Err(Problem::Skip(format!(
                    "hdr_end(host) {v:?} without a leading dot also matches other domains; Switchyard's `*.` matches whole labels"
                )));
            }
            Method::Beg | Method::Reg | Method::Str => {
                return Err(Problem::Skip(
                    "Switchyard matches hosts exactly or by `*.` suffix, not by prefix or regex"
                        .into(),
                ));
            }
        };
        out.push(Match {
            host: Some(host),
            ..Match::default()
        });
    }
    Ok(out)
}

fn path(method: Method, ci: bool, values: &[String]) -> Result<Vec<Match>, Problem> {
    let regex = |body: String| Match {
        path_regex: Some(if ci { format!("(?i){body}") } else { body }),
        ..Match::default()
    };
    let alternation = || {
        let parts: Vec<String> = values.iter().map(|v| escape(v)).collect();
        match parts.len() {
            1 => parts.concat(),
            _ => format!("(?:{})", parts.join("|")),
        }
    };
    Ok(match method {
        Method::Str if !ci => values
            .iter()
            .map(|v| Match {
                path: Some(v.clone()),
                ..Match::default()
            })
            .collect(),
        Method::Beg if !ci && values.iter().all(|v| v == "/") => vec![Match {
            path_prefix: Some("/".into()),
            ..Match::default()
        }],
        Method::Str => vec![regex(format!("^{}$", alternation()))],
        Method::Beg => vec![regex(format!("^{}", alternation()))],
        Method::End => vec![regex(format!("{}$", alternation()))],
        Method::Reg => {
            for v in values {
                pcre_only(v)?;
            }
            let body = match values {
                [one] => one.clone(),
                _ => values
                    .iter()
                    .map(|v| format!("(?:{v})"))
                    .collect::<Vec<_>>()
                    .join("|"),
            };
            vec![regex(body)]
        }
    })
}

fn methods(ci: bool, values: &[String]) -> Result<Vec<Match>, Problem> {
    if ci
        || values
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(Problem::Skip(
            "methods are matched exactly as upper-case names".into(),
        ));
    }
    Ok(vec![Match {
        methods: values.to_vec(),
        ..Match::default()
    }])
}

/// `s` as a regex matching itself.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Refuses PCRE features the `regex` crate lacks (look-around,
/// back-references, atomic groups, possessive quantifiers).
pub fn pcre_only(re: &str) -> Result<(), Problem> {
    let unsupported = ["(?=", "(?!", "(?<=", "(?<!", "(?>", "*+", "++", "?+"];
    let backref = re
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'\\' && w[1].is_ascii_digit());
    if backref || unsupported.iter().any(|u| re.contains(u)) {
        return Err(Problem::Skip(format!(
            "regex {re:?} uses PCRE features (look-around, back-references) that Switchyard's regexes lack"
        )));
    }
    Ok(())
}
