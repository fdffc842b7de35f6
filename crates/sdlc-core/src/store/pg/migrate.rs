//! The PostgreSQL schema, as numbered migrations embedded in the binary, applied at connect
//! in one transaction under an advisory lock: two daemons starting at once cannot both apply
//! one (the second waits, then finds it done). A database whose version is above
//! [`LATEST_SCHEMA`] was written by a newer sdlc and is refused, as a newer redb file is.

use postgres::GenericClient;

use super::failed;
use crate::StoreError;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
struct Migration {
    version: i64,
    what: &'static str,
    sql: &'static str,
}

/// Every migration, in order; a database at version N has applied the first N.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "the nodes sharing this database",
        sql: "CREATE TABLE sdlc_nodes (
                  node text PRIMARY KEY,
                  started_at timestamptz NOT NULL,
                  heartbeat_at timestamptz NOT NULL,
                  lease_until timestamptz NOT NULL
              );",
    },
    Migration {
        version: 2,
        what: "actions, series, plan runs, the outbox, webhook routes and dashboard sessions",
        // Times are Unix milliseconds, as in the redb indexes, so both backends order and
        // compare them alike. `record` is the store's record of the row (a version byte,
        // JSON, a CRC-32); the columns beside it are what queries select and order by. A
        // Running action's `node`, `claim` and `lease_until` say who claimed it, the claim's
        // token (an outcome is recorded only under it) and until when the claim holds. A
        // scheduled occurrence's `slot` is its slot: one occurrence per slot of a series,
        // whichever node stores it.
        sql: "CREATE TABLE sdlc_actions (
                  id uuid PRIMARY KEY,
                  status smallint NOT NULL,
                  due_at bigint,
                  series uuid NOT NULL,
                  updated_at bigint NOT NULL,
                  created_at bigint NOT NULL,
                  tool text NOT NULL,
                  label text NOT NULL,
                  run_ids text[] NOT NULL,
                  step_run uuid,
                  recurring boolean NOT NULL,
                  slot bigint,
                  node text,
                  claim uuid,
                  lease_until bigint,
                  record bytea NOT NULL
              );
              CREATE INDEX sdlc_actions_due ON sdlc_actions (due_at, id)
                  WHERE due_at IS NOT NULL;
              CREATE INDEX sdlc_actions_status ON sdlc_actions (status, updated_at, id);
              CREATE INDEX sdlc_actions_running ON sdlc_actions (series, id)
                  WHERE status = 2;
              CREATE INDEX sdlc_actions_created ON sdlc_actions (created_at, id);
              CREATE INDEX sdlc_actions_status_created
                  ON sdlc_actions (status, created_at, id);
              CREATE INDEX sdlc_actions_tool_created ON sdlc_actions (tool, created_at, id);
              CREATE INDEX sdlc_actions_series_created
                  ON sdlc_actions (series, created_at, id);
              CREATE INDEX sdlc_actions_label_created ON sdlc_actions (label, created_at, id);
              CREATE INDEX sdlc_actions_run_ids ON sdlc_actions USING gin (run_ids);
              CREATE UNIQUE INDEX sdlc_actions_slots ON sdlc_actions (series, slot)
                  WHERE slot IS NOT NULL;
              CREATE INDEX sdlc_actions_leases ON sdlc_actions (lease_until)
                  WHERE status = 2;
              CREATE INDEX sdlc_actions_claims ON sdlc_actions (node) WHERE status = 2;
              CREATE TABLE sdlc_series (
                  series uuid PRIMARY KEY,
                  head uuid NOT NULL
              );
              CREATE TABLE sdlc_plan_runs (
                  id uuid PRIMARY KEY,
                  plan_id text NOT NULL,
                  status text NOT NULL,
                  created_at bigint NOT NULL,
                  record bytea NOT NULL
              );
              CREATE INDEX sdlc_plan_runs_time ON sdlc_plan_runs (created_at, id);
              CREATE INDEX sdlc_plan_runs_plan ON sdlc_plan_runs (plan_id, created_at, id);
              CREATE TABLE sdlc_plan_specs (
                  id uuid PRIMARY KEY,
                  record bytea NOT NULL
              );
              CREATE TABLE sdlc_run_steps (
                  run uuid NOT NULL,
                  idx integer NOT NULL,
                  record bytea NOT NULL,
                  PRIMARY KEY (run, idx)
              );
              CREATE TABLE sdlc_run_queue (
                  run uuid NOT NULL,
                  idx integer NOT NULL,
                  PRIMARY KEY (run, idx)
              );
              CREATE TABLE sdlc_run_events (
                  run uuid NOT NULL,
                  seq bigint NOT NULL,
                  record bytea NOT NULL,
                  PRIMARY KEY (run, seq)
              );
              CREATE TABLE sdlc_notify_config (
                  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                  record bytea NOT NULL
              );
              CREATE TABLE sdlc_outbox (
                  id uuid PRIMARY KEY,
                  pending boolean NOT NULL,
                  next_try_at bigint NOT NULL,
                  created_at bigint NOT NULL,
                  record bytea NOT NULL
              );
              CREATE INDEX sdlc_outbox_due ON sdlc_outbox (next_try_at, id) WHERE pending;
              CREATE TABLE sdlc_routes (
                  id uuid PRIMARY KEY,
                  path text NOT NULL UNIQUE,
                  record bytea NOT NULL
              );
              CREATE TABLE sdlc_delivery_ids (
                  route uuid NOT NULL,
                  delivery_id text NOT NULL,
                  first uuid NOT NULL,
                  seen_at bigint NOT NULL,
                  PRIMARY KEY (route, delivery_id)
              );
              CREATE TABLE sdlc_ui_sessions (
                  key bytea PRIMARY KEY,
                  expires_at bigint NOT NULL,
                  record bytea NOT NULL
              );",
    },
    Migration {
        version: 3,
        what: "which claims' tools were started",
        // `started_claim` is the claim under which the action's tool was started (written
        // before the tool starts): a dead node's claim without it provably never started.
        // Running rows from before it are taken as started, since nothing proves otherwise.
        sql: "ALTER TABLE sdlc_actions ADD COLUMN started_claim uuid;
              UPDATE sdlc_actions SET started_claim = claim WHERE status = 2;",
    },
    Migration {
        version: 4,
        what: "named API tokens",
        // `digest` is the SHA-256 of the token's secret (the secret is never stored).
        sql: "CREATE TABLE sdlc_api_tokens (
                  digest bytea PRIMARY KEY,
                  name text NOT NULL UNIQUE,
                  record bytea NOT NULL
              );",
    },
    Migration {
        version: 5,
        what: "a table to probe for disk space",
        // Written to (and rolled back) only while PostgreSQL's disk is full, to learn when
        // there is room again (see `PgStore::reopen`).
        sql: "CREATE TABLE sdlc_space_probe (b bytea NOT NULL);",
    },
    Migration {
        version: 6,
        what: "whole run logs",
        // One row per attempt that printed anything (`crate::logs`' stored form), gone with
        // its action. `partial`: what a run still going had printed when its node last
        // wrote it (so followers on other nodes see it); the final log replaces it, and a
        // late partial write never replaces a final one.
        sql: "CREATE TABLE sdlc_run_logs (
                  action_id uuid NOT NULL REFERENCES sdlc_actions (id) ON DELETE CASCADE,
                  attempt integer NOT NULL,
                  log bytea NOT NULL,
                  partial boolean NOT NULL DEFAULT false,
                  PRIMARY KEY (action_id, attempt)
              );",
    },
    Migration {
        version: 7,
        what: "history by run time",
        // `run_at`: the time an action's trigger gave it (a schedule's slot, a webhook's
        // arrival, when a manual run was asked), what history pages are ordered and
        // filtered by (see `store::history`). Rows from before it take their slot, else
        // their creation time, which is when a manual run was asked and within a moment of
        // a webhook's arrival.
        sql: "ALTER TABLE sdlc_actions ADD COLUMN run_at bigint;
              UPDATE sdlc_actions SET run_at = coalesce(slot, created_at);
              ALTER TABLE sdlc_actions ALTER COLUMN run_at SET NOT NULL;
              DROP INDEX sdlc_actions_created, sdlc_actions_status_created,
                  sdlc_actions_tool_created, sdlc_actions_series_created,
                  sdlc_actions_label_created;
              CREATE INDEX sdlc_actions_run_at ON sdlc_actions (run_at, id);
              CREATE INDEX sdlc_actions_status_run_at ON sdlc_actions (status, run_at, id);
              CREATE INDEX sdlc_actions_tool_run_at ON sdlc_actions (tool, run_at, id);
              CREATE INDEX sdlc_actions_series_run_at ON sdlc_actions (series, run_at, id);
              CREATE INDEX sdlc_actions_label_run_at ON sdlc_actions (label, run_at, id);",
    },
    Migration {
        version: RUN_GROUPS_SINCE,
        what: "run groups",
        // One row per run id (`crate::run_group`): counts by status in `StatusKind::ALL`
        // order, and its times as Unix ms. Run ids compare bytewise ("C"), as redb orders
        // them, so a cursor means the same on both backends. Filled from the stored
        // actions right after (`run_groups::rebuild`: the sums need the records).
        sql: "CREATE TABLE sdlc_run_groups (
                  run_id text COLLATE \"C\" PRIMARY KEY,
                  pending bigint NOT NULL,
                  running bigint NOT NULL,
                  completed bigint NOT NULL,
                  failed bigint NOT NULL,
                  paused bigint NOT NULL,
                  skipped bigint NOT NULL,
                  awaiting_approval bigint NOT NULL,
                  canceled bigint NOT NULL,
                  first_run_at bigint NOT NULL,
                  first_started_at bigint,
                  last_ended_at bigint
              );
              CREATE INDEX sdlc_run_groups_first_run ON sdlc_run_groups (first_run_at, run_id);",
    },
];

/// The migration that adds the run groups, whose rows are summed from the actions in Rust.
const RUN_GROUPS_SINCE: i64 = 8;

/// The schema version this build writes.
pub const LATEST_SCHEMA: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The advisory lock every migrating daemon takes (any fixed number; "sdlc" in ASCII).
const MIGRATION_LOCK: i64 = 0x7364_6c63;

/// Applies what `client`'s database lacks, all or nothing. A database already at this
/// build's schema is only read (no lock: commands connect often and at once).
pub(super) fn migrate(client: &mut postgres::Client, url: &str) -> Result<(), StoreError> {
    migrate_to(client, url, LATEST_SCHEMA)
}

/// Applies the migrations up to version `target` (the latest, but for tests of a migration).
fn migrate_to(client: &mut postgres::Client, url: &str, target: i64) -> Result<(), StoreError> {
    let current = client
        .query_opt(
            "SELECT version FROM sdlc_schema WHERE to_regclass('sdlc_schema') IS NOT NULL",
            &[],
        )
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if current == Some(target) {
        return Ok(());
    }
    let mut tx = client
        .transaction()
        .map_err(|e| failed(url, "cannot begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| failed(url, "cannot take the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sdlc_schema (
             only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
             version bigint NOT NULL
         );",
    )
    .map_err(|e| failed(url, "cannot create the schema table", e))?;
    let found = stored_version(&mut tx, url)?.unwrap_or(0);
    if found > LATEST_SCHEMA {
        return Err(StoreError::NewerPgSchema {
            url: url.to_string(),
            found,
            supported: LATEST_SCHEMA,
        });
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        tx.batch_execute(migration.sql).map_err(|e| {
            failed(
                url,
                &format!(
                    "migration {} ({}) failed",
                    migration.version, migration.what
                ),
                e,
            )
        })?;
    }
    if found < RUN_GROUPS_SINCE && target >= RUN_GROUPS_SINCE {
        super::run_groups::rebuild(&mut tx)
            .map_err(|e| failed(url, "cannot sum the run groups of the stored actions", e))?;
    }
    if found < target {
        tx.execute(
            "INSERT INTO sdlc_schema (version) VALUES ($1)
             ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
            &[&target],
        )
        .map_err(|e| failed(url, "cannot record the schema version", e))?;
    }
    tx.commit()
        .map_err(|e| failed(url, "cannot commit the migration", e))
}

/// The version recorded in `client`'s database (None before the first migration).
pub(super) fn stored_version(
    client: &mut impl GenericClient,
    url: &str,
) -> Result<Option<i64>, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('sdlc_schema') IS NOT NULL", &[])
        .map_err(|e| failed(url, "cannot read the schema version", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT version FROM sdlc_schema", &[])
        .map_err(|e| failed(url, "cannot read the schema version", e))?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_actions_of_a_schema_2_database_count_as_started_after_migrating() {
        let url = sdlc_pgtest::Cluster::shared()
            .expect("the PostgreSQL tests need a server")
            .fresh_database()
            .unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        migrate_to(&mut client, &url, 2).unwrap();
        let (running, pending, claim) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        for (id, status, claim) in [(running, 2i16, Some(claim)), (pending, 1, None)] {
            client
                .execute(
                    "INSERT INTO sdlc_actions (id, status, series, updated_at, created_at, tool,
                         label, run_ids, recurring, claim, record)
                     VALUES ($1, $2, $1, 0, 0, 't', 'l', '{}', false, $3, '')",
                    &[&id, &status, &claim],
                )
                .unwrap();
        }
        migrate(&mut client, &url).unwrap();
        let started: Vec<(uuid::Uuid, bool)> = client
            .query(
                "SELECT id, started_claim IS NOT DISTINCT FROM claim AND claim IS NOT NULL
                 FROM sdlc_actions ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut expected = vec![(running, true), (pending, false)];
        expected.sort();
        assert_eq!(started, expected);
    }

    #[test]
    fn rows_of_a_schema_6_database_get_their_run_time_from_their_slot_or_creation() {
        let url = sdlc_pgtest::Cluster::shared()
            .expect("the PostgreSQL tests need a server")
            .fresh_database()
            .unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        migrate_to(&mut client, &url, 6).unwrap();
        let (occurrence, manual) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for (id, slot) in [(occurrence, Some(3_600_000i64)), (manual, None)] {
            client
                .execute(
                    "INSERT INTO sdlc_actions (id, status, series, updated_at, created_at, tool,
                         label, run_ids, recurring, slot, record)
                     VALUES ($1, 1, $1, 0, 1000, 't', 'l', '{}', false, $2, '')",
                    &[&id, &slot],
                )
                .unwrap();
        }
        migrate(&mut client, &url).unwrap();
        let mut run_at = |id: uuid::Uuid| -> i64 {
            client
                .query_one("SELECT run_at FROM sdlc_actions WHERE id = $1", &[&id])
                .unwrap()
                .get(0)
        };
        assert_eq!(run_at(occurrence), 3_600_000);
        assert_eq!(run_at(manual), 1_000);
    }

    #[test]
    fn the_run_groups_of_a_schema_7_database_are_summed_from_its_actions() {
        use crate::store::Store;
        let url = sdlc_pgtest::Cluster::shared()
            .expect("the PostgreSQL tests need a server")
            .fresh_database()
            .unwrap();
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let store = crate::store::pg::PgStore::connect(&url, 2).unwrap();
        let runs: Vec<crate::model::Action> = [("ci-1", 1_000), ("ci-1", 2_000), ("ci-2", 3_000)]
            .into_iter()
            .map(|(run, slot)| {
                let trigger = crate::model::ActionTrigger::Scheduled {
                    next_tick_at: at(slot),
                };
                let mut a =
                    crate::model::Action::new("l", "t", serde_json::json!({}), trigger, at(0));
                a.run_id = Some(run.to_string());
                a
            })
            .collect();
        store.insert_many(&runs).unwrap();
        drop(store);
        // As a schema 7 database holds them: no groups.
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute("DROP TABLE sdlc_run_groups; UPDATE sdlc_schema SET version = 7;")
            .unwrap();
        migrate(&mut client, &url).unwrap();
        let store = crate::store::pg::PgStore::connect(&url, 2).unwrap();
        let groups = store
            .run_groups(&crate::run_group::GroupFilter::default(), None, 10)
            .unwrap()
            .items;
        let summed: Vec<(&str, u64, i64)> = groups
            .iter()
            .map(|g| {
                (
                    g.run_id.as_str(),
                    g.counts.pending,
                    g.first_run_at.timestamp_millis(),
                )
            })
            .collect();
        assert_eq!(summed, [("ci-2", 1, 3_000), ("ci-1", 2, 1_000)]);
    }
}
