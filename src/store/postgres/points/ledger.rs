//! The points ledger's rows: every points change appends them in its transaction. A leaf
//! of `points/`.

use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::{sql, StoreResult};
use sqlx::postgres::PgConnection;

/// One ledger row about to be appended.
pub(super) struct LedgerRow<'a> {
    pub user_id: i64,
    pub kind: PointsKind,
    pub amount: i64,
    pub lot_id: Option<i64>,
    pub order_id: Option<i64>,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

pub(super) async fn append_ledger(
    conn: &mut PgConnection,
    row: &LedgerRow<'_>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(sql::APPEND_POINTS_LEDGER)
        .bind(row.user_id)
        .bind(row.kind.as_str())
        .bind(row.amount)
        .bind(row.lot_id)
        .bind(row.order_id)
        .bind(row.reason)
        .bind(row.idempotency_key)
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}
