//! Health-check lines: `option httpchk` (with the old one-line form whose
//! version word carries `\r\n`-separated headers, as in
//! `option httpchk HEAD / HTTP/1.1\r\nHost:\ example.com`) and
//! `http-check send` / `http-check expect status`.
//! Invariant: a check is filled only with what Switchyard's HTTP check does
//! (one request, a method among GET, HEAD and OPTIONS, a status range).

use super::Context;
use super::emit::Check;
use super::lexer::Line;

/// Reads `option httpchk [<method>] [<uri>] [<version>]`; HAProxy's default
/// is `OPTIONS / HTTP/1.0`.
pub fn httpchk(cx: &mut Context, line: &Line) -> Option<Check> {
    let args = &line.words[2..];
    let (method, uri, version) = match args {
        [] => ("OPTIONS", "/", None),
        [uri] => ("OPTIONS", uri.as_str(), None),
        [method, uri] => (method.as_str(), uri.as_str(), None),
        [method, uri, version] => (method.as_str(), uri.as_str(), Some(version.as_str())),
        _ => {
            cx.skip(
                line,
                "more than method, URI and version: quote or escape the spaces",
            );
            return None;
        }
    };
    let mut check = Check {
        is_http: true,
        ..Check::default()
    };
    if let Err(e) = set_method_and_path(&mut check, method, uri) {
        cx.skip(line, e);
        return None;
    }
    // The old one-line form: the version word carries "\r\n"-separated headers.
    let mut headers = version.unwrap_or("").split("\r\n").skip(1);
    for header in headers.by_ref() {
        if header.is_empty() {
            continue;
        }
        match header.split_once(':') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("host") => {
                check.host = Some(value.trim().to_owned());
            }
            _ => cx.skip(line, format!("check header `{header}` is not translated")),
        }
    }
    Some(check)
}

fn set_method_and_path(check: &mut Check, method: &str, uri: &str) -> Result<(), String> {
    if !matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return Err(format!(
            "check method {method}: Switchyard checks with GET, HEAD or OPTIONS"
        ));
    }
    if !uri.starts_with('/') {
        return Err(format!("check URI {uri:?} does not start with /"));
    }
    check.method = Some(method.to_owned());
    check.path = Some(uri.to_owned());
    Ok(())
}

/// Applies one `http-check` line; whether it was translated.
pub fn http_check_line(cx: &mut Context, line: &Line, check: &mut Check) -> bool {
    match line.word(1) {
        "send" => {
            let mut words = line.words[2..].iter();
            let (mut method, mut uri) = (check.method.clone(), check.path.clone());
            while let Some(key) = words.next() {
                let value = words.next().cloned().unwrap_or_default();
                match key.as_str() {
                    "meth" => method = Some(value),
                    "uri" => uri = Some(value),
                    "ver" => {}
                    "hdr" => {
                        let header_value = words.next().cloned().unwrap_or_default();
                        if value.eq_ignore_ascii_case("host") {
                            check.host = Some(header_value);
                        } else {
                            cx.skip(line, format!("check header `{value}` is not translated"));
                        }
                    }
                    other => {
                        cx.skip(line, format!("`http-check send {other}` is not translated"));
                        return false;
                    }
                }
            }
            let (method, uri) = (
                method.unwrap_or_else(|| "OPTIONS".into()),
                uri.unwrap_or_else(|| "/".into()),
            );
            match set_method_and_path(check, &method, &uri) {
                Ok(()) => true,
                Err(e) => {
                    cx.skip(line, e);
                    false
                }
            }
        }
        "expect" => {
            let args: Vec<&str> = line.words[2..].iter().map(String::as_str).collect();
            let expect = match args.as_slice() {
                ["status", codes] => status_range(codes),
                _ => None,
            };
            match expect {
                Some(e) => {
                    check.expect = Some(e);
                    true
                }
                None => {
                    cx.skip(
                        line,
                        "only `http-check expect status NNN` or `NNN-NNN` is translated",
                    );
                    false
                }
            }
        }
        _ => {
            cx.skip(
                line,
                "not translated; Switchyard's check sends one request and reads its status",
            );
            false
        }
    }
}

fn status_range(codes: &str) -> Option<String> {
    let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    match codes.split_once('-') {
        None => code(codes).map(|c| c.to_string()),
        Some((a, b)) => match (code(a), code(b)) {
            (Some(a), Some(b)) if a <= b => Some(format!("{a}-{b}")),
            _ => None,
        },
    }
}
