//! Waiting-room tickets on PostgreSQL: each change is one statement (`sql::ENQUEUE_TICKET`
//! and the rest); the partial unique index settles two nodes queueing the same key.

use super::conn::PgStore;
use crate::domain::allocation::OrderRequest;
use crate::domain::Timestamp;
use crate::store::waiting_room::{
    encode_request, outcome_columns, ticket_from_row, TicketOutcome, TicketRecord, WaitingLine,
    WaitingRoomStore,
};
use crate::store::{sql, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl WaitingRoomStore for PgStore {
    #[tracing::instrument(skip_all, fields(user_id = request.user_id))]
    async fn enqueue_ticket(
        &self,
        id: &str,
        request: &OrderRequest,
        max_waiting: i64,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRecord>> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(sql::ENQUEUE_TICKET)
            .bind(id)
            .bind(request.user_id)
            .bind(&request.idempotency_key)
            .bind(encode_request(request))
            .bind(now.millis())
            .bind(max_waiting)
            .fetch_optional(&mut *tx)
            .await?;
        let row = match inserted {
            Some(row) => Some(row),
            None => {
                sqlx::query(sql::OPEN_TICKET_OF_KEY)
                    .bind(request.user_id)
                    .bind(&request.idempotency_key)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        row.as_ref().map(ticket_from_row).transpose()
    }

    async fn ticket(&self, id: &str) -> StoreResult<Option<TicketRecord>> {
        let row = sqlx::query(sql::TICKET_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(ticket_from_row).transpose()
    }

    async fn waiting_line(&self) -> StoreResult<WaitingLine> {
        let row = sqlx::query(sql::WAITING_LINE).fetch_one(&self.pool).await?;
        let head: Option<i64> = row.try_get("head")?;
        let tail: Option<i64> = row.try_get("tail")?;
        let last_admitted: Option<i64> = row.try_get("last_admitted")?;
        let last_done: Option<i64> = row.try_get("last_done")?;
        Ok(WaitingLine::new(head, tail, last_admitted, last_done))
    }

    async fn admit_tickets(&self, limit: i64) -> StoreResult<Vec<TicketRecord>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(sql::ADMIT_TICKETS)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut tickets = rows
            .iter()
            .map(ticket_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        tickets.sort_by_key(|t| t.seq);
        Ok(tickets)
    }

    async fn readmit_tickets(&self, seqs: Option<&[i64]>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        match seqs {
            None => {
                changed = sqlx::query(sql::READMIT_ALL_TICKETS)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            Some(seqs) => {
                for seq in seqs {
                    changed += sqlx::query(sql::READMIT_TICKET)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn finish_ticket(
        &self,
        seq: i64,
        attempts: i64,
        outcome: &TicketOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (kind, order_id, rejection) = outcome_columns(outcome);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql::FINISH_TICKET)
            .bind(seq)
            .bind(kind)
            .bind(order_id)
            .bind(rejection)
            .bind(now.millis())
            .bind(attempts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn prune_tickets(&self, before: Timestamp, limit: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let pruned = sqlx::query(sql::PRUNE_TICKETS)
            .bind(before.millis())
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pruned.rows_affected())
    }
}
