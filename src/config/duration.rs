//! Durations as written in the config and on the command line: an integer and
//! a unit (`us`, `ms`, `s`, `m`, `h`), optionally several in a row (`1m30s`).
//! Invariant: no whitespace, no fractions, no sign; overflow is an error.

use std::time::Duration;

/// What every duration error says is expected.
const EXPECTED: &str = r#"expected a duration like "5s" or "250ms" (units us, ms, s, m, h)"#;

/// Parses `"5s"`, `"250ms"`, `"1m"`, `"1h"`, `"100us"` or a sum such as `"1m30s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let fail = || format!("{EXPECTED}, got {s:?}");
    if s.is_empty() {
        return Err(fail());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(fail());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_large(s))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "us" => Some(Duration::from_micros(number)),
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(fail()),
        };
        rest = &rest[unit_len..];
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| too_large(s))?;
    }
    Ok(total)
}

fn too_large(s: &str) -> String {
    format!("duration {s:?} is too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Duration, &str>) {
        let got = parse_duration(input);
        assert_eq!(got, expected.map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let bad = |got: &str| {
            format!(
                "expected a duration like \"5s\" or \"250ms\" (units us, ms, s, m, h), got {got:?}"
            )
        };
        let cases: &[(&str, Result<Duration, String>)] = &[
            ("5s", Ok(s(5))),
            ("250ms", Ok(ms(250))),
            ("1m", Ok(s(60))),
            ("1h", Ok(s(3600))),
            ("100us", Ok(Duration::from_micros(100))),
            ("0s", Ok(Duration::ZERO)),
            ("1m30s", Ok(s(90))),
            ("1h1m1s500ms", Ok(ms(3_661_500))),
            ("", Err(bad(""))),
            ("5", Err(bad("5"))),
            ("s", Err(bad("s"))),
            ("5 s", Err(bad("5 s"))),
            (" 5s", Err(bad(" 5s"))),
            ("5 parsecs", Err(bad("5 parsecs"))),
            ("1.5s", Err(bad("1.5s"))),
            ("-1s", Err(bad("-1s"))),
            ("5S", Err(bad("5S"))),
            ("5sec", Err(bad("5sec"))),
            ("5d", Err(bad("5d"))),
            (
                "99999999999999999999s",
                Err("duration \"99999999999999999999s\" is too large".to_owned()),
            ),
            (
                "18446744073709551615h",
                Err("duration \"18446744073709551615h\" is too large".to_owned()),
            ),
        ];
        for (input, expected) in cases {
            check(input, expected.as_ref().map(|d| *d).map_err(String::as_str));
        }
    }
}
