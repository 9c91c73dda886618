//! Reads: the ledger's rows and the audit that checks accounts, lots and ledger agree.

use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::{PointsAudit, PointsAuditRows, PointsLedgerRecord, StoreError, StoreResult};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

fn kind_of(raw: &str) -> StoreResult<PointsKind> {
    PointsKind::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("points kind {raw:?}")))
}

async fn all<T>(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<Vec<T>>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, SqliteRow>,
{
    Ok(sqlx::query_as(sql).fetch_all(conn).await?)
}

pub(super) async fn points_audit(conn: &mut SqliteConnection) -> StoreResult<PointsAudit> {
    let rows = PointsAuditRows {
        accounts: all(conn, "SELECT user_id, balance, held FROM point_accounts").await?,
        ledger_by_user: all(
            conn,
            "SELECT user_id, kind, SUM(amount) FROM point_ledger GROUP BY user_id, kind",
        )
        .await?,
        lot_sums: all(
            conn,
            "SELECT user_id, SUM(remaining), SUM(held) FROM point_lots GROUP BY user_id",
        )
        .await?,
        lots: all(
            conn,
            "SELECT id, user_id, amount, remaining, held FROM point_lots ORDER BY id",
        )
        .await?,
        ledger_by_lot: all(
            conn,
            "SELECT lot_id, kind, SUM(amount) FROM point_ledger WHERE lot_id IS NOT NULL
             GROUP BY lot_id, kind",
        )
        .await?,
        holds: all(
            conn,
            "SELECT order_id, user_id, amount, status FROM point_holds ORDER BY order_id",
        )
        .await?,
        ledger_by_order: all(
            conn,
            "SELECT order_id, kind, SUM(amount) FROM point_ledger
             WHERE order_id IS NOT NULL AND kind IN ('hold', 'release', 'spend', 'refund')
             GROUP BY order_id, kind",
        )
        .await?,
    };
    PointsAudit::assemble(rows)
}

pub(super) fn ledger_from_row(row: &SqliteRow) -> StoreResult<PointsLedgerRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(PointsLedgerRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: kind_of(&kind)?,
        amount: row.try_get("amount")?,
        lot_id: row.try_get("lot_id")?,
        order_id: row.try_get("order_id")?,
        reason: row.try_get("reason")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}
