//! Server selection. Owns `Balancer`, `Schedule` and the eligibility rules.
//! Invariant: nothing here does IO, awaits or locks; `pick` is wait-free and
//! scans at most a bounded number of slots.

mod schedule;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use schedule::Schedule;

use crate::model::{AdminState, BalanceAlgorithm};
use crate::state::{Health, ServerState};

/// Whether a server may take a new, non-sticky request: READY, healthy and
/// with a weight above 0. The one place that decides it.
pub fn is_eligible(state: &ServerState) -> bool {
    state.admin_state() == AdminState::Ready && is_healthy(state) && state.weight() > 0
}

/// Whether a client pinned to this server by its cookie may keep reaching it:
/// READY or DRAIN (weight 0 included), and healthy. MAINT takes no traffic.
pub fn accepts_sticky(state: &ServerState) -> bool {
    state.admin_state() != AdminState::Maint && is_healthy(state)
}

/// UP, and not waiting for the check that re-evaluates it after MAINT.
fn is_healthy(state: &ServerState) -> bool {
    state.health() == Health::Up && !state.is_awaiting_check()
}

/// One server as the balancer sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub state: Arc<ServerState>,
    pub is_backup: bool,
}

/// Picks servers of one backend. Built once per snapshot from the servers'
/// weights at that time; a weight change builds a new snapshot.
#[derive(Debug)]
pub struct Balancer {
    algorithm: BalanceAlgorithm,
    members: Box<[Member]>,
    /// Smooth weighted order of the non-backup members.
    primary: Schedule,
    /// Smooth weighted order of the backup members.
    backup: Schedule,
    /// Rotates the starting point of least-connections ties.
    cursor: AtomicUsize,
}

impl Balancer {
    pub fn new(algorithm: BalanceAlgorithm, members: Vec<Member>) -> Self {
        let weights = |want_backup: bool| -> Vec<u32> {
            members
                .iter()
                .map(|m| {
                    if m.is_backup == want_backup {
                        m.state.weight()
                    } else {
                        0
                    }
                })
                .collect()
        };
        Balancer {
            algorithm,
            primary: Schedule::new(&weights(false)),
            backup: Schedule::new(&weights(true)),
            members: members.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Picks an eligible server, skipping those in `tried`; backups only when
    /// no primary is eligible. Returns the member's index.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let usable = |i: usize| !tried.contains(&i) && is_eligible(&self.members[i].state);
        match self.algorithm {
            BalanceAlgorithm::RoundRobin => self
                .primary
                .next(usable)
                .or_else(|| self.backup.next(usable)),
            BalanceAlgorithm::LeastConn => self
                .least_connections(false, usable)
                .or_else(|| self.least_connections(true, usable)),
        }
    }

    /// The eligible member with the fewest active requests per weight.
    fn least_connections(&self, backups: bool, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let m = &self.members[i];
            if m.is_backup != backups || !usable(i) {
                continue;
            }
            let active = m.state.counters.active();
            let weight = u64::from(m.state.weight());
            // active/weight < best_active/best_weight, without division.
            let better = best.is_none_or(|(_, ba, bw)| {
                u128::from(active) * u128::from(bw) < u128::from(ba) * u128::from(weight)
            });
            if better {
                best = Some((i, active, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendName, ServerName};

    fn members(weights: &[(u32, bool)]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &(w, is_backup))| Member {
                state: Arc::new(ServerState::new(
                    BackendName::new("b"),
                    ServerName::new(&format!("s{i}")),
                    AdminState::Ready,
                    w,
                )),
                is_backup,
            })
            .collect()
    }

    /// Picks `n` times and returns how often each member was chosen.
    fn tally(b: &Balancer, n: usize) -> Vec<usize> {
        let mut counts = vec![0; b.members().len()];
        for _ in 0..n {
            if let Some(i) = b.pick(&[]) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn round_robin_follows_weights_exactly() {
        let b = Balancer::new(
            BalanceAlgorithm::RoundRobin,
            members(&[(3, false), (1, false)]),
        );
        assert_eq!(tally(&b, 400), vec![300, 100]);
        let b = Balancer::new(
            BalanceAlgorithm::RoundRobin,
            members(&[(1, false), (1, false), (1, false)]),
        );
        assert_eq!(tally(&b, 300), vec![100, 100, 100]);
    }

    #[test]
    fn drain_maint_down_and_zero_weight_are_skipped() {
        let m = members(&[(1, false), (1, false), (1, false), (0, false)]);
        m[0].state.set_admin_state(AdminState::Drain);
        m[1].state.set_health(Health::Down);
        let b = Balancer::new(BalanceAlgorithm::RoundRobin, m);
        assert_eq!(tally(&b, 10), vec![0, 0, 10, 0]);
        b.members()[2].state.set_admin_state(AdminState::Maint);
        assert_eq!(b.pick(&[]), None);
    }

    #[test]
    fn backups_serve_only_when_no_primary_is_eligible() {
        let b = Balancer::new(
            BalanceAlgorithm::RoundRobin,
            members(&[(1, false), (1, true), (1, true)]),
        );
        assert_eq!(tally(&b, 10), vec![10, 0, 0]);
        b.members()[0].state.set_admin_state(AdminState::Maint);
        assert_eq!(tally(&b, 10), vec![0, 5, 5]);
    }

    #[test]
    fn retries_skip_tried_servers() {
        let b = Balancer::new(
            BalanceAlgorithm::RoundRobin,
            members(&[(1, false), (1, false)]),
        );
        for _ in 0..4 {
            assert_eq!(b.pick(&[0]), Some(1));
        }
        assert_eq!(b.pick(&[0, 1]), None);
    }

    #[test]
    fn least_connections_prefers_idle_servers_relative_to_weight() {
        let b = Balancer::new(
            BalanceAlgorithm::LeastConn,
            members(&[(1, false), (2, false)]),
        );
        let s0 = &b.members()[0].state;
        let s1 = &b.members()[1].state;
        let _a = s0.counters.begin();
        assert_eq!(b.pick(&[]), Some(1));
        let _b = s1.counters.begin();
        // s0: 1/1, s1: 1/2 -> s1 still lighter
        assert_eq!(b.pick(&[]), Some(1));
        let _c = s1.counters.begin();
        let _d = s1.counters.begin();
        // s0: 1/1, s1: 3/2
        assert_eq!(b.pick(&[]), Some(0));
    }

    #[test]
    fn sticky_acceptance_follows_admin_state_and_health() {
        let m = members(&[(0, false)]);
        let s = &m[0].state;
        assert!(accepts_sticky(s));
        s.set_admin_state(AdminState::Drain);
        assert!(accepts_sticky(s));
        s.set_admin_state(AdminState::Maint);
        assert!(!accepts_sticky(s));
        s.set_admin_state(AdminState::Ready);
        s.set_health(Health::Down);
        assert!(!accepts_sticky(s));
    }

    #[test]
    fn a_server_back_from_maint_waits_for_its_check() {
        let m = members(&[(1, false)]);
        let s = &m[0].state;
        s.set_checked(true);
        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        assert!(!is_eligible(s) && !accepts_sticky(s));
        s.end_awaiting_check();
        assert!(is_eligible(s) && accepts_sticky(s));
    }
}
