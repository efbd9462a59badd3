//! Durations as people write them on a command line (`30s`, `6h`, `1h30m`) and as output
//! shows them.

use std::time::Duration;

/// Parses `30s`, `500ms`, `6h`, `1h30m` or an ISO 8601 duration (`PT6H`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let signed: jiff::SignedDuration = trimmed.parse().map_err(|_| {
        format!("{text:?} is not a duration: write it like 30s, 500ms, 5m, 6h or 1h30m")
    })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative: give a duration ahead"))
}

/// Like [`parse`], and more than zero.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        Duration::ZERO => Err(format!("{text:?} is zero: give a duration above zero")),
        duration => Ok(duration),
    }
}

/// A duration for people, rounded to what matters: `850ms`, `42s`, `2h 41m`.
pub fn display(duration: Duration) -> String {
    let unit = if duration < Duration::from_secs(1) {
        jiff::Unit::Millisecond
    } else if duration < Duration::from_secs(3600) {
        jiff::Unit::Second
    } else {
        jiff::Unit::Minute
    };
    let signed = jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX);
    let rounded = signed.round(unit).unwrap_or(signed);
    if rounded.is_zero() {
        return "0s".to_string();
    }
    format!("{rounded:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT2M"), Ok(Duration::from_secs(120)));
        assert!(parse("soon").unwrap_err().contains("30s"));
        assert!(parse("-5s").unwrap_err().contains("negative"));
        assert!(parse_positive("0s").is_err());
    }

    #[test]
    fn shows_what_matters() {
        assert_eq!(display(Duration::from_millis(850)), "850ms");
        assert_eq!(display(Duration::from_millis(42_400)), "42s");
        assert_eq!(
            display(Duration::from_secs(2 * 3600 + 41 * 60 + 7)),
            "2h 41m"
        );
        assert_eq!(display(Duration::ZERO), "0s");
    }
}
