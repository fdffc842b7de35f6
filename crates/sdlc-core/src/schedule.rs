//! Time arithmetic and the parsers for what users type about time.
//!
//! `next_slot` keeps recurring actions on their schedule: the next due time is counted from
//! the previous due time, never from "now", so runs do not drift; slots that passed while the
//! daemon was down are skipped rather than replayed as a burst.
//!
//! The parsers (`parse_duration`, `parse_at`) are pure: they take the current time as an
//! argument so tests need no clock. Their errors name the input and say what is accepted.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::Recurrence;

/// The first slot of `recurrence` after `previous_due` that is later than `now`.
///
/// A daemon that was down for ten intervals gets exactly one next occurrence, in the future.
pub fn next_slot(
    recurrence: Recurrence,
    previous_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match recurrence {
        Recurrence::Every { interval_ms } => {
            let interval = interval_ms.max(1) as i64;
            let prev = previous_due.timestamp_millis();
            let now_ms = now.timestamp_millis();
            // Number of whole intervals from `prev` to the first slot strictly after `now`.
            let steps = if now_ms < prev {
                1
            } else {
                (now_ms - prev) / interval + 1
            };
            // Added to the exact previous time, so sub-millisecond parts never drift.
            chrono::Duration::try_milliseconds(steps.saturating_mul(interval))
                .and_then(|offset| previous_due.checked_add_signed(offset))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }
    }
}

/// Converts epoch milliseconds to a UTC time, clamping values chrono cannot represent.
pub fn millis_to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// The longest duration any flag accepts (100 years): keeps time arithmetic in range.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `60` (seconds), `1.5`, `500ms`, `30s`, `5m`, `2h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let unit_start = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(unit_start);
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(duration_error(text)),
    };
    let value: f64 = number.parse().map_err(|_| duration_error(text))?;
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > MAX_DURATION.as_secs_f64() {
        return Err(format!("duration '{text}' is too long: at most 100 years"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn duration_error(text: &str) -> String {
    format!(
        "cannot read duration '{text}': use seconds (60) or a number with a unit: 500ms, 30s, 5m, 2h, 1d"
    )
}

/// Parses when an action is due: `now`, `now+30s` (any duration `parse_duration` reads),
/// or an RFC 3339 time such as `2026-11-21T09:00:00Z`.
pub fn parse_at(spec: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let trimmed = spec.trim();
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(offset) = trimmed
        .strip_prefix("now+")
        .or_else(|| trimmed.strip_prefix("+"))
    {
        let offset = parse_duration(offset).map_err(|err| format!("in time '{spec}': {err}"))?;
        let offset = chrono::Duration::from_std(offset)
            .map_err(|_| format!("time '{spec}' is too far in the future"))?;
        return now
            .checked_add_signed(offset)
            .ok_or_else(|| format!("time '{spec}' is too far in the future"));
    }
    DateTime::parse_from_rfc3339(trimmed)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "cannot read time '{spec}': use now, now+30s (or +5m, +2h), or RFC 3339 such as 2026-11-21T09:00:00Z"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    const EVERY_SECOND: Recurrence = Recurrence::Every { interval_ms: 1000 };

    #[test]
    fn next_slot_counts_from_the_previous_due_time_not_from_now() {
        // The run finished 300 ms late: the next slot is still prev + 1 s.
        assert_eq!(next_slot(EVERY_SECOND, t(10_000), t(10_300)), t(11_000));
        // Finished before it was due (clock quirk): still one interval later.
        assert_eq!(next_slot(EVERY_SECOND, t(10_000), t(9_000)), t(11_000));
    }

    #[test]
    fn daemon_down_for_ten_intervals_gets_one_future_slot() {
        let prev = t(10_000);
        let now = t(20_500); // ten and a half intervals later
        let next = next_slot(EVERY_SECOND, prev, now);
        assert_eq!(next, t(21_000));
        assert!(next > now);
        // And the slot after that is one interval on: no burst of replays.
        assert_eq!(next_slot(EVERY_SECOND, next, next), t(22_000));
    }

    #[test]
    fn a_slot_exactly_at_now_is_skipped() {
        assert_eq!(next_slot(EVERY_SECOND, t(10_000), t(11_000)), t(12_000));
    }

    #[test]
    fn durations_in_every_accepted_form() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn bad_durations_name_the_input() {
        for bad in ["", "s", "5 minutes", "-5s", "1e400", "5x", "1.2.3s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        assert!(
            parse_duration("99999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn at_specs() {
        let now = t(1_000_000);
        assert_eq!(parse_at("now", now), Ok(now));
        assert_eq!(parse_at("now+5s", now), Ok(t(1_005_000)));
        assert_eq!(parse_at("+2m", now), Ok(t(1_120_000)));
        assert_eq!(
            parse_at("2026-11-21T09:00:00+01:00", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap())
        );
        let err = parse_at("tomorrow", now).unwrap_err();
        assert!(
            err.contains("'tomorrow'") && err.contains("RFC 3339"),
            "{err}"
        );
        let err = parse_at("now+soon", now).unwrap_err();
        assert!(err.contains("'soon'"), "{err}");
    }
}
