//! RFC 3339 formatting and `--since` parsing without a date library.

use anyhow::{Context, bail};

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-22T10:11:12.345Z`
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// Parses `--since`: a duration back from now (`30s`, `10m`, `2h`, `1d`),
/// an RFC 3339 UTC time (`2026-11-22T10:00:00Z`), or milliseconds since the epoch.
pub fn parse_since(s: &str, now_ms: u64) -> anyhow::Result<u64> {
    let s = s.trim();
    let unit = s.chars().last().filter(|c| c.is_ascii_alphabetic());
    if let (Some(unit), Ok(n)) = (unit, s[..s.len().saturating_sub(1)].parse::<u64>()) {
        let ms = match unit {
            's' => n.saturating_mul(1000),
            'm' => n.saturating_mul(60_000),
            'h' => n.saturating_mul(3_600_000),
            'd' => n.saturating_mul(86_400_000),
            _ => bail!("unknown unit {unit:?} in {s:?}: use s, m, h or d"),
        };
        return Ok(now_ms.saturating_sub(ms));
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).with_context(|| {
        format!("invalid --since {s:?}: use 10m, 2h, 1d, 2026-11-22T10:00:00Z or epoch ms")
    })
}

fn parse_rfc3339(s: &str) -> anyhow::Result<u64> {
    let s = s
        .strip_suffix('Z')
        .context("only UTC times ending in Z are accepted")?;
    let (date, time) = s.split_once('T').context("missing T")?;
    let mut dp = date.split('-');
    let y: i64 = dp.next().context("year")?.parse()?;
    let mo: u32 = dp.next().context("month")?.parse()?;
    let d: u32 = dp.next().context("day")?.parse()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut tp = hms.split(':');
    let h: u64 = tp.next().context("hour")?.parse()?;
    let mi: u64 = tp.next().context("minute")?.parse()?;
    let se: u64 = tp.next().unwrap_or("0").parse()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        bail!("out of range");
    }
    let frac_ms: u64 = format!("{frac:0<3}")[..3].parse()?;
    let days = days_from_civil(y, mo, d);
    if days < 0 {
        bail!("before 1970");
    }
    Ok(days as u64 * 86_400_000 + h * 3_600_000 + mi * 60_000 + se * 1000 + frac_ms)
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
    }
}
