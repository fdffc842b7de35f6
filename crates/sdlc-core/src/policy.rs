//! Scheduling policies as pure decisions: what to do with a recurring occurrence that has come
//! due (run it, skip it, or hold it behind a running one, and when the next one is due), and
//! when a failed run is retried. The store applies these decisions inside its transactions;
//! keeping them pure lets tests drive them with any clock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::{Action, CATCH_UP_ALL_CAP, CatchUp, Overlap};
use crate::schedule::{missed_slots, next_slot, slot_after};

/// What to do with an occurrence that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it; store the next occurrence at `next_due` (None: the schedule has ended), with
    /// `catch_up_left` runs of a `--catch-up all` replay left to it.
    Run {
        next_due: Option<DateTime<Utc>>,
        catch_up_left: Option<u32>,
    },
    /// Record it as Skipped with `reason`; store the next occurrence at `next_due`.
    Skip {
        reason: String,
        next_due: Option<DateTime<Utc>>,
    },
    /// Hold it (Pending, not due) until run `behind` finishes.
    Queue { behind: Uuid },
}

/// Decides for a due occurrence of a recurring action, given the run of the same series that
/// is still going (if any) and the time now.
pub fn decide(occurrence: &Action, running: Option<Uuid>, now: DateTime<Utc>) -> Decision {
    let Some(recurrence) = &occurrence.recurrence else {
        return Decision::Run {
            next_due: None,
            catch_up_left: None,
        };
    };
    let scheduled = occurrence.scheduled_at();
    let policy = occurrence.policy;
    let missed = missed_slots(recurrence, scheduled, now, 1);
    let on_schedule = next_slot(recurrence, scheduled, now);

    if missed > 0 && policy.catch_up == CatchUp::None {
        return Decision::Skip {
            reason: format!(
                "skipped: missed its slot at {} (the daemon was down or the action paused) and --catch-up is none",
                scheduled.to_rfc3339()
            ),
            next_due: on_schedule,
        };
    }
    if let Some(behind) = running {
        match policy.overlap {
            Overlap::Skip => {
                return Decision::Skip {
                    reason: format!(
                        "skipped: the previous run ({behind}) was still running (--overlap skip)"
                    ),
                    next_due: on_schedule,
                };
            }
            Overlap::QueueOne => return Decision::Queue { behind },
            Overlap::Allow => {}
        }
    }
    if policy.catch_up != CatchUp::All || missed == 0 {
        return Decision::Run {
            next_due: on_schedule,
            catch_up_left: None,
        };
    }
    // Replay missed slots one occurrence at a time: the first late occurrence opens a replay
    // of at most CATCH_UP_ALL_CAP runs, each passing on what is left; when it is spent, the
    // occurrence that comes due is skipped for all the slots still missed, in one record, and
    // the series is back on schedule. Whatever the gap, a replay costs at most the cap in runs
    // and O(cap) work.
    let left = occurrence.catch_up_left.unwrap_or(CATCH_UP_ALL_CAP as u32);
    if left == 0 {
        // Interval slots are counted by arithmetic, cron slots one by one (so up to a cap).
        let cap = match recurrence {
            crate::model::Recurrence::Every { .. } => u64::MAX,
            crate::model::Recurrence::Cron { .. } => BULK_COUNT_CAP,
        };
        let still_missed = missed_slots(recurrence, scheduled, now, cap);
        let count = if still_missed == cap {
            format!("more than {BULK_COUNT_CAP}")
        } else {
            (still_missed + 1).to_string()
        };
        return Decision::Skip {
            reason: format!(
                "skipped: {count} missed slots from {} on were not replayed (--catch-up all replays at most {CATCH_UP_ALL_CAP}); back on schedule",
                scheduled.to_rfc3339()
            ),
            next_due: on_schedule,
        };
    }
    Decision::Run {
        next_due: slot_after(recurrence, scheduled),
        catch_up_left: Some(left - 1),
    }
}

/// How far the slots skipped at the end of a replay are counted; beyond it the record says
/// "more than" (cron slots are counted one by one).
const BULK_COUNT_CAP: u64 = 1_000_000;

/// The coming due times of `head` (the newest occurrence of a series, or a one-off action),
/// at most `count`: for a waiting recurring occurrence its own time, then its schedule's
/// next slots; for a waiting one-off its due time; nothing for a run that has started or ended.
pub fn coming_runs(head: &Action, count: usize) -> Vec<DateTime<Utc>> {
    use crate::model::StatusKind;
    if !matches!(head.status.kind(), StatusKind::Pending | StatusKind::Paused) || count == 0 {
        return Vec::new();
    }
    let mut runs = vec![head.due_at()];
    if let Some(recurrence) = &head.recurrence {
        let mut cursor = head.scheduled_at();
        while runs.len() < count {
            match slot_after(recurrence, cursor) {
                Some(next) => {
                    runs.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
    }
    runs
}

/// When a failed attempt is retried, or None when no attempts are left.
///
/// The wait doubles with each attempt from `backoff_ms`, is capped at an hour (or at the
/// backoff itself when that is longer), and is spread by ±20% so that actions failing
/// together do not retry together. The spread is derived from the action's id and attempt,
/// so the same attempt always gets the same time.
pub fn retry_at(action: &Action, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let policy = action.retry?;
    if action.attempt > policy.retries {
        return None;
    }
    if policy.fixed {
        return now.checked_add_signed(chrono::Duration::try_milliseconds(
            i64::try_from(policy.backoff_ms).ok()?,
        )?);
    }
    let exponent = action.attempt.saturating_sub(1).min(30);
    let base = policy.backoff_ms.saturating_mul(1u64 << exponent);
    let cap = policy.backoff_ms.max(3_600_000);
    let wait = base.min(cap) as f64 * jitter(action.id, action.attempt);
    let wait = chrono::Duration::try_milliseconds(wait as i64)?;
    now.checked_add_signed(wait)
}

/// A factor in [0.8, 1.2) from the id and attempt.
fn jitter(id: Uuid, attempt: u32) -> f64 {
    // FNV-1a over the id and attempt: cheap, stable, well spread for this purpose.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes().iter().chain(&attempt.to_le_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    0.8 + 0.4 * ((hash >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionTrigger, Recurrence, RetryPolicy, SchedulePolicy};
    use chrono::TimeZone;
    use serde_json::json;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn every_minute(due: i64, overlap: Overlap, catch_up: CatchUp) -> Action {
        let mut action = Action::new(
            "job",
            "tool",
            json!({}),
            ActionTrigger::Scheduled {
                next_tick_at: t(due),
            },
            t(0),
        );
        action.recurrence = Some(Recurrence::Every {
            interval_ms: 60_000,
        });
        action.policy = SchedulePolicy { overlap, catch_up };
        action
    }

    #[test]
    fn an_occurrence_on_time_runs_and_the_next_is_one_interval_on() {
        let a = every_minute(600, Overlap::Skip, CatchUp::Latest);
        assert_eq!(
            decide(&a, None, t(600)),
            Decision::Run {
                next_due: Some(t(660)),
                catch_up_left: None,
            }
        );
        // A few seconds late is not a missed slot.
        assert_eq!(
            decide(&a, None, t(630)),
            Decision::Run {
                next_due: Some(t(660)),
                catch_up_left: None,
            }
        );
    }

    #[test]
    fn overlap_policies() {
        let running = Some(Uuid::from_u128(7));
        let skip = every_minute(600, Overlap::Skip, CatchUp::Latest);
        match decide(&skip, running, t(600)) {
            Decision::Skip { reason, next_due } => {
                assert!(reason.contains("still running"), "{reason}");
                assert_eq!(next_due, Some(t(660)));
            }
            other => panic!("{other:?}"),
        }
        let queue = every_minute(600, Overlap::QueueOne, CatchUp::Latest);
        assert_eq!(
            decide(&queue, running, t(600)),
            Decision::Queue {
                behind: Uuid::from_u128(7)
            }
        );
        let allow = every_minute(600, Overlap::Allow, CatchUp::Latest);
        assert_eq!(
            decide(&allow, running, t(600)),
            Decision::Run {
                next_due: Some(t(660)),
                catch_up_left: None,
            }
        );
    }

    #[test]
    fn catch_up_after_ten_missed_slots() {
        // Due at 600, daemon back at 1230: slots 660..=1200 (10 of them) were missed.
        let latest = every_minute(600, Overlap::Skip, CatchUp::Latest);
        assert_eq!(
            decide(&latest, None, t(1230)),
            Decision::Run {
                next_due: Some(t(1260)),
                catch_up_left: None,
            }
        );

        let none = every_minute(600, Overlap::Skip, CatchUp::None);
        match decide(&none, None, t(1230)) {
            Decision::Skip { reason, next_due } => {
                assert!(reason.contains("catch-up is none"), "{reason}");
                assert_eq!(next_due, Some(t(1260)));
            }
            other => panic!("{other:?}"),
        }

        // All: the next occurrence is the very next slot, even though it is past.
        let all = every_minute(600, Overlap::Allow, CatchUp::All);
        assert_eq!(
            decide(&all, None, t(1230)),
            Decision::Run {
                next_due: Some(t(660)),
                catch_up_left: Some(CATCH_UP_ALL_CAP as u32 - 1),
            }
        );
    }

    /// Plays a series forward as the store does, with the daemon back at `now` after a gap:
    /// each due occurrence is decided, a Run's successor carries what is left of the replay,
    /// a run lasts forever when `runs_overlap` (so Skip and QueueOne see it) or ends at once.
    /// Returns the runs, the skip records and the first occurrence due after `now`.
    fn replay(
        mut occurrence: Action,
        now: DateTime<Utc>,
        runs_overlap: bool,
    ) -> (u64, Vec<String>, Option<DateTime<Utc>>) {
        let (mut runs, mut skips) = (0u64, Vec::new());
        let mut running = None;
        for _ in 0..(CATCH_UP_ALL_CAP + 10) {
            if occurrence.scheduled_at() > now {
                return (runs, skips, Some(occurrence.scheduled_at()));
            }
            let (next_due, left) = match decide(&occurrence, running, now) {
                Decision::Run {
                    next_due,
                    catch_up_left,
                } => {
                    runs += 1;
                    if runs_overlap {
                        running = Some(occurrence.id);
                    }
                    (next_due, catch_up_left)
                }
                Decision::Skip { reason, next_due } => {
                    skips.push(reason);
                    (next_due, None)
                }
                // Held behind a run that never ends: nothing more happens until it does.
                Decision::Queue { .. } => return (runs, skips, None),
            };
            let Some(due) = next_due else {
                return (runs, skips, None);
            };
            let mut next = occurrence.occurrence_at(due, now);
            next.catch_up_left = left;
            occurrence = next;
        }
        panic!("the replay did not end: {runs} runs, {} skips", skips.len());
    }

    #[test]
    fn catch_up_all_replays_at_most_the_cap_then_skips_the_rest_in_one_record() {
        // 30 days missed at one slot a second, as reported: slots 0..=2,592,000; 100 run.
        let mut all = every_minute(0, Overlap::Allow, CatchUp::All);
        all.recurrence = Some(Recurrence::Every { interval_ms: 1_000 });
        let now = t(30 * 86_400);
        let (runs, skips, next) = replay(all, now, false);
        assert_eq!(runs, CATCH_UP_ALL_CAP);
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert!(skips[0].contains("2591901 missed slots"), "{}", skips[0]);
        assert_eq!(next, Some(now + chrono::Duration::seconds(1)));

        // A first due time far in the past (--at 1970) with cron every minute.
        let mut cron = every_minute(0, Overlap::QueueOne, CatchUp::All);
        cron.recurrence = Some(Recurrence::Cron {
            expr: "0 * * * * *".into(),
            tz: "UTC".into(),
        });
        let (runs, skips, next) = replay(cron, t(10 * 86_400), false);
        assert_eq!(runs, CATCH_UP_ALL_CAP);
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert!(next.is_some_and(|n| n > t(10 * 86_400)));
    }

    proptest::proptest! {
        #[test]
        fn any_gap_costs_at_most_the_cap_in_runs_and_ends_on_schedule(
            interval_s in 1i64..7_200,
            gap_s in 0i64..(400 * 86_400),
            overlap in proptest::sample::select(vec![Overlap::Skip, Overlap::QueueOne, Overlap::Allow]),
            catch_up in proptest::sample::select(vec![CatchUp::Latest, CatchUp::None, CatchUp::All]),
            runs_overlap: bool,
        ) {
            let mut action = every_minute(0, overlap, catch_up);
            action.recurrence = Some(Recurrence::Every { interval_ms: interval_s as u64 * 1_000 });
            let now = t(gap_s);
            let (runs, skips, next) = replay(action, now, runs_overlap);
            // The latest slot before now is due, not missed: when a full replay ends on it
            // (the gap is just over the cap in slots) it runs as well.
            proptest::prop_assert!(runs <= CATCH_UP_ALL_CAP + 1, "{} runs", runs);
            proptest::prop_assert!(skips.len() <= 2, "{:?}", skips);
            if let Some(next) = next {
                // Back on schedule: the next slot after now, not later.
                proptest::prop_assert!(next > now && next <= now + chrono::Duration::seconds(interval_s));
            }
        }
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_stop() {
        let mut a = every_minute(0, Overlap::Skip, CatchUp::Latest);
        a.retry = Some(RetryPolicy {
            retries: 3,
            backoff_ms: 10_000,
            fixed: false,
        });
        let now = t(1_000);
        let mut waits = Vec::new();
        for attempt in 1..=3 {
            a.attempt = attempt;
            let at = retry_at(&a, now).expect("attempts left");
            waits.push((at - now).num_milliseconds());
        }
        for (i, wait) in waits.iter().enumerate() {
            let nominal = 10_000 * (1 << i);
            assert!(
                (*wait as f64) >= nominal as f64 * 0.8 && (*wait as f64) < nominal as f64 * 1.2,
                "attempt {}: {wait} ms",
                i + 1
            );
        }
        a.attempt = 4;
        assert_eq!(
            retry_at(&a, now),
            None,
            "3 retries after the first attempt, then stop"
        );
    }

    #[test]
    fn coming_runs_follow_the_schedule_from_the_waiting_occurrence() {
        let a = every_minute(600, Overlap::Skip, CatchUp::Latest);
        assert_eq!(coming_runs(&a, 3), [t(600), t(660), t(720)]);
        let mut one_off = a.clone();
        one_off.recurrence = None;
        assert_eq!(coming_runs(&one_off, 5), [t(600)]);
        let mut done = a;
        done.status = crate::model::ActionStatus::Running;
        assert!(coming_runs(&done, 5).is_empty());
    }

    #[test]
    fn retry_waits_are_capped_at_an_hour() {
        let mut a = every_minute(0, Overlap::Skip, CatchUp::Latest);
        a.retry = Some(RetryPolicy {
            retries: 50,
            backoff_ms: 60_000,
            fixed: false,
        });
        a.attempt = 40;
        let wait = retry_at(&a, t(0)).unwrap() - t(0);
        assert!(wait <= chrono::Duration::minutes(72), "{wait}");
    }
}
