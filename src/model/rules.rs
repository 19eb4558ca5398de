//! Header rules (`request_headers`, `response_headers`) and their value
//! templates. Owns `HeaderRules`, `Template`, `Variable` and how a rule set
//! is applied to a header map.
//! Invariant: names, fixed values and templates are built at load (a
//! template is pre-split into literal parts and variables); applying a rule
//! set allocates only for a templated value; nothing here does IO.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// What to do to the headers of a message, in this order: remove, set
/// (replacing any value), add (appending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub remove: Box<[HeaderName]>,
    pub set: Box<[(HeaderName, Template)]>,
    pub add: Box<[(HeaderName, Template)]>,
}

/// A header value, fixed or with variables filled in per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Fixed(HeaderValue),
    Parts(Box<[Part]>),
}

/// A piece of a templated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Box<str>),
    Var(Variable),
}

/// A variable a header value may use, written `{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// The client's address (the rightmost untrusted one of XFF + peer).
    ClientIp,
    /// The request id (empty when request ids are off).
    RequestId,
    /// The request's `Host` as the client sent it.
    Host,
    Frontend,
    Backend,
    /// The server that answered; only in `response_headers`.
    Server,
}

impl Variable {
    pub const ALL: [Variable; 6] = [
        Variable::ClientIp,
        Variable::RequestId,
        Variable::Host,
        Variable::Frontend,
        Variable::Backend,
        Variable::Server,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variable::ClientIp => "client_ip",
            Variable::RequestId => "request_id",
            Variable::Host => "host",
            Variable::Frontend => "frontend",
            Variable::Backend => "backend",
            Variable::Server => "server",
        }
    }
}

/// Where a template is used: `{server}` is known only for responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Template {
    /// Parses `prefix-{client_ip}`: `{name}` is a variable, `{{` and `}}`
    /// are literal braces. Errors are lowercase and say what is expected.
    pub fn parse(text: &str, direction: Direction) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if rest[i..].starts_with("{{") || rest[i..].starts_with("}}") {
                literal.push_str(&rest[i..=i]);
                rest = &after[1..];
                continue;
            }
            if rest[i..].starts_with('}') {
                return Err(format!(
                    "unmatched '}}' in {text:?}; write '}}}}' for a literal brace"
                ));
            }
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "unclosed '{{' in {text:?}; write '{{{{' for a literal brace"
                ));
            };
            let name = &after[..end];
            let var = Variable::ALL
                .into_iter()
                .find(|v| v.name() == name)
                .ok_or_else(|| unknown_variable(name))?;
            if var == Variable::Server && direction == Direction::Request {
                return Err(
                    "{server} is known only in response_headers; the server is not chosen yet"
                        .to_owned(),
                );
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        for part in &parts {
            if let Part::Literal(l) = part {
                check_value(l)?;
            }
        }
        check_value(&literal)?;
        if parts.is_empty() {
            let value = HeaderValue::from_str(&literal).map_err(|_| invalid_value(&literal))?;
            return Ok(Template::Fixed(value));
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Template::Parts(parts.into()))
    }

    /// The value for one message; `None` when a variable's value makes it an
    /// invalid header value (never for the values the proxy provides).
    pub fn render<'a>(&self, value_of: &impl Fn(Variable) -> &'a str) -> Option<HeaderValue> {
        match self {
            Template::Fixed(v) => Some(v.clone()),
            Template::Parts(parts) => {
                let mut out = Vec::with_capacity(64);
                for part in parts {
                    match part {
                        Part::Literal(l) => out.extend_from_slice(l.as_bytes()),
                        Part::Var(v) => out.extend_from_slice(value_of(*v).as_bytes()),
                    }
                }
                HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
            }
        }
    }
}

fn unknown_variable(name: &str) -> String {
    let known: Vec<String> = Variable::ALL
        .iter()
        .map(|v| format!("{{{}}}", v.name()))
        .collect();
    format!(
        "unknown variable {{{name}}}; expected one of {}",
        known.join(", ")
    )
}

fn check_value(s: &str) -> Result<(), String> {
    match HeaderValue::from_str(s) {
        Ok(_) => Ok(()),
        Err(_) => Err(invalid_value(s)),
    }
}

fn invalid_value(s: &str) -> String {
    format!("{s:?} is not a valid header value; expected visible ASCII, spaces or tabs")
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Removes, sets, then adds; a template whose value is invalid is skipped.
    pub fn apply<'a>(&self, headers: &mut HeaderMap, value_of: &impl Fn(Variable) -> &'a str) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, template) in &self.set {
            if let Some(value) = template.render(value_of) {
                headers.insert(name.clone(), value);
            }
        }
        for (name, template) in &self.add {
            if let Some(value) = template.render(value_of) {
                headers.append(name.clone(), value);
            }
        }
    }
}

/// The template as written in the file.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = |f: &mut fmt::Formatter<'_>, s: &str| {
            f.write_str(&s.replace('{', "{{").replace('}', "}}"))
        };
        match self {
            Template::Fixed(v) => escape(f, v.to_str().unwrap_or("?")),
            Template::Parts(parts) => {
                for part in parts {
                    match part {
                        Part::Literal(l) => escape(f, l)?,
                        Part::Var(v) => write!(f, "{{{}}}", v.name())?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// `set X-Env=prod add X-A={client_ip} remove X-Debug`.
impl fmt::Display for HeaderRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (verb, list) in [("set", &self.set), ("add", &self.add)] {
            if !list.is_empty() {
                write!(f, "{sep}{verb}")?;
                for (name, template) in list.iter() {
                    write!(f, " {name}={template}")?;
                }
                sep = " ";
            }
        }
        if !self.remove.is_empty() {
            write!(f, "{sep}remove")?;
            for name in &self.remove {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, direction: Direction, expected: Result<&str, &str>) {
        let got = Template::parse(text, direction).map(|t| {
            let value = t.render(&|v| match v {
                Variable::ClientIp => "10.0.0.1",
                Variable::RequestId => "id",
                Variable::Host => "h",
                Variable::Frontend => "web",
                Variable::Backend => "users",
                Variable::Server => "u1",
            });
            value.map_or_else(String::new, |v| v.to_str().unwrap_or("?").to_owned())
        });
        match (&got, expected) {
            (Ok(v), Ok(e)) => assert_eq!(v, e, "{text}"),
            (Err(m), Err(e)) => assert!(m.contains(e), "{text}: {m}"),
            _ => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn templates() {
        use Direction::{Request, Response};
        check("prod", Request, Ok("prod"));
        check("{client_ip}", Request, Ok("10.0.0.1"));
        check(
            "{frontend}/{backend} {host} {request_id}",
            Request,
            Ok("web/users h id"),
        );
        check("by-{server}", Response, Ok("by-u1"));
        check(
            "by-{server}",
            Request,
            Err("known only in response_headers"),
        );
        check("{{x}}", Request, Ok("{x}"));
        check("{nope}", Request, Err("unknown variable {nope}"));
        check("{client_ip", Request, Err("unclosed '{'"));
        check("a}", Request, Err("unmatched '}'"));
        check("a\u{1}", Request, Err("not a valid header value"));
    }

    #[test]
    fn rules_apply_remove_then_set_then_add() {
        let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).expect("name");
        let t = |s: &str| Template::parse(s, Direction::Request).expect("template");
        let rules = HeaderRules {
            remove: Box::new([name("x-debug")]),
            set: Box::new([(name("x-env"), t("prod"))]),
            add: Box::new([(name("x-env"), t("{client_ip}"))]),
        };
        let mut h = HeaderMap::new();
        h.insert("x-debug", HeaderValue::from_static("1"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        rules.apply(&mut h, &|_| "1.2.3.4");
        assert!(h.get("x-debug").is_none());
        let env: Vec<_> = h.get_all("x-env").iter().collect();
        assert_eq!(env, ["prod", "1.2.3.4"]);
        assert_eq!(
            rules.to_string(),
            "set x-env=prod add x-env={client_ip} remove x-debug"
        );
    }
}
