//! ACLs and `if`/`unless` conditions, turned into route matches. A condition
//! is read as HAProxy does: terms joined by `||` (or `or`), each term a
//! conjunction of ACL names or anonymous `{ ... }` ACLs, `!` negating one.
//! A named ACL declared on several lines matches when any line does.
//! Invariant: a condition becomes route matches only when they select
//! exactly the requests HAProxy's condition selects; anything else is a
//! `Problem::Skip` with the reason, never an approximation.

use std::collections::BTreeMap;

use super::criterion::criterion;
use super::emit::Match;

/// Most routes one condition may expand into (the alternatives of ORed
/// host values multiply).
const MAX_ALTERNATIVES: usize = 16;

/// Why a condition did not become routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// HAProxy itself refuses this.
    Reject(String),
    /// Valid, but Switchyard's routes cannot say it exactly.
    Skip(String),
}

/// The ACLs of one proxy section: name -> each declaring line's number and
/// its words after the name.
#[derive(Debug, Default)]
pub struct Acls {
    declared: BTreeMap<String, Vec<(usize, Vec<String>)>>,
}

/// One ACL reference in a condition.
#[derive(Debug, Clone)]
enum Term {
    Named { name: String, negated: bool },
    Inline { words: Vec<String>, negated: bool },
}

impl Acls {
    pub fn declare(&mut self, line: usize, name: &str, criterion: Vec<String>) {
        self.declared
            .entry(name.to_owned())
            .or_default()
            .push((line, criterion));
    }

    /// The lines declaring `name`.
    pub fn lines_of(&self, name: &str) -> Vec<usize> {
        self.declared
            .get(name)
            .map(|v| v.iter().map(|(l, _)| *l).collect())
            .unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.declared.keys()
    }

    /// The route matches for `keyword` (`if` or `unless`) and the words after
    /// it: any of them must hold. An empty list never matches; a
    /// `Match::default()` always does. Also returns the named ACLs used.
    pub fn resolve(
        &self,
        keyword: &str,
        words: &[String],
    ) -> Result<(Vec<Match>, Vec<String>), Problem> {
        let dnf = parse(words).map_err(Problem::Reject)?;
        let mut used = Vec::new();
        for term in dnf.iter().flatten() {
            if let Term::Named { name, .. } = term {
                if !self.declared.contains_key(name) && predefined(name).is_none() {
                    return Err(Problem::Reject(format!("no such ACL: {name}")));
                }
                used.push(name.clone());
            }
        }
        if keyword == "unless" {
            return Err(Problem::Skip(
                "`unless` negates the condition; routes match positively only".into(),
            ));
        }
        let mut alternatives = Vec::new();
        for conjunction in &dnf {
            let mut product = vec![Match::default()];
            for term in conjunction {
                let options = self.term(term)?;
                let mut next = Vec::new();
                for a in &product {
                    for b in &options {
                        if let Some(m) = merge(a, b)? {
                            next.push(m);
                        }
                    }
                }
                product = next;
                if product.len() > MAX_ALTERNATIVES {
                    return Err(Problem::Skip(format!(
                        "the condition expands to more than {MAX_ALTERNATIVES} routes"
                    )));
                }
            }
            alternatives.extend(product);
        }
        if alternatives.len() > MAX_ALTERNATIVES {
            return Err(Problem::Skip(format!(
                "the condition expands to more than {MAX_ALTERNATIVES} routes"
            )));
        }
        Ok((alternatives, used))
    }

    fn term(&self, term: &Term) -> Result<Vec<Match>, Problem> {
        let (negated, options) = match term {
            Term::Named { name, negated } => {
                let options = match predefined(name) {
                    Some(p) => p,
                    None => {
                        let mut all = Vec::new();
                        for (_, words) in self.declared.get(name).into_iter().flatten() {
                            all.extend(criterion(words)?);
                        }
                        all
                    }
                };
                (*negated, options)
            }
            Term::Inline { words, negated } => (*negated, criterion(words)?),
        };
        if negated {
            return Err(Problem::Skip(
                "a negated ACL (`!`) cannot be expressed as a route match".into(),
            ));
        }
        Ok(options)
    }
}

/// HAProxy's predefined ACLs that have a route equivalent.
fn predefined(name: &str) -> Option<Vec<Match>> {
    let methods = |m: &[&str]| {
        Some(vec![Match {
            methods: m.iter().map(|s| (*s).to_owned()).collect(),
            ..Match::default()
        }])
    };
    match name {
        "TRUE" | "HTTP" => Some(vec![Match::default()]),
        "FALSE" => Some(Vec::new()),
        "METH_GET" => methods(&["GET", "HEAD"]),
        "METH_HEAD" => methods(&["HEAD"]),
        "METH_POST" => methods(&["POST"]),
        "METH_PUT" => methods(&["PUT"]),
        "METH_DELETE" => methods(&["DELETE"]),
        "METH_OPTIONS" => methods(&["OPTIONS"]),
        "METH_TRACE" => methods(&["TRACE"]),
        "METH_CONNECT" => methods(&["CONNECT"]),
        _ => None,
    }
}

/// Both matches at once, `None` when no request can satisfy both.
fn merge(a: &Match, b: &Match) -> Result<Option<Match>, Problem> {
    let mut m = a.clone();
    let path_kinds = |m: &Match| {
        usize::from(m.path.is_some())
            + usize::from(m.path_prefix.is_some())
            + usize::from(m.path_regex.is_some())
    };
    match (&a.host, &b.host) {
        (Some(x), Some(y)) if x != y => {
            if !x.starts_with('*') && !y.starts_with('*') {
                return Ok(None);
            }
            return Err(Problem::Skip(
                "two different host conditions in one rule".into(),
            ));
        }
        (None, Some(y)) => m.host = Some(y.clone()),
        _ => {}
    }
    if path_kinds(a) + path_kinds(b) > 1 && (a.path != b.path || path_kinds(a) != 1) {
        if let (Some(x), Some(y)) = (&a.path, &b.path) {
            if x != y {
                return Ok(None);
            }
        }
        return Err(Problem::Skip(
            "two path conditions in one rule; a route has one".into(),
        ));
    }
    m.path = m.path.or_else(|| b.path.clone());
    m.path_prefix = m.path_prefix.or_else(|| b.path_prefix.clone());
    m.path_regex = m.path_regex.or_else(|| b.path_regex.clone());
    match (a.methods.is_empty(), b.methods.is_empty()) {
        (_, true) => {}
        (true, false) => m.methods = b.methods.clone(),
        (false, false) => {
            m.methods.retain(|x| b.methods.contains(x));
            if m.methods.is_empty() {
                return Ok(None);
            }
        }
    }
    Ok(Some(m))
}

/// The condition words as disjunctive normal form.
fn parse(words: &[String]) -> Result<Vec<Vec<Term>>, String> {
    if words.is_empty() {
        return Err("missing condition after `if`/`unless`".into());
    }
    let mut dnf = vec![Vec::new()];
    let mut i = 0;
    while i < words.len() {
        let mut word = words[i].as_str();
        i += 1;
        if word == "||" || word == "or" {
            if dnf.last().is_some_and(Vec::is_empty) {
                return Err("`||` without a term before it".into());
            }
            dnf.push(Vec::new());
            continue;
        }
        let mut negated = false;
        while let Some(rest) = word.strip_prefix('!') {
            negated = !negated;
            word = rest;
            if word.is_empty() {
                word = words.get(i).map(String::as_str).unwrap_or("");
                i += 1;
            }
        }
        let term = if word == "{" {
            let start = i;
            let close = words[start.min(words.len())..]
                .iter()
                .position(|w| w == "}")
                .ok_or("anonymous ACL `{` without its `}`")?;
            i = start + close + 1;
            if close == 0 {
                return Err("empty anonymous ACL `{ }`".into());
            }
            Term::Inline {
                words: words[start..start + close].to_vec(),
                negated,
            }
        } else if word.is_empty() || word == "}" {
            return Err("a condition term is missing".into());
        } else {
            Term::Named {
                name: word.to_owned(),
                negated,
            }
        };
        if let Some(last) = dnf.last_mut() {
            last.push(term);
        }
    }
    if dnf.last().is_some_and(Vec::is_empty) {
        return Err("a condition ends with `||`".into());
    }
    Ok(dnf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn check(acls: &[(&str, &str)], cond: &str, expected: Result<Vec<Match>, &str>) {
        let mut table = Acls::default();
        for (i, (name, criterion)) in acls.iter().enumerate() {
            table.declare(i + 1, name, words(criterion));
        }
        let w = words(cond);
        let got = table.resolve(&w[0], &w[1..]).map(|(m, _)| m);
        match expected {
            Ok(want) => assert_eq!(got, Ok(want), "{cond}"),
            Err(part) => {
                let message = match got {
                    Ok(m) => panic!("{cond}: expected a problem, got {m:?}"),
                    Err(Problem::Reject(m) | Problem::Skip(m)) => m,
                };
                assert!(message.contains(part), "{cond}: {message}");
            }
        }
    }

    fn host(h: &str) -> Match {
        Match {
            host: Some(h.into()),
            ..Match::default()
        }
    }

    #[test]
    fn conditions_become_exact_route_matches_or_problems() {
        let shop = ("shop", "hdr(host) -i Shop.example.com www.shop.com");
        let api = ("api", "path_beg /api/ /v2/");
        check(
            &[shop],
            "if shop",
            Ok(vec![host("shop.example.com"), host("www.shop.com")]),
        );
        check(
            &[shop, api],
            "if shop api",
            Ok(vec![
                Match {
                    path_regex: Some(r"^(?:/api/|/v2/)".into()),
                    ..host("shop.example.com")
                },
                Match {
                    path_regex: Some(r"^(?:/api/|/v2/)".into()),
                    ..host("www.shop.com")
                },
            ]),
        );
        check(
            &[],
            "if { hdr_end(host) -i .example.com } || { path /x.y }",
            Ok(vec![
                host("*.example.com"),
                Match {
                    path: Some("/x.y".into()),
                    ..Match::default()
                },
            ]),
        );
        check(
            &[],
            "if { path_beg -i /a.b }",
            Ok(vec![Match {
                path_regex: Some(r"(?i)^/a\.b".into()),
                ..Match::default()
            }]),
        );
        check(&[], "if TRUE", Ok(vec![Match::default()]));
        check(&[], "if FALSE", Ok(vec![]));
        check(
            &[],
            "if METH_GET { path /a }",
            Ok(vec![Match {
                methods: vec!["GET".into(), "HEAD".into()],
                path: Some("/a".into()),
                ..Match::default()
            }]),
        );
        check(
            &[],
            "if { hdr(host) -i a.com } { hdr(host) -i b.com }",
            Ok(vec![]),
        );
        check(&[], "if { hdr_beg(host) -i www. }", Err("not by prefix"));
        check(&[], "if { hdr(host) a.com }", Err("without -i"));
        check(
            &[],
            "if { hdr_end(host) -i example.com }",
            Err("leading dot"),
        );
        check(&[api], "if !api", Err("negated"));
        check(&[api], "unless api", Err("`unless`"));
        check(&[], "if { src 10.0.0.0/8 }", Err("`src`"));
        check(&[], "if { path_reg ^/(?!x) }", Err("PCRE"));
        check(&[], "if nosuch", Err("no such ACL"));
        check(&[], "if { path_beg /a", Err("without its `}`"));
    }
}
