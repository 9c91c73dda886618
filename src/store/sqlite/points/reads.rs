//! Reads: the buyer's summary and history, and the audit
//! that checks accounts, lots and ledger agree.

use super::super::conn::snapshot;
use crate::domain::Timestamp;
use crate::store::rows::ledger_from_row;
use crate::store::{
    sql, Page, PageRequest, PointsAccount, PointsAudit, PointsAuditRows, PointsExpiring,
    PointsLedgerRecord, PointsSummary, StoreResult,
};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::SqliteConnection;

async fn all<T>(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<Vec<T>>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, SqliteRow>,
{
    Ok(sqlx::query_as(sql).fetch_all(conn).await?)
}

/// One read transaction: every number comes from the same snapshot.
pub(super) async fn points_audit(pool: &SqlitePool) -> StoreResult<PointsAudit> {
    let mut tx = pool.begin().await?;
    let conn = &mut *tx;
    let rows = PointsAuditRows {
        accounts: all(conn, sql::AUDIT_POINTS_ACCOUNTS).await?,
        ledger_by_user: all(conn, sql::AUDIT_POINTS_LEDGER_BY_USER).await?,
        lot_sums: all(conn, sql::AUDIT_POINTS_LOT_SUMS).await?,
        lots: all(conn, sql::AUDIT_POINTS_LOTS).await?,
        ledger_by_lot: all(conn, sql::AUDIT_POINTS_LEDGER_BY_LOT).await?,
        holds: all(conn, sql::AUDIT_POINTS_HOLDS).await?,
        ledger_by_order: all(conn, sql::AUDIT_POINTS_LEDGER_BY_ORDER).await?,
    };
    tx.commit().await?;
    PointsAudit::assemble(rows)
}

/// The account and its unheld lot remainders expiring by `horizon`, from one snapshot.
pub(super) async fn summary(
    pool: &SqlitePool,
    user_id: i64,
    horizon: Timestamp,
) -> StoreResult<PointsSummary> {
    let mut tx = pool.begin().await?;
    let account: Option<(i64, i64)> = sqlx::query_as(sql::POINTS_ACCOUNT)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    let expiring: Vec<(i64, i64)> = sqlx::query_as(sql::EXPIRING_POINTS)
        .bind(user_id)
        .bind(horizon.millis())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let (balance, held) = account.unwrap_or_default();
    Ok(PointsSummary {
        account: PointsAccount {
            user_id,
            balance,
            held,
        },
        expiring: expiring
            .into_iter()
            .map(|(at, amount)| PointsExpiring {
                amount,
                expires_at: Timestamp::from_millis(at),
            })
            .collect(),
    })
}

pub(super) async fn history(
    pool: &SqlitePool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<PointsLedgerRecord>> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sql::POINTS_HISTORY_PAGE)
        .bind(user_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_POINTS_HISTORY)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(ledger_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}
