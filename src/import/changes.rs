//! Header and path changes (`http-request set-header/add-header/del-header/
//! replace-path`, `http-response set-header/add-header/del-header`) placed on
//! routes, which is where Switchyard keeps them.
//! Invariant: a change lands on a route only when that route carries exactly
//! the requests its condition selects, no earlier route can take them first,
//! and no later rule matches on what it changed.

use super::emit::{Action, Frontend, HeaderOps, Match};
use super::lexer::Line;
use super::rules::{Effect, Op};

/// A rule that changes requests on the way, with its condition.
pub struct Change {
    pub line: Line,
    /// `None`: every request.
    pub matches: Option<Vec<Match>>,
    pub acls: Vec<String>,
    pub effect: Effect,
}

/// Why a request change cannot be translated: HAProxy evaluates the later
/// conditions on the changed path or Host, Switchyard routes on the
/// original request.
pub fn changes_what_later_rules_match<'a>(
    effect: &Effect,
    mut later: impl Iterator<Item = &'a Match>,
) -> Option<String> {
    let is_path = |m: &Match| {
        m.path.is_some()
            || m.path_regex.is_some()
            || m.path_prefix.as_deref().is_some_and(|p| p != "/")
    };
    match effect {
        Effect::Rewrite { .. } if later.any(is_path) => Some(
            "later rules match on the path HAProxy has already rewritten; Switchyard routes on the original path".into(),
        ),
        Effect::Header {
            is_response: false,
            op,
        } if op.name().eq_ignore_ascii_case("host") && later.any(|m| m.host.is_some()) => Some(
            "later rules match on the Host HAProxy has already changed; Switchyard routes on the original Host".into(),
        ),
        _ => None,
    }
}

/// Puts a header or path change on the routes that carry exactly the
/// requests its condition selects.
pub fn apply(f: &mut Frontend, change: &Change) -> Result<(), String> {
    if let (
        Effect::Header {
            is_response: true,
            op: Op::Set(name, value),
        },
        None,
        false,
    ) = (&change.effect, &change.matches, f.certs.is_empty())
    {
        if name.eq_ignore_ascii_case("strict-transport-security") {
            f.hsts = Some(value.clone());
            return Ok(());
        }
    }
    let forwarding: Vec<usize> = (0..f.routes.len())
        .filter(|&i| matches!(f.routes[i].action, Action::Backend(_)))
        .collect();
    let targets: Vec<usize> = match &change.matches {
        None if forwarding.is_empty() => {
            return Err("no route or default_backend carries these requests".into());
        }
        None => forwarding,
        Some(alternatives) => {
            let mut targets = Vec::new();
            for m in alternatives {
                let found = forwarding
                    .iter()
                    .copied()
                    .find(|&i| f.routes[i].matches == *m);
                let Some(i) = found else {
                    return Err("no use_backend with the same condition carries it; Switchyard attaches header and path changes to routes".into());
                };
                let earlier_overlap = forwarding
                    .iter()
                    .take_while(|&&j| j < i)
                    .any(|&j| !disjoint(&f.routes[j].matches, m));
                if earlier_overlap {
                    return Err("an earlier route can take some of these requests first".into());
                }
                targets.push(i);
            }
            targets
        }
    };
    let mut updated = Vec::with_capacity(targets.len());
    for &i in &targets {
        let mut r = f.routes[i].clone();
        match &change.effect {
            Effect::Header { is_response, op } => {
                let ops = match is_response {
                    true => &mut r.response_headers,
                    false => &mut r.request_headers,
                };
                add_op(ops, op)?;
            }
            Effect::Rewrite { regex, to } => {
                if r.rewrite.is_some() {
                    return Err("a route has one path rewrite".into());
                }
                r.rewrite = Some((regex.clone(), to.clone()));
            }
            Effect::Terminal(_) | Effect::RedirectHttps => return Err("not a change".into()),
        }
        updated.push((i, r));
    }
    for (i, r) in updated {
        f.routes[i] = r;
    }
    Ok(())
}

/// Whether no request can match both.
fn disjoint(a: &Match, b: &Match) -> bool {
    let differ =
        |x: &Option<String>, y: &Option<String>| matches!((x, y), (Some(x), Some(y)) if x != y);
    let exact_hosts = a.host.as_ref().is_some_and(|h| !h.starts_with('*'))
        && b.host.as_ref().is_some_and(|h| !h.starts_with('*'));
    (exact_hosts && differ(&a.host, &b.host))
        || differ(&a.path, &b.path)
        || (!a.methods.is_empty()
            && !b.methods.is_empty()
            && !a.methods.iter().any(|m| b.methods.contains(m)))
}

/// Adds `op` unless the same header already has another kind of change,
/// whose order with this one Switchyard's tables cannot keep.
pub fn add_op(ops: &mut HeaderOps, op: &Op) -> Result<(), String> {
    let name = op.name();
    let same = |n: &String| n.eq_ignore_ascii_case(name);
    let in_set = ops.set.iter().any(|(n, _)| same(n));
    let in_add = ops.add.iter().any(|(n, _)| same(n));
    let in_remove = ops.remove.iter().any(same);
    let conflict = match op {
        Op::Set(..) => in_add || in_remove,
        Op::Add(..) => in_set || in_remove,
        Op::Remove(_) => in_set || in_add,
    };
    if conflict {
        return Err(format!(
            "{name} is changed by another kind of rule on the same route; the order of the two cannot be kept"
        ));
    }
    match op {
        Op::Set(n, v) => match ops.set.iter_mut().find(|(k, _)| same(k)) {
            Some(existing) => existing.1 = v.clone(),
            None => ops.set.push((n.clone(), v.clone())),
        },
        Op::Add(n, v) => ops.add.push((n.clone(), v.clone())),
        Op::Remove(n) if !in_remove => ops.remove.push(n.clone()),
        Op::Remove(_) => {}
    }
    Ok(())
}
