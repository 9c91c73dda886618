//! Leases: one holder at a time per name, for work that must run once per cluster (the
//! points expiry job today; every scheduled job of DESIGN §4 tomorrow).

use super::error::StoreResult;
use crate::domain::Timestamp;
use async_trait::async_trait;

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `until`: one conditional upsert
    /// that succeeds when the lease is free, expired, or already `holder`'s.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
}
