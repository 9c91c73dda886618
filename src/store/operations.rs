//! What operators watch (issue 13, `app::operations`): the nodes' heartbeats, and the reads
//! of the operations page — the products in play with their stock, the coupon campaigns
//! issuing, the open dead letters. Each read is bounded (a limit, or a window of the newest
//! rows), so the page costs the same whatever the size of the catalog or the ledger.

use super::error::StoreResult;
use super::rows::Columns;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait OperationsStore: Send + Sync {
    /// Writes a node's heartbeat (its row created on the first), and deletes the rows of
    /// nodes not seen since `forget_before`.
    async fn beat(&self, beat: &NodeBeat, forget_before: Timestamp) -> StoreResult<()>;
    /// Deletes a stopping node's row: it no longer counts as alive.
    async fn forget_node(&self, id: &str) -> StoreResult<()>;
    /// Every node with a row, oldest first.
    async fn nodes(&self) -> StoreResult<Vec<NodeBeat>>;
    /// Products in play, at most `limit`: those whose stock moved among the newest
    /// `recent_movements` movements since `moved_since`, most recent first, then those
    /// released between `released.0` and `released.1`.
    async fn products_in_play(
        &self,
        moved_since: Timestamp,
        recent_movements: i64,
        released: (Timestamp, Timestamp),
        limit: i64,
    ) -> StoreResult<Vec<ProductInPlay>>;
    /// Coupon campaigns whose issuing window meets `[from, to]`, newest first.
    async fn campaigns_in_play(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<CampaignProgress>>;
    async fn open_dead_letters(&self) -> StoreResult<i64>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    pub id: String,
    pub started_at: Timestamp,
    pub seen_at: Timestamp,
    pub draining: bool,
    /// The node's published counters, encoded by `app::operations`.
    pub stats: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInPlay {
    pub id: i64,
    pub name: String,
    pub price: i64,
    pub release_at: Timestamp,
    pub on_hand: i64,
    pub held: i64,
    /// Units taken by orders: held or sold, not released or returned (from the ledger).
    pub sold: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignProgress {
    pub id: i64,
    pub name: String,
    pub issued: i64,
    pub total: i64,
}

/// Appends the ids of `more` not in `ids`, up to `limit` in all.
pub(crate) fn add_unseen(ids: &mut Vec<i64>, more: Vec<i64>, limit: i64) {
    let limit = usize::try_from(limit).unwrap_or(0);
    for id in more {
        if ids.len() >= limit {
            break;
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.truncate(limit);
}

/// Columns of `sql::PRODUCT_IN_PLAY`.
pub(crate) fn product_in_play_from_row(row: &impl Columns) -> StoreResult<ProductInPlay> {
    Ok(ProductInPlay {
        id: row.int("id")?,
        name: row.text("name")?,
        price: row.int("price")?,
        release_at: row.ts("release_at")?,
        on_hand: row.int("on_hand")?,
        held: row.int("held")?,
        sold: row.int("sold")?,
    })
}

/// Columns of `sql::CAMPAIGNS_IN_PLAY`.
pub(crate) fn campaign_from_row(row: &impl Columns) -> StoreResult<CampaignProgress> {
    Ok(CampaignProgress {
        id: row.int("id")?,
        name: row.text("name")?,
        issued: row.int("issued")?,
        total: row.int("total_quantity")?,
    })
}

/// Columns of `sql::NODES` but `draining` (a boolean, decoded by each backend).
pub(crate) fn node_from_row(row: &impl Columns, draining: bool) -> StoreResult<NodeBeat> {
    Ok(NodeBeat {
        id: row.text("id")?,
        started_at: row.ts("started_at")?,
        seen_at: row.ts("seen_at")?,
        draining,
        stats: row.text("stats")?,
    })
}

#[cfg(test)]
mod tests {
    use super::add_unseen;

    #[test]
    fn released_products_follow_the_moved_ones_once_each_within_the_limit() {
        let mut ids = vec![5, 3];
        add_unseen(&mut ids, vec![3, 9, 8, 7], 4);
        assert_eq!(ids, vec![5, 3, 9, 8]);
        let mut ids = vec![1, 2, 3];
        add_unseen(&mut ids, vec![4], 2);
        assert_eq!(ids, vec![1, 2]);
    }
}
