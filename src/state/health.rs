//! Health as the checks observed it, and the rise/fall state machine.

/// What the checks observed of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "UP",
            Health::Down => "DOWN",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum CheckOutcome {
    /// Passed; `status` is the HTTP status for HTTP checks.
    Passed { status: Option<u16> },
    /// Failed with an HTTP status outside `expect`.
    BadStatus { status: u16 },
    /// Failed before a status: refused, timeout, bad response.
    Error { message: String },
}

impl CheckOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckOutcome::Passed { .. })
    }
}

/// Rise/fall hysteresis: `rise` consecutive successes bring a DOWN server UP,
/// `fall` consecutive failures take an UP server DOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTracker {
    pub health: Health,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    rise: u32,
    fall: u32,
}

impl HealthTracker {
    pub fn new(health: Health, rise: u32, fall: u32) -> Self {
        HealthTracker {
            health,
            consecutive_ok: 0,
            consecutive_fail: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Feeds one check result; returns the new health if it flipped.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.consecutive_ok = self.consecutive_ok.saturating_add(1);
            self.consecutive_fail = 0;
            if self.health == Health::Down && self.consecutive_ok >= self.rise {
                self.health = Health::Up;
                return Some(Health::Up);
            }
        } else {
            self.consecutive_fail = self.consecutive_fail.saturating_add(1);
            self.consecutive_ok = 0;
            if self.health == Health::Up && self.consecutive_fail >= self.fall {
                self.health = Health::Down;
                return Some(Health::Down);
            }
        }
        None
    }

    /// Follows a change made elsewhere (passive health, DNS), so the next
    /// checks count from it.
    pub fn force(&mut self, health: Health) {
        if self.health != health {
            self.health = health;
            self.consecutive_ok = 0;
            self.consecutive_fail = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` (`+` ok, `-` fail) and returns the flips as `U`/`D`/`.`.
    fn check(start: Health, rise: u32, fall: u32, results: &str, expected: &str) {
        let mut t = HealthTracker::new(start, rise, fall);
        let got: String = results
            .chars()
            .map(|c| match t.observe(c == '+') {
                Some(Health::Up) => 'U',
                Some(Health::Down) => 'D',
                None => '.',
            })
            .collect();
        assert_eq!(got, expected, "results {results}");
    }

    #[test]
    fn rise_and_fall() {
        check(Health::Up, 2, 3, "---", "..D");
        check(Health::Up, 2, 3, "--+--", ".....");
        check(Health::Down, 2, 3, "++", ".U");
        check(Health::Down, 2, 3, "+-+", "...");
        check(Health::Up, 2, 3, "---++", "..D.U");
        check(Health::Up, 1, 1, "-+-+", "DUDU");
        check(Health::Up, 0, 0, "-", "D");
    }
}
