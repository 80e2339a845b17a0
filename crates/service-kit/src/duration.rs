//! Durations as operators type them in query strings and config: `250ms`, `30s`, `5m`,
//! `2h`, `1d`, or a plain number of seconds.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?} (expected e.g. 30s, 5m, 1h, 250ms)")]
    Number(String),
    #[error("invalid duration unit in {0:?} (ms, s, m, h, d)")]
    Unit(String),
}

/// Parse `250ms`, `30s`, `5m`, `2h`, `1d` or a plain number of seconds.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(DurationError::Number(s.to_owned()));
    }
    // Only digits here: a parse error is an overflow, and saturating is the honest answer
    // (nothing has waited that long), where a 400 would refuse a well-formed duration.
    let n: u64 = num.parse().unwrap_or(u64::MAX);
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    Ok(Duration::from_millis(ms))
}

/// serde `deserialize_with` for a config field written as a duration string.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = <String as serde::Deserialize>::deserialize(d)?;
    parse(&raw).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects() {
        assert!(matches!(parse("soon"), Err(DurationError::Number(_))));
        assert!(matches!(parse(""), Err(DurationError::Number(_))));
        assert!(matches!(parse("-5s"), Err(DurationError::Number(_))));
        assert!(matches!(parse("5w"), Err(DurationError::Unit(_))));
        assert!(matches!(parse("1.5h"), Err(DurationError::Unit(_))));
    }
}
