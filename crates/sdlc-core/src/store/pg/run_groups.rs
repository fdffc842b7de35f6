//! Run groups on PostgreSQL (see `crate::run_group`): one row per run id in
//! `sdlc_run_groups`, changed in the transaction that changes a run of the group. A
//! transaction's deltas go as one upsert that adds them to what is stored (two nodes
//! finishing runs of one group at once each add theirs); a recount locks the group's row
//! first, then sums its runs, so a delta committed meanwhile waits and lands on top.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postgres::GenericClient;

use crate::model::Action;
use crate::run_group::{Delta, Member, Summary};
use crate::store::decode_json;

/// The count columns, in `StatusKind::ALL` order.
pub(super) const COUNT_COLUMNS: &str = "pending, running, completed, failed, paused, skipped, \
                             awaiting_approval, canceled";

/// Adds `deltas` to their groups (a group new to the table starts from nothing).
pub(super) fn add(
    tx: &mut impl GenericClient,
    deltas: &BTreeMap<String, Delta>,
) -> Result<(), postgres::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let runs: Vec<&str> = deltas.keys().map(String::as_str).collect();
    let column = |i: usize| -> Vec<i64> { deltas.values().map(|d| d.counts[i]).collect() };
    let counts: Vec<Vec<i64>> = (0..8).map(column).collect();
    let first: Vec<Option<i64>> = deltas.values().map(|d| d.run_ms).collect();
    let started: Vec<Option<i64>> = deltas.values().map(|d| d.started_ms).collect();
    let ended: Vec<Option<i64>> = deltas.values().map(|d| d.ended_ms).collect();
    tx.execute(
        &format!(
            "INSERT INTO sdlc_run_groups AS g (run_id, {COUNT_COLUMNS}, first_run_at,
                 first_started_at, last_ended_at)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
                                  $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                                  $11::int8[], $12::int8[])
             ON CONFLICT (run_id) DO UPDATE SET
                 pending = g.pending + excluded.pending,
                 running = g.running + excluded.running,
                 completed = g.completed + excluded.completed,
                 failed = g.failed + excluded.failed,
                 paused = g.paused + excluded.paused,
                 skipped = g.skipped + excluded.skipped,
                 awaiting_approval = g.awaiting_approval + excluded.awaiting_approval,
                 canceled = g.canceled + excluded.canceled,
                 first_run_at = least(g.first_run_at, excluded.first_run_at),
                 first_started_at = least(g.first_started_at, excluded.first_started_at),
                 last_ended_at = greatest(g.last_ended_at, excluded.last_ended_at)"
        ),
        &[
            &runs, &counts[0], &counts[1], &counts[2], &counts[3], &counts[4], &counts[5],
            &counts[6], &counts[7], &first, &started, &ended,
        ],
    )?;
    Ok(())
}

/// Sums `runs` again from the actions they still have (this transaction's writes sent), and
/// stores the sums; a group left with no run goes.
pub(super) fn recount(
    tx: &mut impl GenericClient,
    runs: &BTreeSet<String>,
) -> Result<(), postgres::Error> {
    if runs.is_empty() {
        return Ok(());
    }
    let wanted: Vec<&str> = runs.iter().map(String::as_str).collect();
    tx.query(
        "SELECT 1 FROM sdlc_run_groups WHERE run_id = ANY($1) ORDER BY run_id FOR UPDATE",
        &[&wanted],
    )?;
    let rows = tx.query(
        "SELECT id, record FROM sdlc_actions WHERE run_ids && $1::text[]",
        &[&wanted],
    )?;
    let mut sums: HashMap<String, Summary> = HashMap::new();
    for row in &rows {
        // A record that does not decode is reported by the readers that need it.
        let Ok(action) = decode_json::<Action>(row.get(0), row.get(1)) else {
            continue;
        };
        if let Some((run, member)) = Member::of(&action)
            && runs.contains(run)
        {
            let sum = sums.remove(run);
            sums.insert(run.to_string(), Summary::with(sum, &member));
        }
    }
    let gone: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|run| !sums.contains_key(*run))
        .collect();
    if !gone.is_empty() {
        tx.execute(
            "DELETE FROM sdlc_run_groups WHERE run_id = ANY($1)",
            &[&gone],
        )?;
    }
    for (run, s) in &sums {
        let c: Vec<i64> = s.counts.iter().map(|n| *n as i64).collect();
        tx.execute(
            &format!(
                "INSERT INTO sdlc_run_groups (run_id, {COUNT_COLUMNS}, first_run_at,
                     first_started_at, last_ended_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (run_id) DO UPDATE SET
                     pending = excluded.pending, running = excluded.running,
                     completed = excluded.completed, failed = excluded.failed,
                     paused = excluded.paused, skipped = excluded.skipped,
                     awaiting_approval = excluded.awaiting_approval,
                     canceled = excluded.canceled, first_run_at = excluded.first_run_at,
                     first_started_at = excluded.first_started_at,
                     last_ended_at = excluded.last_ended_at"
            ),
            &[
                run,
                &c[0],
                &c[1],
                &c[2],
                &c[3],
                &c[4],
                &c[5],
                &c[6],
                &c[7],
                &s.first_run_ms,
                &s.first_started_ms,
                &s.last_ended_ms,
            ],
        )?;
    }
    Ok(())
}

/// Sums every group from scratch (a database imported from a redb file).
pub(super) fn rebuild(tx: &mut impl GenericClient) -> Result<(), postgres::Error> {
    tx.execute("DELETE FROM sdlc_run_groups", &[])?;
    let rows = tx.query(
        "SELECT DISTINCT run_ids[1] FROM sdlc_actions WHERE cardinality(run_ids) > 0",
        &[],
    )?;
    let runs: BTreeSet<String> = rows.iter().map(|row| row.get(0)).collect();
    recount(tx, &runs)
}
