//! One-line descriptions of routes in config words, for the stats page, the
//! API and `check --diff`:
//! `host=shop.example.com path_prefix=/api cookie beta=yes -> users`.
//! Owns `RouteDescription`, `RouteConditions` and `RouteAction`.
//! Invariant: two routes that differ in any condition or action describe
//! differently.

use std::fmt;
use std::time::Duration;

use super::{Backend, Route, Target};
use crate::model::{HostMatch, Rewrite};

/// The route's conditions, then `->` and its action.
pub struct RouteDescription<'a> {
    pub route: &'a Route,
    /// To name the backends a route's ids point at.
    pub backends: &'a [Backend],
}

/// The conditions alone: `host=a.com path_prefix=/api methods=GET,HEAD`.
pub struct RouteConditions<'a>(pub &'a Route);

/// The target and what is done on the way:
/// `users rewrite strip_prefix=/api request_headers set X-Env=prod`.
pub struct RouteAction<'a> {
    pub route: &'a Route,
    pub backends: &'a [Backend],
}

impl Route {
    /// `conditions -> action`, naming backends from `backends`.
    pub fn describe<'a>(&'a self, backends: &'a [Backend]) -> RouteDescription<'a> {
        RouteDescription {
            route: self,
            backends,
        }
    }
}

impl fmt::Display for RouteDescription<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = RouteAction {
            route: self.route,
            backends: self.backends,
        };
        write!(f, "{} -> {action}", RouteConditions(self.route))
    }
}

impl fmt::Display for RouteConditions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let mut words = Words::new(f);
        match &r.host {
            Some(HostMatch::Exact(h)) => words.word(format_args!("host={h}"))?,
            Some(HostMatch::Suffix(s)) => words.word(format_args!("host=*{s}"))?,
            None => {}
        }
        if let Some(p) = &r.path_prefix {
            words.word(format_args!("path_prefix={p}"))?;
        }
        if let Some(p) = &r.path {
            words.word(format_args!("path={p}"))?;
        }
        if let Some(re) = &r.path_regex {
            words.word(format_args!("path_regex={}", re.0.as_str()))?;
        }
        if !r.methods.is_empty() {
            let methods: Vec<&str> = r.methods.iter().map(http::Method::as_str).collect();
            words.word(format_args!("methods={}", methods.join(",")))?;
        }
        for h in &r.headers {
            let value = h.value.as_ref().map_or("*", |v| v.to_str().unwrap_or("?"));
            words.word(format_args!("header {}={value}", h.name))?;
        }
        for (name, value) in &r.cookies {
            words.word(format_args!("cookie {name}={value}"))?;
        }
        for (name, value) in &r.query {
            words.word(format_args!("query {name}={value}"))?;
        }
        Ok(())
    }
}

impl fmt::Display for RouteAction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.route;
        let name = |id: super::BackendId| self.backends.get(id.0).map_or("?", |b| &*b.name);
        match &r.target {
            Target::Backend(id) => f.write_str(name(*id))?,
            Target::Split(parts) => {
                f.write_str("split")?;
                for (id, weight) in parts {
                    write!(f, " {}={weight}", name(*id))?;
                }
            }
            Target::Redirect(redirect) => {
                write!(
                    f,
                    "redirect {} {}",
                    redirect.code.as_u16(),
                    redirect.location.to_str().unwrap_or("?")
                )?;
                if redirect.keep_path {
                    f.write_str(" keep_path")?;
                }
            }
            Target::Respond(respond) => write!(
                f,
                "respond {} ({} bytes of {})",
                respond.status.as_u16(),
                respond.body.len(),
                respond.content_type.to_str().unwrap_or("?")
            )?,
            Target::Deny => f.write_str("deny")?,
        }
        match &r.rewrite {
            Some(Rewrite::StripPrefix(p)) => write!(f, " rewrite strip_prefix={p}")?,
            Some(Rewrite::ReplacePrefix { from, to }) => {
                write!(f, " rewrite replace_prefix from={from} to={to}")?;
            }
            Some(Rewrite::Regex { regex, source, .. }) => {
                write!(f, " rewrite regex={} to={source}", regex.0.as_str())?;
            }
            None => {}
        }
        if !r.request_headers.is_empty() {
            write!(f, " request_headers {}", r.request_headers)?;
        }
        if !r.response_headers.is_empty() {
            write!(f, " response_headers {}", r.response_headers)?;
        }
        if let Some(t) = r.response_timeout {
            write!(f, " timeouts.response={}", DurationText(t))?;
        }
        Ok(())
    }
}

/// `120s`, `1500ms`.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

/// Writes words separated by single spaces.
struct Words<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    first: bool,
}

impl<'a, 'b> Words<'a, 'b> {
    fn new(f: &'a mut fmt::Formatter<'b>) -> Self {
        Words { f, first: true }
    }

    fn word(&mut self, word: fmt::Arguments<'_>) -> fmt::Result {
        if !self.first {
            self.f.write_str(" ")?;
        }
        self.first = false;
        self.f.write_fmt(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendId, HeaderRules, Template};

    #[test]
    fn describes_in_config_words() {
        let mut route = Route::new(Target::Backend(BackendId(0)));
        route.host = Some(HostMatch::Exact("shop.example.com".into()));
        route.path_prefix = Some("/api".into());
        route.cookies = Box::new([("beta".into(), "yes".into())]);
        route.rewrite = Some(Rewrite::StripPrefix("/api".into()));
        route.request_headers = HeaderRules {
            set: Box::new([(
                http::HeaderName::from_static("x-env"),
                Template::parse("prod", crate::model::Direction::Request).expect("template"),
            )]),
            ..HeaderRules::default()
        };
        route.response_timeout = Some(Duration::from_secs(120));
        let conditions = RouteConditions(&route).to_string();
        assert_eq!(
            conditions,
            "host=shop.example.com path_prefix=/api cookie beta=yes"
        );
        let action = RouteAction {
            route: &route,
            backends: &[],
        }
        .to_string();
        assert_eq!(
            action,
            "? rewrite strip_prefix=/api request_headers set x-env=prod timeouts.response=120s"
        );
    }
}
