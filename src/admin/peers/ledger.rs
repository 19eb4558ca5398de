//! The replicated registers of operator changes and their merge rule. Owns
//! `Registers` (one register per server admin state, per server weight and
//! per route split, each with the value an operator set, the config's value
//! it was set against, and its `Stamp`) and `Register`, its wire and
//! state-file form.
//! Invariant: pure (no IO, no await, no clock: callers pass `now`). A
//! register only ever moves to a greater (stamp, value): merging the same
//! set of registers in any order, any number of times, ends in the same
//! registers, which is what makes every replica converge.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::AdminState;

/// Most registers kept: far above any real topology, it bounds what a
/// faulty peer can make a replica hold.
pub const MAX_REGISTERS: usize = 100_000;

/// When and where a change was made. Ordered by time, then replica name:
/// the greater stamp is the later writer and wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Unix ms, never below a stamp this replica has seen.
    pub at: u64,
    pub replica: String,
}

/// What a register is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    State { backend: String, server: String },
    Weight { backend: String, server: String },
    Split { frontend: String, route: usize },
}

/// What an operator set, with the config's value at the time: a change
/// applies only where the config still says the same (the config wins
/// where it changed that line, as on reload and restart).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    State {
        state: AdminState,
        config: AdminState,
    },
    Weight {
        weight: u32,
        config: u32,
    },
    Split {
        weights: BTreeMap<String, u32>,
        config: BTreeMap<String, u32>,
    },
}

/// One register as it travels between replicas and sits in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Register {
    State {
        backend: String,
        server: String,
        state: String,
        config: String,
        at: u64,
        replica: String,
    },
    Weight {
        backend: String,
        server: String,
        weight: u32,
        config: u32,
        at: u64,
        replica: String,
    },
    Split {
        frontend: String,
        route: usize,
        weights: BTreeMap<String, u32>,
        config: BTreeMap<String, u32>,
        at: u64,
        replica: String,
    },
}

/// A register that makes no sense (an unknown state word).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid register: {0}")]
pub struct InvalidRegister(String);

impl Register {
    /// The typed parts; errors name what is wrong.
    pub fn parts(&self) -> Result<(Key, Value, Stamp), InvalidRegister> {
        let state = |word: &str| {
            AdminState::parse(word)
                .ok_or_else(|| InvalidRegister(format!("unknown state {word:?}")))
        };
        let stamp = |at: u64, replica: &str| Stamp {
            at,
            replica: replica.to_owned(),
        };
        Ok(match self {
            Register::State {
                backend,
                server,
                state: s,
                config,
                at,
                replica,
            } => (
                Key::State {
                    backend: backend.clone(),
                    server: server.clone(),
                },
                Value::State {
                    state: state(s)?,
                    config: state(config)?,
                },
                stamp(*at, replica),
            ),
            Register::Weight {
                backend,
                server,
                weight,
                config,
                at,
                replica,
            } => (
                Key::Weight {
                    backend: backend.clone(),
                    server: server.clone(),
                },
                Value::Weight {
                    weight: *weight,
                    config: *config,
                },
                stamp(*at, replica),
            ),
            Register::Split {
                frontend,
                route,
                weights,
                config,
                at,
                replica,
            } => (
                Key::Split {
                    frontend: frontend.clone(),
                    route: *route,
                },
                Value::Split {
                    weights: weights.clone(),
                    config: config.clone(),
                },
                stamp(*at, replica),
            ),
        })
    }

    /// Builds the wire form; `None` when key and value are of different kinds.
    pub fn of(key: &Key, value: &Value, stamp: &Stamp) -> Option<Register> {
        let (at, replica) = (stamp.at, stamp.replica.clone());
        match (key, value) {
            (Key::State { backend, server }, Value::State { state, config }) => {
                Some(Register::State {
                    backend: backend.clone(),
                    server: server.clone(),
                    state: state.as_str().to_owned(),
                    config: config.as_str().to_owned(),
                    at,
                    replica,
                })
            }
            (Key::Weight { backend, server }, Value::Weight { weight, config }) => {
                Some(Register::Weight {
                    backend: backend.clone(),
                    server: server.clone(),
                    weight: *weight,
                    config: *config,
                    at,
                    replica,
                })
            }
            (Key::Split { frontend, route }, Value::Split { weights, config }) => {
                Some(Register::Split {
                    frontend: frontend.clone(),
                    route: *route,
                    weights: weights.clone(),
                    config: config.clone(),
                    at,
                    replica,
                })
            }
            _ => None,
        }
    }
}

/// A register that a merge took: its key, new value and stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub key: Key,
    pub value: Value,
    pub stamp: Stamp,
}

/// Every register this replica knows, and the greatest time it has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registers {
    map: BTreeMap<Key, (Stamp, Value)>,
    /// The greatest `Stamp::at` seen: local stamps never go below it, so a
    /// change made here after one received from a peer with a clock ahead
    /// still wins over it.
    clock: u64,
}

impl Registers {
    /// Takes every register greater than the one held for its key (by stamp,
    /// then value, so that even two different values with the same stamp
    /// resolve the same way everywhere); returns those taken, in key order.
    pub fn merge(
        &mut self,
        incoming: impl IntoIterator<Item = (Key, Value, Stamp)>,
    ) -> Vec<Accepted> {
        let mut accepted: BTreeMap<Key, Accepted> = BTreeMap::new();
        for (key, value, stamp) in incoming {
            self.clock = self.clock.max(stamp.at);
            let is_newer = match self.map.get(&key) {
                Some((held_stamp, held_value)) => (&stamp, &value) > (held_stamp, held_value),
                None => self.map.len() < MAX_REGISTERS,
            };
            if is_newer {
                self.map.insert(key.clone(), (stamp.clone(), value.clone()));
                accepted.insert(key.clone(), Accepted { key, value, stamp });
            }
        }
        accepted.into_values().collect()
    }

    /// Records a change made on this replica (`replica`) at `now` (Unix ms)
    /// and returns its stamp: `now`, or just above the greatest time seen.
    pub fn record(&mut self, changes: Vec<(Key, Value)>, replica: &str, now: u64) -> Stamp {
        let stamp = Stamp {
            at: now.max(self.clock.saturating_add(1)),
            replica: replica.to_owned(),
        };
        self.clock = stamp.at;
        for (key, value) in changes {
            if self.map.len() < MAX_REGISTERS || self.map.contains_key(&key) {
                self.map.insert(key, (stamp.clone(), value));
            }
        }
        stamp
    }

    /// The register held for `key`.
    pub fn get(&self, key: &Key) -> Option<(&Stamp, &Value)> {
        self.map.get(key).map(|(s, v)| (s, v))
    }

    /// Every key held.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every register in its wire form, in key order.
    pub fn to_wire(&self) -> Vec<Register> {
        self.map
            .iter()
            .filter_map(|(key, (stamp, value))| Register::of(key, value, stamp))
            .collect()
    }

    /// A short hash of every register (key, value, stamp): two replicas with
    /// the same digest hold the same operator state.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for (key, (stamp, value)) in &self.map {
            let _ = writeln!(text, "{key:?}\t{value:?}\t{}\t{}", stamp.at, stamp.replica);
        }
        let hash = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_key(server: &str) -> Key {
        Key::State {
            backend: "app".to_owned(),
            server: server.to_owned(),
        }
    }

    fn state(s: AdminState) -> Value {
        Value::State {
            state: s,
            config: AdminState::Ready,
        }
    }

    fn stamp(at: u64, replica: &str) -> Stamp {
        Stamp {
            at,
            replica: replica.to_owned(),
        }
    }

    /// Merges `changes` in order into empty registers and returns the
    /// state `a` ends with and the digest.
    fn check(changes: &[(u64, &str, AdminState)], expected: AdminState) -> String {
        let mut r = Registers::default();
        for (at, replica, s) in changes {
            r.merge([(state_key("a"), state(*s), stamp(*at, replica))]);
        }
        let (_, value) = r.get(&state_key("a")).expect("held");
        assert_eq!(value, &state(expected), "{changes:?}");
        r.digest()
    }

    #[test]
    fn the_later_writer_wins_in_any_order() {
        use AdminState::*;
        let changes = [(10, "r1", Maint), (30, "r2", Drain), (20, "r3", Ready)];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let digests: Vec<String> = orders
            .iter()
            .map(|o| check(&o.map(|i| changes[i]), Drain))
            .collect();
        assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    }

    #[test]
    fn a_tie_in_time_is_broken_by_the_replica_name() {
        use AdminState::*;
        check(&[(10, "r2", Drain), (10, "r1", Maint)], Drain);
        check(&[(10, "r1", Maint), (10, "r2", Drain)], Drain);
        // The same stamp twice (a faulty peer): the greater value, everywhere.
        check(&[(10, "r1", Maint), (10, "r1", Drain)], Maint);
        check(&[(10, "r1", Drain), (10, "r1", Maint)], Maint);
    }

    #[test]
    fn a_stale_change_is_ignored_and_a_repeat_changes_nothing() {
        let mut r = Registers::default();
        let new = (state_key("a"), state(AdminState::Maint), stamp(20, "r1"));
        let old = (state_key("a"), state(AdminState::Drain), stamp(10, "r2"));
        assert_eq!(r.merge([new.clone()]).len(), 1);
        assert!(r.merge([old]).is_empty(), "older than the held one");
        assert!(r.merge([new]).is_empty(), "already held");
        assert_eq!(r.get(&state_key("a")).map(|(s, _)| s.at), Some(20));
    }

    #[test]
    fn a_local_change_is_stamped_after_everything_seen() {
        let mut r = Registers::default();
        // A peer whose clock is ahead of ours.
        r.merge([(state_key("a"), state(AdminState::Maint), stamp(5_000, "r9"))]);
        let local = r.record(
            vec![(state_key("a"), state(AdminState::Ready))],
            "r1",
            1_000,
        );
        assert_eq!(local, stamp(5_001, "r1"));
        assert_eq!(
            r.get(&state_key("a")).map(|(_, v)| v.clone()),
            Some(state(AdminState::Ready))
        );
        let later = r.record(
            vec![(state_key("b"), state(AdminState::Drain))],
            "r1",
            9_000,
        );
        assert_eq!(later.at, 9_000);
    }

    #[test]
    fn registers_travel_through_their_wire_form() {
        let mut r = Registers::default();
        let weights: BTreeMap<String, u32> = [("a".to_owned(), 50), ("b".to_owned(), 50)].into();
        let config: BTreeMap<String, u32> = [("a".to_owned(), 90), ("b".to_owned(), 10)].into();
        r.record(
            vec![
                (state_key("a"), state(AdminState::Maint)),
                (
                    Key::Weight {
                        backend: "app".to_owned(),
                        server: "a".to_owned(),
                    },
                    Value::Weight {
                        weight: 3,
                        config: 1,
                    },
                ),
                (
                    Key::Split {
                        frontend: "web".to_owned(),
                        route: 0,
                    },
                    Value::Split { weights, config },
                ),
            ],
            "r1",
            42,
        );
        let json = serde_json::to_string(&r.to_wire()).expect("serializes");
        let back: Vec<Register> = serde_json::from_str(&json).expect("parses");
        let mut copy = Registers::default();
        let parts: Result<Vec<_>, _> = back.iter().map(Register::parts).collect();
        assert_eq!(copy.merge(parts.expect("valid")).len(), 3);
        assert_eq!(copy.digest(), r.digest());
        let bad = r#"[{"kind":"state","backend":"b","server":"s","state":"up","config":"ready","at":1,"replica":"x"}]"#;
        let bad: Vec<Register> = serde_json::from_str(bad).expect("parses");
        assert!(bad[0].parts().is_err());
    }
}
