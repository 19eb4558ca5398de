//! A precomputed smooth weighted round-robin order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The order in which weighted slots take turns, computed once with nginx's
/// smooth weighted round robin (weights reduced by their common divisor), and
/// walked with one atomic cursor.
#[derive(Debug)]
pub struct Schedule {
    slots: Box<[u32]>,
    cursor: AtomicUsize,
}

impl Schedule {
    /// `weights[i]` is slot `i`'s weight; 0 never takes a turn.
    pub fn new(weights: &[u32]) -> Self {
        let divisor = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let reduced: Vec<i64> = weights
            .iter()
            .map(|&w| w.checked_div(divisor).map_or(0, i64::from))
            .collect();
        let total: i64 = reduced.iter().sum();
        let mut current = vec![0i64; reduced.len()];
        let mut slots = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in reduced.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            slots.push(u32::try_from(best).unwrap_or(u32::MAX));
        }
        Schedule {
            slots: slots.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next slot in turn for which `usable` holds, scanning at most one
    /// full round.
    pub fn next(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|k| self.slots[(start.wrapping_add(k)) % len] as usize)
            .find(|&i| usable(i))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(weights: &[u32], expected: &[u32]) {
        assert_eq!(
            &*Schedule::new(weights).slots,
            expected,
            "weights {weights:?}"
        );
    }

    #[test]
    fn smooth_interleaving() {
        check(&[1, 1], &[0, 1]);
        check(&[5, 1, 1], &[0, 0, 1, 0, 2, 0, 0]);
        check(&[100, 100], &[0, 1]);
        check(&[90, 10], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        check(&[0, 3], &[1]);
        check(&[0, 0], &[]);
        check(&[], &[]);
    }

    #[test]
    fn skips_unusable_slots() {
        let s = Schedule::new(&[1, 1, 1]);
        let picks: Vec<_> = (0..4).map(|_| s.next(|i| i != 1)).collect();
        assert_eq!(picks, vec![Some(0), Some(2), Some(2), Some(0)]);
        assert_eq!(s.next(|_| false), None);
    }
}
