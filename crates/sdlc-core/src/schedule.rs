//! Time arithmetic and the parsers for what users type about time.
//!
//! `next_slot` keeps recurring actions on their schedule: the next due time is counted from
//! the previous due time, never from "now", so runs do not drift; slots that passed while the
//! daemon was down are skipped rather than replayed as a burst.
//!
//! The parsers (`parse_duration`, `parse_at`) are pure: they take the current time as an
//! argument so tests need no clock. Their errors name the input and say what is accepted.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::model::Recurrence;

/// The first slot of `recurrence` after `previous_due` that is later than `now`, or None
/// when the schedule has no more slots (a cron expression that never matches again).
///
/// A daemon that was down for ten intervals gets exactly one next occurrence, in the future.
pub fn next_slot(
    recurrence: &Recurrence,
    previous_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match recurrence {
        Recurrence::Every { interval_ms } => {
            let interval = (*interval_ms).max(1) as i64;
            let prev = previous_due.timestamp_millis();
            let now_ms = now.timestamp_millis();
            // Number of whole intervals from `prev` to the first slot strictly after `now`.
            let steps = if now_ms < prev {
                1
            } else {
                (now_ms - prev) / interval + 1
            };
            // Added to the exact previous time, so sub-millisecond parts never drift.
            Some(
                chrono::Duration::try_milliseconds(steps.saturating_mul(interval))
                    .and_then(|offset| previous_due.checked_add_signed(offset))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        }
        Recurrence::Cron { .. } => slot_after(recurrence, previous_due.max(now)),
    }
}

/// The first slot of `recurrence` strictly after `t`.
pub fn slot_after(recurrence: &Recurrence, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match recurrence {
        Recurrence::Every { interval_ms } => {
            chrono::Duration::try_milliseconds(*interval_ms as i64)
                .and_then(|step| t.checked_add_signed(step))
        }
        Recurrence::Cron { expr, tz } => {
            let cron = parse_cron(expr).ok()?;
            let tz = parse_tz(tz).ok()?;
            // Cron has whole seconds; searching from a fractional time would carry the
            // fraction into the result.
            let whole = t.with_nanosecond(0).unwrap_or(t);
            cron.find_next_occurrence(&whole.with_timezone(&tz), false)
                .ok()
                .map(|next| next.with_timezone(&Utc))
        }
    }
}

/// How many slots of `recurrence` lie in `(scheduled, now]`: the ones a late occurrence
/// missed. Counts up to `cap`.
pub fn missed_slots(
    recurrence: &Recurrence,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    cap: u64,
) -> u64 {
    if now <= scheduled {
        return 0;
    }
    match recurrence {
        Recurrence::Every { interval_ms } => {
            let interval = (*interval_ms).max(1) as i64;
            let late = now.timestamp_millis() - scheduled.timestamp_millis();
            ((late / interval) as u64).min(cap)
        }
        Recurrence::Cron { .. } => {
            let mut count = 0;
            let mut cursor = scheduled;
            while count < cap {
                match slot_after(recurrence, cursor) {
                    Some(next) if next <= now => {
                        count += 1;
                        cursor = next;
                    }
                    _ => break,
                }
            }
            count
        }
    }
}

/// The coming `count` slots of `recurrence`, starting with `first` itself.
pub fn upcoming(recurrence: &Recurrence, first: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    let mut slots = Vec::with_capacity(count);
    let mut cursor = Some(first);
    while let Some(slot) = cursor {
        if slots.len() == count {
            break;
        }
        slots.push(slot);
        cursor = slot_after(recurrence, slot);
    }
    slots
}

/// Parses a cron expression: 5 fields (minute hour day month weekday), or 6 with seconds
/// first. Names (MON, JAN) and steps (*/5) are accepted.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr.trim())
        .map_err(|err| {
            format!(
                "cannot read cron expression '{expr}' ({err}): use 5 fields, minute hour day month weekday, such as \"0 2 * * *\" (or 6 with seconds first)"
            )
        })
}

/// Parses an IANA time zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_tz(name: &str) -> Result<chrono_tz::Tz, String> {
    name.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        format!("unknown time zone '{name}': use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

/// Checks that a recurrence can be evaluated and has a slot after `now`.
pub fn check_recurrence(recurrence: &Recurrence, now: DateTime<Utc>) -> Result<(), String> {
    if let Recurrence::Cron { expr, tz } = recurrence {
        parse_cron(expr)?;
        parse_tz(tz)?;
        if slot_after(recurrence, now).is_none() {
            return Err(format!("cron expression '{expr}' never fires after now"));
        }
    }
    Ok(())
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

/// Parses a history bound (`--since`, `--until`, `since=`): an RFC 3339 time, or a duration
/// back from `now` (`7d`, `12h`).
pub fn parse_time_bound(
    what: &str,
    spec: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let spec = spec.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(spec) {
        return Ok(at.with_timezone(&Utc));
    }
    let back = parse_duration(spec).map_err(|_| {
        format!(
            "{what} '{spec}': give an RFC 3339 time (2026-12-01T00:00:00Z) or how long ago (7d, 12h, 30m)"
        )
    })?;
    chrono::Duration::from_std(back)
        .ok()
        .and_then(|back| now.checked_sub_signed(back))
        .ok_or_else(|| format!("{what} '{spec}': too far back"))
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

    const EVERY_SECOND: &Recurrence = &Recurrence::Every { interval_ms: 1000 };

    #[test]
    fn next_slot_counts_from_the_previous_due_time_not_from_now() {
        // The run finished 300 ms late: the next slot is still prev + 1 s.
        assert_eq!(
            next_slot(EVERY_SECOND, t(10_000), t(10_300)),
            Some(t(11_000))
        );
        // Finished before it was due (clock quirk): still one interval later.
        assert_eq!(
            next_slot(EVERY_SECOND, t(10_000), t(9_000)),
            Some(t(11_000))
        );
    }

    #[test]
    fn daemon_down_for_ten_intervals_gets_one_future_slot() {
        let prev = t(10_000);
        let now = t(20_500); // ten and a half intervals later
        let next = next_slot(EVERY_SECOND, prev, now).unwrap();
        assert_eq!(next, t(21_000));
        assert!(next > now);
        // And the slot after that is one interval on: no burst of replays.
        assert_eq!(next_slot(EVERY_SECOND, next, next), Some(t(22_000)));
        assert_eq!(missed_slots(EVERY_SECOND, prev, now, 100), 10);
        assert_eq!(missed_slots(EVERY_SECOND, prev, now, 3), 3);
    }

    #[test]
    fn a_slot_exactly_at_now_is_skipped() {
        assert_eq!(
            next_slot(EVERY_SECOND, t(10_000), t(11_000)),
            Some(t(12_000))
        );
    }

    fn berlin(expr: &str) -> Recurrence {
        Recurrence::Cron {
            expr: expr.into(),
            tz: "Europe/Berlin".into(),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn cron_slots_follow_the_time_zone() {
        let nightly = berlin("0 2 * * *");
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert_eq!(
            slot_after(&nightly, utc(2026, 11, 21, 12, 0)),
            Some(utc(2026, 11, 22, 1, 0))
        );
        let five = upcoming(&nightly, utc(2026, 11, 22, 1, 0), 5);
        assert_eq!(five.len(), 5);
        assert_eq!(five[4], utc(2026, 11, 26, 1, 0));
        // With seconds.
        let every_ten_seconds = Recurrence::Cron {
            expr: "*/10 * * * * *".into(),
            tz: "UTC".into(),
        };
        assert_eq!(
            slot_after(&every_ten_seconds, utc(2026, 1, 1, 0, 0)),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap())
        );
    }

    #[test]
    fn a_job_in_the_spring_forward_gap_runs_once_soon_after_the_gap() {
        // 2027-03-28: Berlin jumps from 02:00 to 03:00 (01:00 UTC); 02:30 does not exist.
        let job = berlin("30 2 * * *");
        let slots = upcoming(&job, slot_after(&job, utc(2027, 3, 27, 12, 0)).unwrap(), 2);
        assert_eq!(
            slots[0],
            utc(2027, 3, 28, 1, 0),
            "03:00 CEST, right after the gap"
        );
        assert_eq!(slots[1], utc(2027, 3, 29, 0, 30), "then 02:30 CEST again");
    }

    #[test]
    fn a_job_in_the_fall_back_fold_does_not_run_twice() {
        // 2026-10-25: Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
        let job = berlin("30 2 * * *");
        let first = slot_after(&job, utc(2026, 10, 24, 12, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30), "the first 02:30 (CEST)");
        let second = slot_after(&job, first).unwrap();
        assert_eq!(
            second,
            utc(2026, 10, 26, 1, 30),
            "not again at 02:30 CET the same day"
        );
    }

    #[test]
    fn missed_cron_slots_are_counted() {
        let hourly = Recurrence::Cron {
            expr: "0 * * * *".into(),
            tz: "UTC".into(),
        };
        assert_eq!(
            missed_slots(&hourly, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 5, 30), 100),
            5
        );
        assert_eq!(
            missed_slots(&hourly, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 30), 100),
            0
        );
    }

    #[test]
    fn bad_cron_and_time_zones_are_named() {
        let err = parse_cron("61 * * * *").unwrap_err();
        assert!(
            err.contains("'61 * * * *'") && err.contains("5 fields"),
            "{err}"
        );
        assert!(parse_cron("* * *").is_err());
        let err = parse_tz("Mars/Olympus").unwrap_err();
        assert!(
            err.contains("'Mars/Olympus'") && err.contains("IANA"),
            "{err}"
        );
        assert!(check_recurrence(&berlin("0 0 30 2 *"), utc(2026, 1, 1, 0, 0)).is_err());
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
