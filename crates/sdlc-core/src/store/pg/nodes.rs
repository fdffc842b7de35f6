//! The nodes sharing a PostgreSQL database (`sdlc_nodes`): each daemon registers under its
//! name at start and renews its lease with a heartbeat; a node whose lease has run out is
//! presumed dead, and the others take over what it held. A node that finds its row gone on a
//! heartbeat was presumed dead meanwhile and must not record anything more.

use chrono::{DateTime, Utc};

use super::{PgDb, failed};
use crate::StoreError;

/// One node as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

impl NodeInfo {
    /// Whether its lease still holds at `now`.
    pub fn alive_at(&self, now: DateTime<Utc>) -> bool {
        self.lease_until > now
    }
}

impl PgDb {
    /// Registers node `node` as started at `now`, its lease until `lease_until`. A node of the
    /// same name whose lease has run out is replaced; one whose lease still holds is refused,
    /// since two daemons under one name would fence each other out.
    pub fn register_node(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let taken = client
            .execute(
                "INSERT INTO sdlc_nodes (node, started_at, heartbeat_at, lease_until)
                 VALUES ($1, $2, $2, $3)
                 ON CONFLICT (node) DO UPDATE
                     SET started_at = excluded.started_at,
                         heartbeat_at = excluded.heartbeat_at,
                         lease_until = excluded.lease_until
                     WHERE sdlc_nodes.lease_until <= excluded.started_at",
                &[&node, &now, &lease_until],
            )
            .map_err(|e| failed(&self.shown, "cannot register the node", e))?;
        if taken == 0 {
            return Err(StoreError::NodeNameTaken {
                url: self.shown.clone(),
                node: node.to_string(),
            });
        }
        Ok(())
    }

    /// Renews node `node`'s lease. False when its row is gone: the others presumed it dead.
    pub fn heartbeat(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let renewed = client
            .execute(
                "UPDATE sdlc_nodes SET heartbeat_at = $2, lease_until = GREATEST(lease_until, $3)
                 WHERE node = $1",
                &[&node, &now, &lease_until],
            )
            .map_err(|e| failed(&self.shown, "cannot renew the node's lease", e))?;
        Ok(renewed == 1)
    }

    /// Removes node `node` (its daemon stopped cleanly, or the others found its lease over).
    pub fn forget_node(&self, node: &str) -> Result<(), StoreError> {
        let mut client = self.client()?;
        client
            .execute("DELETE FROM sdlc_nodes WHERE node = $1", &[&node])
            .map_err(|e| failed(&self.shown, "cannot remove the node", e))?;
        Ok(())
    }

    /// Every registered node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut client = self.client()?;
        let rows = client
            .query(
                "SELECT node, started_at, heartbeat_at, lease_until FROM sdlc_nodes ORDER BY node",
                &[],
            )
            .map_err(|e| failed(&self.shown, "cannot list the nodes", e))?;
        Ok(rows
            .iter()
            .map(|row| NodeInfo {
                node: row.get(0),
                started_at: row.get(1),
                heartbeat_at: row.get(2),
                lease_until: row.get(3),
            })
            .collect())
    }
}
