//! Webhook routes and ingress on PostgreSQL. A delivery becomes its action in the
//! transaction that acknowledges it (there is no inbox to dispatch from: the commit that
//! makes the 202 true stores the action, due at once), and a repeated delivery id is refused
//! by the primary key of `sdlc_delivery_ids`, whichever node received each copy.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use super::txn::{PgTxn, fail};
use crate::error::StoreError;
use crate::store::{DEDUPE_WINDOW_MS, Ingested, decode_json, encode_json, rules};
use crate::webhook::{
    Delivery, WebhookRoute, delivery_action_rendered, normalize_path, render_input,
};

impl PgStore {
    /// Stores a new route. Its path must not be taken.
    pub fn insert_route(&self, route: &WebhookRoute) -> Result<(), StoreError> {
        let record = encode_json(route.id, route)?;
        let inserted = self.route_change(|tx| {
            tx.execute(
                "INSERT INTO sdlc_routes (id, path, record) VALUES ($1, $2, $3)
                 ON CONFLICT (path) DO NOTHING",
                &[&route.id, &route.path, &record],
            )
        })?;
        if inserted == 0 {
            return Err(StoreError::DuplicatePath(route.path.clone()));
        }
        Ok(())
    }

    /// Runs one change of the routes and, in its transaction, tells every node to reload
    /// the routes it serves (delivered when it commits).
    fn route_change<T>(
        &self,
        change: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let url = self.db.shown_url();
        let mut client = self.db.client()?;
        let mut tx = client
            .transaction()
            .map_err(|e| fail(url, "cannot begin a transaction", e))?;
        let value = change(&mut tx).map_err(|e| fail(url, "cannot change the routes", e))?;
        tx.execute("SELECT pg_notify($1, '')", &[&super::wake::ROUTES_CHANNEL])
            .map_err(|e| fail(url, "cannot tell the nodes of a route change", e))?;
        tx.commit().map_err(|e| fail(url, "cannot commit", e))?;
        Ok(value)
    }

    /// Every route, by path.
    pub fn routes(&self) -> Result<Vec<WebhookRoute>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query("SELECT id, record FROM sdlc_routes ORDER BY path", &[])
            .map_err(|e| fail(self.db.shown_url(), "cannot list routes", e))?;
        rows.iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect()
    }

    /// The route registered at `path` (already normalised).
    pub fn route_by_path(&self, path: &str) -> Result<Option<WebhookRoute>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_routes WHERE path = $1",
                &[&path],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a route", e))?;
        rows.first()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .transpose()
    }

    /// Removes a route given its id or its path. Deliveries already acknowledged still run.
    pub fn delete_route(&self, id_or_path: &str) -> Result<WebhookRoute, StoreError> {
        let id = Uuid::parse_str(id_or_path).ok();
        let path = normalize_path(id_or_path).ok();
        let rows = self.route_change(|tx| {
            tx.query(
                "DELETE FROM sdlc_routes WHERE id = $1 OR path = $2 RETURNING id, record",
                &[&id, &path],
            )
        })?;
        match rows.first() {
            Some(row) => decode_json(row.get(0), row.get(1)),
            None => Err(StoreError::RouteNotFound(id_or_path.to_string())),
        }
    }

    /// Stores acknowledged deliveries in one transaction, each as the action it becomes (see
    /// `ActionDb::ingest`). A delivery whose id was already seen on the same route within a
    /// day is not stored; its answer is the first delivery's id.
    pub fn ingest(
        &self,
        deliveries: &[Delivery],
        now: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError> {
        self.write_at(
            now,
            |t| {
                let mut results = Vec::with_capacity(deliveries.len());
                for delivery in deliveries {
                    if let Some(first) = remember_delivery_id(t, delivery, now)? {
                        results.push(Ingested {
                            id: first,
                            duplicate: true,
                        });
                        continue;
                    }
                    let action = delivery_action_rendered(
                        delivery,
                        render_input(delivery),
                        delivery.received_at,
                    );
                    rules::insert_many_in(t, std::slice::from_ref(&action))?;
                    results.push(Ingested {
                        id: delivery.id,
                        duplicate: false,
                    });
                }
                Ok(results)
            },
            |_| true,
        )
    }

    /// Deliveries acknowledged and not yet actions: none on PostgreSQL (each is stored as
    /// its action when acknowledged).
    pub fn inbox_len(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// Records `delivery`'s id for its route, unless a delivery with the same id came within
/// the de-duplication window: then returns that one's id (this one is a repeat). Two nodes
/// receiving the same id at once meet on the primary key: the second waits for the first's
/// commit and finds it.
fn remember_delivery_id(
    t: &mut PgTxn<'_>,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    let Some(delivery_id) = &delivery.delivery_id else {
        return Ok(None);
    };
    let now_ms = now.timestamp_millis();
    let rows = t.query_rows(
        "cannot record a delivery id",
        "INSERT INTO sdlc_delivery_ids (route, delivery_id, first, seen_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (route, delivery_id) DO UPDATE
             SET first = excluded.first, seen_at = excluded.seen_at
             WHERE sdlc_delivery_ids.seen_at <= $4 - $5
         RETURNING first",
        &[
            &delivery.route_id,
            delivery_id,
            &delivery.id,
            &now_ms,
            &DEDUPE_WINDOW_MS,
        ],
    )?;
    if !rows.is_empty() {
        return Ok(None);
    }
    let rows = t.query_rows(
        "cannot read a delivery id",
        "SELECT first FROM sdlc_delivery_ids WHERE route = $1 AND delivery_id = $2",
        &[&delivery.route_id, delivery_id],
    )?;
    Ok(rows.first().map(|row| row.get(0)))
}
