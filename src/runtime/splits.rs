//! Split weights set at run time. Owns `SplitOverride` (a route's split as
//! the file wrote it and as the operator set it, by names) and the pure
//! functions that apply overrides to a topology from the file.
//! Invariant: an override applies only while the file still has exactly the
//! split it was set against; once the file changes that route's split, the
//! file wins and the override is dropped.

use crate::model::{BackendId, BackendName, FrontendName, Target, Topology};

/// A route's weights by backend name, in the split's order.
pub type SplitWeights = Vec<(BackendName, u32)>;

/// One route whose split weights an operator changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOverride {
    pub frontend: FrontendName,
    /// Position of the route in the frontend, from 0.
    pub route: usize,
    /// The split as the file has it.
    pub config: SplitWeights,
    /// The split as the operator set it.
    pub weights: SplitWeights,
}

/// The split of route `route` of `frontend` in `topology`, by names.
pub fn split_of(topology: &Topology, frontend: &str, route: usize) -> Option<SplitWeights> {
    let f = topology.frontends.iter().find(|f| &*f.name == frontend)?;
    match &f.routes.get(route)?.target {
        Target::Split(parts) => Some(named(topology, parts)),
        Target::Backend(_) | Target::Redirect(_) | Target::Respond(_) | Target::Deny => None,
    }
}

fn named(topology: &Topology, parts: &[(BackendId, u32)]) -> SplitWeights {
    parts
        .iter()
        .filter_map(|(id, w)| topology.backends.get(id.0).map(|b| (b.name.clone(), *w)))
        .collect()
}

/// Applies every override that still matches `file` and returns the
/// resulting topology with the overrides kept; the others are dropped.
pub fn apply(mut file: Topology, overrides: Vec<SplitOverride>) -> (Topology, Vec<SplitOverride>) {
    let mut kept = Vec::with_capacity(overrides.len());
    for o in overrides {
        if split_of(&file, &o.frontend, o.route).as_ref() == Some(&o.config)
            && set_weights(&mut file, &o.frontend, o.route, &o.weights).is_ok()
        {
            kept.push(o);
        }
    }
    (file, kept)
}

/// Sets the weights of the named backends in a route's split; backends not
/// named keep theirs. Errors say what is wrong, in the API's words.
pub fn set_weights(
    topology: &mut Topology,
    frontend: &str,
    route: usize,
    weights: &[(BackendName, u32)],
) -> Result<(), SplitEditError> {
    let ids: Vec<(BackendId, BackendName)> = topology
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (BackendId(i), b.name.clone()))
        .collect();
    let f = topology
        .frontends
        .iter_mut()
        .find(|f| &*f.name == frontend)
        .ok_or_else(|| SplitEditError::NoFrontend(frontend.to_owned()))?;
    let r = f
        .routes
        .get_mut(route)
        .ok_or_else(|| SplitEditError::NoRoute(frontend.to_owned(), route))?;
    let Target::Split(parts) = &mut r.target else {
        return Err(SplitEditError::NotSplit(frontend.to_owned(), route));
    };
    let mut edited = parts.clone();
    for (name, weight) in weights {
        let id = ids
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
            .ok_or_else(|| SplitEditError::NotInSplit(name.to_string()))?;
        let part = edited
            .iter_mut()
            .find(|(i, _)| *i == id)
            .ok_or_else(|| SplitEditError::NotInSplit(name.to_string()))?;
        part.1 = *weight;
    }
    if edited.iter().all(|(_, w)| *w == 0) {
        return Err(SplitEditError::AllZero);
    }
    *parts = edited;
    Ok(())
}

/// Why a split edit cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitEditError {
    #[error("no frontend {0:?}")]
    NoFrontend(String),
    #[error("frontend {0:?} has no route {1}")]
    NoRoute(String, usize),
    #[error("route {1} of {0:?} is not a weighted split")]
    NotSplit(String, usize),
    #[error("backend {0:?} is not part of this split")]
    NotInSplit(String),
    #[error("expected at least one weight above 0")]
    AllZero,
}

/// `a=90 b=10`: a split in the words of the audit log and the stats page.
pub fn describe(weights: &[(BackendName, u32)]) -> String {
    weights
        .iter()
        .map(|(name, w)| format!("{name}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const FILE: &str = r#"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
  [[frontend.route]]
  path_prefix = "/s"
  split = { a = 90, b = 10 }
[[backend]]
name = "a"
[[backend]]
name = "b"
"#;

    fn topology(text: &str) -> Topology {
        crate::config::parse(text, Path::new("t.toml")).expect("valid test config")
    }

    fn weights(pairs: &[(&str, u32)]) -> SplitWeights {
        pairs
            .iter()
            .map(|(n, w)| (BackendName::new(n), *w))
            .collect()
    }

    fn check(file: &str, expected_split: &[(&str, u32)], expected_kept: usize) {
        let o = SplitOverride {
            frontend: FrontendName::new("web"),
            route: 0,
            config: weights(&[("a", 90), ("b", 10)]),
            weights: weights(&[("a", 50), ("b", 50)]),
        };
        let (t, kept) = apply(topology(file), vec![o]);
        assert_eq!(split_of(&t, "web", 0), Some(weights(expected_split)));
        assert_eq!(kept.len(), expected_kept);
    }

    #[test]
    fn an_override_holds_until_the_file_changes_that_split() {
        check(FILE, &[("a", 50), ("b", 50)], 1);
        check(
            &FILE.replace("a = 90, b = 10", "a = 80, b = 20"),
            &[("a", 80), ("b", 20)],
            0,
        );
    }

    #[test]
    fn edits_are_checked() {
        let mut t = topology(FILE);
        type Case<'a> = (
            &'a str,
            usize,
            &'a [(&'a str, u32)],
            Result<(), SplitEditError>,
        );
        let cases: &[Case<'_>] = &[
            ("web", 0, &[("a", 1)], Ok(())),
            (
                "x",
                0,
                &[("a", 1)],
                Err(SplitEditError::NoFrontend("x".into())),
            ),
            (
                "web",
                3,
                &[("a", 1)],
                Err(SplitEditError::NoRoute("web".into(), 3)),
            ),
            (
                "web",
                0,
                &[("c", 1)],
                Err(SplitEditError::NotInSplit("c".into())),
            ),
            (
                "web",
                0,
                &[("a", 0), ("b", 0)],
                Err(SplitEditError::AllZero),
            ),
        ];
        for (frontend, route, w, expected) in cases {
            assert_eq!(
                &set_weights(&mut t, frontend, *route, &weights(w)),
                expected,
                "{frontend} {route} {w:?}"
            );
        }
        assert_eq!(
            split_of(&t, "web", 0),
            Some(weights(&[("a", 1), ("b", 10)]))
        );
    }
}
