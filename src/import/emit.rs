//! The translated configuration as plain values, and its rendering as
//! Switchyard TOML text in a fixed layout: the list of lines not translated,
//! then `[global]`, `[admin]`, `[errors]`, frontends with their routes, and
//! backends with their servers. Keys are written only when the HAProxy file
//! set them, so Switchyard's defaults (which are HAProxy's where they agree)
//! apply to the rest.
//! Invariant: rendering is deterministic and every string is a valid TOML
//! basic string.

use std::collections::BTreeMap;
use std::fmt;

use super::Skipped;

#[derive(Debug, Default)]
pub struct Output {
    pub global: Global,
    pub admin: Option<Admin>,
    /// Status -> file.
    pub errors: BTreeMap<u16, String>,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Default)]
pub struct Global {
    pub grace: Option<String>,
    pub max_connections: Option<u64>,
    pub request_id_header: Option<String>,
}

#[derive(Debug, Default)]
pub struct Admin {
    pub listen: Option<String>,
    /// Comment lines written under the table.
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Frontend {
    pub name: String,
    pub listen: Option<String>,
    pub certs: Vec<String>,
    pub hsts: Option<String>,
    pub redirect_https: bool,
    pub default_backend: Option<String>,
    pub forward_headers: Option<bool>,
    pub client_header: Option<String>,
    pub idle: Option<String>,
    pub routes: Vec<Route>,
}

/// Conditions of one route; all present must hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Match {
    pub host: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Backend(String),
    Redirect {
        to: String,
        code: Option<u16>,
        keep_path: bool,
    },
    Respond {
        status: u16,
        body: Option<String>,
        body_file: Option<String>,
        content_type: Option<String>,
    },
    Deny,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub matches: Match,
    pub action: Action,
    pub rewrite: Option<(String, String)>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Backend {
    pub name: String,
    pub balance: Option<String>,
    pub host: Option<String>,
    pub retries: Option<u32>,
    pub connect: Option<String>,
    pub response: Option<String>,
    pub tunnel: Option<String>,
    pub cookie: Option<String>,
    pub check: Option<Check>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub servers: Vec<Server>,
    pub discover: Option<Discover>,
}

/// A `server-template`: servers from the records of a name.
#[derive(Debug, Clone)]
pub struct Discover {
    /// `users.local:8080`.
    pub dns: String,
    pub max: u32,
    /// The `server-template` line's own names, as a comment (`srv1` to `srv3`).
    pub haproxy_names: String,
}

#[derive(Debug, Default, Clone)]
pub struct Check {
    pub is_http: bool,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

#[derive(Debug, Default, Clone)]
pub struct Server {
    pub name: String,
    pub address: String,
    pub weight: Option<u32>,
    pub is_maint: bool,
    pub is_backup: bool,
}

/// The TOML text of `output`, headed by the skipped lines of `file`.
pub fn render(output: &Output, file: &str, skipped: &[Skipped]) -> String {
    Toml {
        output,
        file,
        skipped,
    }
    .to_string()
}

struct Toml<'a> {
    output: &'a Output,
    file: &'a str,
    skipped: &'a [Skipped],
}

impl fmt::Display for Toml<'_> {
    fn fmt(&self, t: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (output, file, skipped) = (self.output, self.file, self.skipped);
        writeln!(t, "# Translated from {file} by `switchyard import`.")?;
        if skipped.is_empty() {
            t.write_str("# Every line was translated.\n")?;
        } else {
            writeln!(t, "# Not translated ({}):", skipped.len())?;
            for s in skipped {
                writeln!(t, "#   line {}: {}: {}", s.line, s.text, s.reason)?;
            }
        }
        global(t, &output.global)?;
        if let Some(admin) = &output.admin {
            t.write_str("\n[admin]\n")?;
            opt(t, "", "listen", admin.listen.as_deref())?;
            for note in &admin.notes {
                writeln!(t, "# {note}")?;
            }
        }
        if !output.errors.is_empty() {
            t.write_str("\n[errors]\n")?;
            t.write_str(
            "# HAProxy's errorfiles hold a whole HTTP response; Switchyard's pages are the body only:\n\
             # remove the status line and headers from these files.\n",
            )?;
            for (status, file) in &output.errors {
                writeln!(t, "{status} = {}", quote(file))?;
            }
        }
        for f in &output.frontends {
            frontend(t, f)?;
        }
        for b in &output.backends {
            backend(t, b)?;
        }
        Ok(())
    }
}

fn global(t: &mut fmt::Formatter<'_>, g: &Global) -> fmt::Result {
    if g.grace.is_none() && g.max_connections.is_none() && g.request_id_header.is_none() {
        return Ok(());
    }
    t.write_str("\n[global]\n")?;
    opt(t, "", "grace", g.grace.as_deref())?;
    if let Some(n) = g.max_connections {
        writeln!(t, "max_connections = {n}")?;
    }
    if let Some(h) = &g.request_id_header {
        writeln!(t, "request_id = {{ header = {} }}", quote(h))?;
    }
    Ok(())
}

fn frontend(t: &mut fmt::Formatter<'_>, f: &Frontend) -> fmt::Result {
    t.write_str("\n[[frontend]]\n")?;
    writeln!(t, "name = {}", quote(&f.name))?;
    opt(t, "", "listen", f.listen.as_deref())?;
    if !f.certs.is_empty() {
        let certs: Vec<String> = f
            .certs
            .iter()
            .map(|c| format!("{{ cert = {} }}", quote(c)))
            .collect();
        writeln!(t, "tls = {{ certs = [{}] }}", certs.join(", "))?;
    }
    opt(t, "", "hsts", f.hsts.as_deref())?;
    if f.redirect_https {
        t.write_str("redirect_https = true\n")?;
    }
    opt(t, "", "default_backend", f.default_backend.as_deref())?;
    if let Some(b) = f.forward_headers {
        writeln!(t, "forward_headers = {b}")?;
    }
    let timeouts = inline(&[
        ("client_header", f.client_header.as_deref().map(quote)),
        ("idle", f.idle.as_deref().map(quote)),
    ]);
    opt_raw(t, "", "timeouts", timeouts)?;
    for r in &f.routes {
        route(t, r)?;
    }
    Ok(())
}

fn route(t: &mut fmt::Formatter<'_>, r: &Route) -> fmt::Result {
    const IN: &str = "  ";
    t.write_str("\n  [[frontend.route]]\n")?;
    let m = &r.matches;
    opt(t, IN, "host", m.host.as_deref())?;
    opt(t, IN, "path", m.path.as_deref())?;
    opt(t, IN, "path_prefix", m.path_prefix.as_deref())?;
    opt(t, IN, "path_regex", m.path_regex.as_deref())?;
    if !m.methods.is_empty() {
        let methods: Vec<String> = m.methods.iter().map(|s| quote(s)).collect();
        writeln!(t, "{IN}methods = [{}]", methods.join(", "))?;
    }
    match &r.action {
        Action::Backend(b) => opt(t, IN, "backend", Some(b))?,
        Action::Redirect {
            to,
            code,
            keep_path,
        } => {
            let fields = inline(&[
                ("to", Some(quote(to))),
                ("code", code.map(|c| c.to_string())),
                ("keep_path", keep_path.then(|| "true".to_owned())),
            ]);
            opt_raw(t, IN, "redirect", fields)?;
        }
        Action::Respond {
            status,
            body,
            body_file,
            content_type,
        } => {
            let fields = inline(&[
                ("status", Some(status.to_string())),
                ("body", body.as_deref().map(quote)),
                ("body_file", body_file.as_deref().map(quote)),
                ("content_type", content_type.as_deref().map(quote)),
            ]);
            opt_raw(t, IN, "respond", fields)?;
        }
        Action::Deny => t.write_str("  deny = true\n")?,
    }
    if let Some((regex, to)) = &r.rewrite {
        writeln!(
            t,
            "{IN}rewrite = {{ regex = {}, to = {} }}",
            quote(regex),
            quote(to)
        )?;
    }
    headers(t, IN, "request_headers", &r.request_headers)?;
    headers(t, IN, "response_headers", &r.response_headers)
}

fn backend(t: &mut fmt::Formatter<'_>, b: &Backend) -> fmt::Result {
    t.write_str("\n[[backend]]\n")?;
    writeln!(t, "name = {}", quote(&b.name))?;
    opt(t, "", "balance", b.balance.as_deref())?;
    opt(t, "", "host", b.host.as_deref())?;
    if let Some(n) = b.retries {
        writeln!(t, "retries = {n}")?;
    }
    let timeouts = inline(&[
        ("connect", b.connect.as_deref().map(quote)),
        ("response", b.response.as_deref().map(quote)),
        ("tunnel", b.tunnel.as_deref().map(quote)),
    ]);
    opt_raw(t, "", "timeouts", timeouts)?;
    if let Some(c) = &b.cookie {
        writeln!(t, "cookie = {{ name = {} }}", quote(c))?;
    }
    if let Some(c) = &b.check {
        let fields = inline(&[
            ("kind", Some(quote(if c.is_http { "http" } else { "tcp" }))),
            ("method", c.method.as_deref().map(quote)),
            ("path", c.path.as_deref().map(quote)),
            ("host", c.host.as_deref().map(quote)),
            ("expect", c.expect.as_deref().map(quote)),
            ("interval", c.interval.as_deref().map(quote)),
            ("timeout", c.timeout.as_deref().map(quote)),
            ("rise", c.rise.map(|n| n.to_string())),
            ("fall", c.fall.map(|n| n.to_string())),
        ]);
        opt_raw(t, "", "check", fields)?;
    }
    headers(t, "", "request_headers", &b.request_headers)?;
    headers(t, "", "response_headers", &b.response_headers)?;
    if let Some(d) = &b.discover {
        let label = d.dns.split(['.', ':']).next().unwrap_or_default();
        writeln!(
            t,
            "# server-template: HAProxy's {} are named {label}-1 to {label}-{} here",
            d.haproxy_names, d.max
        )?;
        writeln!(
            t,
            "discover = {{ dns = {}, max = {} }}",
            quote(&d.dns),
            d.max
        )?;
    }
    for s in &b.servers {
        t.write_str("\n  [[backend.server]]\n")?;
        writeln!(t, "  name = {}", quote(&s.name))?;
        writeln!(t, "  address = {}", quote(&s.address))?;
        if let Some(w) = s.weight {
            writeln!(t, "  weight = {w}")?;
        }
        if s.is_maint {
            t.write_str("  state = \"maint\"\n")?;
        }
        if s.is_backup {
            t.write_str("  backup = true\n")?;
        }
    }
    Ok(())
}

fn headers(t: &mut fmt::Formatter<'_>, indent: &str, key: &str, ops: &HeaderOps) -> fmt::Result {
    if ops.is_empty() {
        return Ok(());
    }
    let table = |pairs: &[(String, String)]| {
        (!pairs.is_empty()).then(|| {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        })
    };
    let remove = (!ops.remove.is_empty()).then(|| {
        let names: Vec<String> = ops.remove.iter().map(|s| quote(s)).collect();
        format!("[{}]", names.join(", "))
    });
    let fields = inline(&[
        ("set", table(&ops.set)),
        ("add", table(&ops.add)),
        ("remove", remove),
    ]);
    opt_raw(t, indent, key, fields)
}

/// `{ a = 1, b = "x" }` of the present fields, or `None` when none is.
fn inline(fields: &[(&str, Option<String>)]) -> Option<String> {
    let present: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {v}")))
        .collect();
    (!present.is_empty()).then(|| format!("{{ {} }}", present.join(", ")))
}

fn opt(t: &mut fmt::Formatter<'_>, indent: &str, key: &str, value: Option<&str>) -> fmt::Result {
    opt_raw(t, indent, key, value.map(quote))
}

fn opt_raw(
    t: &mut fmt::Formatter<'_>,
    indent: &str,
    key: &str,
    value: Option<String>,
) -> fmt::Result {
    if let Some(v) = value {
        writeln!(t, "{indent}{key} = {v}")?;
    }
    Ok(())
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => {
                q.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
