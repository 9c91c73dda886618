//! Reads: the buyer's summary and history, confirmations still to earn on, and the audit
//! that checks accounts, lots and ledger agree.

use crate::domain::events::Event;
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::store::postgres::ts;
use crate::store::{
    Page, PageRequest, PointsAccount, PointsAudit, PointsAuditRows, PointsExpiring,
    PointsLedgerRecord, PointsSummary, StoreError, StoreResult,
};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::Row;

fn kind_of(raw: &str) -> StoreResult<PointsKind> {
    PointsKind::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("points kind {raw:?}")))
}

async fn all<T>(conn: &mut PgConnection, sql: &'static str) -> StoreResult<Vec<T>>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
{
    Ok(sqlx::query_as(sql).fetch_all(conn).await?)
}

/// REPEATABLE READ: every statement sees the same snapshot, so balances, lots and ledger
/// agree even while holds commit.
pub(super) async fn points_audit(pool: &PgPool) -> StoreResult<PointsAudit> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = PointsAuditRows {
        accounts: all(&mut tx, "SELECT user_id, balance, held FROM point_accounts").await?,
        ledger_by_user: all(
            &mut tx,
            "SELECT user_id, kind, SUM(amount)::BIGINT FROM point_ledger GROUP BY user_id, kind",
        )
        .await?,
        lot_sums: all(
            &mut tx,
            "SELECT user_id, SUM(remaining)::BIGINT, SUM(held)::BIGINT FROM point_lots \
             GROUP BY user_id",
        )
        .await?,
        lots: all(
            &mut tx,
            "SELECT id, user_id, amount, remaining, held FROM point_lots ORDER BY id",
        )
        .await?,
        ledger_by_lot: all(
            &mut tx,
            "SELECT lot_id, kind, SUM(amount)::BIGINT FROM point_ledger \
             WHERE lot_id IS NOT NULL GROUP BY lot_id, kind",
        )
        .await?,
        holds: all(
            &mut tx,
            "SELECT order_id, user_id, amount, status FROM point_holds ORDER BY order_id",
        )
        .await?,
        ledger_by_order: all(
            &mut tx,
            "SELECT order_id, kind, SUM(amount)::BIGINT FROM point_ledger \
             WHERE order_id IS NOT NULL AND kind IN ('hold', 'release', 'spend', 'refund') \
             GROUP BY order_id, kind",
        )
        .await?,
    };
    tx.commit().await?;
    PointsAudit::assemble(rows)
}

fn ledger_from_row(row: &PgRow) -> StoreResult<PointsLedgerRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(PointsLedgerRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: kind_of(&kind)?,
        amount: row.try_get("amount")?,
        lot_id: row.try_get("lot_id")?,
        order_id: row.try_get("order_id")?,
        reason: row.try_get("reason")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(super) async fn summary(
    pool: &PgPool,
    user_id: i64,
    horizon: Timestamp,
) -> StoreResult<PointsSummary> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let account: Option<(i64, i64)> =
        sqlx::query_as("SELECT balance, held FROM point_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let expiring: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT expires_at, SUM(remaining - held)::BIGINT FROM point_lots \
         WHERE user_id = $1 AND remaining > 0 AND expires_at <= $2 AND remaining > held \
         GROUP BY expires_at ORDER BY expires_at",
    )
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
    pool: &PgPool,
    user_id: i64,
    page: PageRequest,
) -> StoreResult<Page<PointsLedgerRecord>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT id, user_id, kind, amount, lot_id, order_id, reason, created_at \
         FROM point_ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(user_id)
    .bind(page.size)
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM point_ledger WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *conn)
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

pub(super) async fn unprocessed_confirmations(
    pool: &PgPool,
    consumer: &str,
    limit: i64,
) -> StoreResult<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.created_at \
         FROM outbox o \
         WHERE o.event_type = 'order.confirmed' AND NOT EXISTS ( \
             SELECT 1 FROM processed_events p WHERE p.consumer = $1 AND p.event_id = o.id) \
         ORDER BY o.id LIMIT $2",
    )
    .bind(consumer)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Event {
                id: row.try_get("id")?,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                created_at: ts(row, "created_at")?,
            })
        })
        .collect()
}
