//! What the proxy answers by itself: `redirect` and `respond` routes and the
//! `[errors]` pages. Owns reading their files (relative to the config
//! file's directory) at load time.
//! Invariant: every body is read here into `Bytes`; nothing on the request
//! path reads a file.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use toml::Spanned;

use super::error::Collector;
use super::raw::{RawRedirect, RawRespond, Text};
use super::validate::optional;
use crate::model::{ErrorPage, ErrorPages, Redirect, Respond, Target};

/// Statuses an `[errors]` page may replace: the failures the proxy answers.
const ERROR_STATUSES: [StatusCode; 3] = [
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// `redirect = { to = "https://new.example.com", code = 301, keep_path = true }`.
pub(super) fn redirect(
    c: &mut Collector<'_>,
    path: &str,
    spanned: &Spanned<RawRedirect>,
) -> Target {
    let field = format!("{path}.redirect");
    let r = spanned.get_ref();
    let keep_path = r.keep_path.unwrap_or(false);
    if r.to.is_none() {
        c.at(
            spanned.span(),
            format!("{field}.to"),
            "required key is missing",
        );
    }
    let location = optional(
        c,
        &field,
        "to",
        r.to.as_ref(),
        HeaderValue::from_static("/"),
        |s| {
            let kept = if keep_path {
                s.trim_end_matches('/')
            } else {
                s
            };
            if s.is_empty() {
                return Err("expected a URL or path like \"https://new.example.com\"".to_owned());
            }
            HeaderValue::from_str(kept)
                .map_err(|_| format!("expected a URL without control characters, got {s:?}"))
        },
    );
    let code = match &r.code {
        None => StatusCode::FOUND,
        Some(code) => match *code.get_ref() {
            301 => StatusCode::MOVED_PERMANENTLY,
            302 => StatusCode::FOUND,
            303 => StatusCode::SEE_OTHER,
            307 => StatusCode::TEMPORARY_REDIRECT,
            308 => StatusCode::PERMANENT_REDIRECT,
            n => {
                c.at(
                    code.span(),
                    format!("{field}.code"),
                    format!("expected 301, 302, 303, 307 or 308, got {n}"),
                );
                StatusCode::FOUND
            }
        },
    };
    Target::Redirect(Redirect {
        code,
        location,
        keep_path,
    })
}

/// `respond = { status = 503, body_file = "maintenance.html", content_type = "text/html" }`.
pub(super) fn respond(
    c: &mut Collector<'_>,
    path: &str,
    dir: &Path,
    spanned: &Spanned<RawRespond>,
) -> Target {
    let field = format!("{path}.respond");
    let r = spanned.get_ref();
    let status = match &r.status {
        None => StatusCode::OK,
        Some(n) => match u16::try_from(*n.get_ref())
            .ok()
            .filter(|s| (200..=599).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
        {
            Some(s) => s,
            None => {
                c.at(
                    n.span(),
                    format!("{field}.status"),
                    format!("expected a status in 200..=599, got {}", n.get_ref()),
                );
                StatusCode::OK
            }
        },
    };
    let (body, guessed) = match (&r.body, &r.body_file) {
        (Some(_), Some(file)) => {
            c.at(
                file.span(),
                format!("{field}.body_file"),
                "expected either body or body_file, not both",
            );
            (Bytes::new(), "text/plain; charset=utf-8")
        }
        (Some(text), None) => (
            Bytes::from(text.get_ref().clone()),
            "text/plain; charset=utf-8",
        ),
        (None, Some(file)) => (
            read(c, &format!("{field}.body_file"), dir, file),
            content_type_of(file.get_ref()),
        ),
        (None, None) => (Bytes::new(), "text/plain; charset=utf-8"),
    };
    let content_type = optional(
        c,
        &field,
        "content_type",
        r.content_type.as_ref(),
        HeaderValue::from_static(guessed),
        |s| {
            HeaderValue::from_str(s)
                .map_err(|_| format!("expected a media type like \"text/html\", got {s:?}"))
        },
    );
    Target::Respond(Respond {
        status,
        body,
        content_type,
    })
}

/// `[errors]`: `503 = "errors/503.html"`.
pub(super) fn error_pages(
    c: &mut Collector<'_>,
    dir: &Path,
    raw: Option<&BTreeMap<Text, Text>>,
) -> ErrorPages {
    let mut pages = Vec::new();
    for (status, file) in raw.into_iter().flatten() {
        let field = format!("errors.{}", status.get_ref());
        let Some(code) = ERROR_STATUSES
            .into_iter()
            .find(|s| s.as_str() == status.get_ref())
        else {
            c.at(
                status.span(),
                field,
                format!(
                    "expected 502, 503 or 504 (the failures the proxy answers itself), got {:?}",
                    status.get_ref()
                ),
            );
            continue;
        };
        pages.push(ErrorPage {
            status: code,
            body: read(c, &field, dir, file),
            content_type: HeaderValue::from_static(content_type_of(file.get_ref())),
        });
    }
    ErrorPages {
        pages: pages.into(),
    }
}

/// Reads a file named relative to the config file's directory.
fn read(c: &mut Collector<'_>, field: &str, dir: &Path, file: &Text) -> Bytes {
    let path = dir.join(file.get_ref());
    match std::fs::read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            c.at(
                file.span(),
                field.to_owned(),
                format!("cannot read {}: {e}", path.display()),
            );
            Bytes::new()
        }
    }
}

/// A media type from the file's extension; plain text otherwise.
fn content_type_of(file: &str) -> &'static str {
    let ext = Path::new(file)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}
