//! RFC 3339 formatting and `--since` parsing (dates by `jiff`).

use anyhow::{Context, bail};

/// `2026-11-22T10:11:12.345Z`
pub fn format_ms(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
    {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{ms} ms after the epoch"),
    }
}

/// Parses `--since`: a duration back from now (`30s`, `10m`, `2h`, `1d`),
/// an RFC 3339 UTC time (`2026-11-22T10:00:00Z`), or milliseconds since the epoch.
pub fn parse_since(s: &str, now_ms: u64) -> anyhow::Result<u64> {
    let s = s.trim();
    if let Some(ms) = duration_ms(s)? {
        return Ok(now_ms.saturating_sub(ms));
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).with_context(|| {
        format!("invalid --since {s:?}: use 10m, 2h, 1d, 2026-11-22T10:00:00Z or epoch ms")
    })
}

/// A duration written `30s`, `10m`, `2h` or `1d`, in ms; `None` when `s`
/// is not a number and a unit letter.
fn duration_ms(s: &str) -> anyhow::Result<Option<u64>> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(ms.parse::<u64>().ok());
    }
    let unit = s.chars().last().filter(|c| c.is_ascii_alphabetic());
    let (Some(unit), Ok(n)) = (unit, s[..s.len().saturating_sub(1)].parse::<u64>()) else {
        return Ok(None);
    };
    Ok(Some(match unit {
        's' => n.saturating_mul(1000),
        'm' => n.saturating_mul(60_000),
        'h' => n.saturating_mul(3_600_000),
        'd' => n.saturating_mul(86_400_000),
        _ => bail!("unknown unit {unit:?} in {s:?}: use s, m, h or d"),
    }))
}

/// Parses a duration such as `--expires-in 90d`: `30s`, `10m`, `2h`, `1d`.
pub fn parse_duration(flag: &str, s: &str) -> anyhow::Result<u64> {
    match duration_ms(s.trim()) {
        Ok(Some(ms)) if ms > 0 => Ok(ms),
        _ => bail!("{flag} {s:?}: give a duration such as 30m, 12h or 90d"),
    }
}

/// An RFC 3339 time (`2026-11-22T10:00:00Z`, `2026-11-22T11:00:00+01:00`)
/// as milliseconds since the epoch.
fn parse_rfc3339(s: &str) -> anyhow::Result<u64> {
    let t: jiff::Timestamp = s.parse()?;
    u64::try_from(t.as_millisecond())
        .ok()
        .context("the time is before 1970")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_219_200_123), "2026-11-21T00:00:00.123Z");
        let ms = parse_since("2026-11-21T00:00:00.123Z", 0).expect("parse");
        assert_eq!(ms, 1_795_219_200_123);
        assert_eq!(parse_since("10m", 1_000_000).expect("parse"), 400_000);
        assert_eq!(parse_since("12345", 0).expect("parse"), 12345);
        assert!(parse_since("10y", 0).is_err());
        assert!(parse_since("yesterday", 0).is_err());
        assert_eq!(
            parse_since("2026-11-21T01:00:00.123+01:00", 0).expect("offset"),
            1_795_219_200_123
        );
        assert!(parse_since("1969-12-31T23:59:59Z", 0).is_err());
    }
}
