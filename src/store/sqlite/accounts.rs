//! Users, refresh-token sessions, the access-token deny-list and settings on SQLite.

use super::conn::SqliteStore;
use super::outbox;
use crate::domain::{events, Timestamp};
use crate::store::error::conflict_on_unique;
use crate::store::rows::user_from_row;
use crate::store::{sql, AuthStore, NewUser, RotateOutcome, StoreResult, UserRecord};
use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};

/// Rows per multi-row INSERT when provisioning: 5 parameters each stays far below
/// SQLite's 32,766 bound-parameter limit.
const BULK_CHUNK_ROWS: usize = 1000;

#[async_trait]
impl AuthStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn insert_user(&self, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sql::INSERT_USER)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.partner_id)
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_on_unique(sql::USERS_EMAIL_KEY, "email_taken"))?;
        let record = user_from_row(&row)?;
        let event = events::user_created(record.id, record.role, record.partner_id);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(record)
    }

    #[tracing::instrument(skip_all, fields(count = users.len()))]
    async fn insert_users_bulk(&self, users: &[NewUser], now: Timestamp) -> StoreResult<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(users.len());
        for chunk in users.chunks(BULK_CHUNK_ROWS) {
            ids.extend(insert_chunk(&mut tx, chunk, now).await?);
        }
        let created: Vec<_> = users
            .iter()
            .zip(&ids)
            .map(|(user, id)| events::user_created(*id, user.role, user.partner_id))
            .collect();
        outbox::append(&mut tx, &created, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all)]
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::USER_BY_EMAIL)
            .bind(email)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(user_id = id))]
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id))]
    async fn create_session(
        &self,
        user_id: i64,
        refresh_hash: &str,
        refresh_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(sql::INSERT_SESSION)
            .bind(user_id)
            .bind(refresh_hash)
            .bind(refresh_expires_at.millis())
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await?;
        let event = events::session(events::SESSION_STARTED, user_id, id);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(id)
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome> {
        let mut tx = self.write_tx().await?;
        let rotated = sqlx::query(sql::ROTATE_REFRESH)
            .bind(old_hash)
            .bind(new_hash)
            .bind(new_expires_at.millis())
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match rotated {
            Some(row) => {
                let (session_id, user_id) = (row.try_get("id")?, row.try_get("user_id")?);
                let event = events::session(events::SESSION_ROTATED, user_id, session_id);
                outbox::append(&mut tx, &[event], now).await?;
                RotateOutcome::Rotated {
                    session_id,
                    user_id,
                }
            }
            None => revoke_reused(&mut tx, old_hash, now).await?,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, fields(user_id = user_id, session_id = session_id))]
    async fn revoke_session(
        &self,
        user_id: i64,
        session_id: i64,
        jti: &str,
        access_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::REVOKE_SESSION)
            .bind(session_id)
            .bind(user_id)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::DENY_TOKEN)
            .bind(jti)
            .bind(access_expires_at.millis())
            .execute(&mut *tx)
            .await?;
        let event = events::session_revoked(user_id, session_id, jti, access_expires_at);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn revoked_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(sql::REVOKED_TOKENS)
            .bind(now.millis())
            .fetch_all(&self.reader)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn revoked_sessions(&self, since: Timestamp) -> StoreResult<Vec<(i64, Timestamp)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(sql::REVOKED_SESSIONS)
            .bind(since.millis())
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (id, Timestamp::from_millis(at)))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(key = key))]
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::INSERT_SETTING)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let stored: String = sqlx::query_scalar(sql::SETTING)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }
}

/// One multi-row INSERT of up to [`BULK_CHUNK_ROWS`] users; their ids in input order (the
/// single writer assigns them in row order).
async fn insert_chunk(
    conn: &mut SqliteConnection,
    chunk: &[NewUser],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let values: Vec<String> = (0..chunk.len())
        .map(|i| {
            let b = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )
        })
        .collect();
    let statement = format!(
        "INSERT INTO users (email, password_hash, role, partner_id, created_at) VALUES {} RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(&statement);
    for user in chunk {
        query = query
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.partner_id)
            .bind(now.millis());
    }
    query
        .fetch_all(conn)
        .await
        .map_err(conflict_on_unique(sql::USERS_EMAIL_KEY, "email_taken"))
}

/// A token that was already rotated away is being replayed: whoever holds it may have
/// stolen it, so the whole session dies.
async fn revoke_reused(
    conn: &mut SqliteConnection,
    old_hash: &str,
    now: Timestamp,
) -> StoreResult<RotateOutcome> {
    let reused: Option<(i64, i64)> = sqlx::query_as(sql::REVOKE_REUSED_SESSION)
        .bind(old_hash)
        .bind(now.millis())
        .fetch_optional(&mut *conn)
        .await?;
    let Some((session_id, user_id)) = reused else {
        return Ok(RotateOutcome::Invalid);
    };
    let event = events::session_reuse_revoked(user_id, session_id);
    outbox::append(conn, &[event], now).await?;
    Ok(RotateOutcome::Reused { session_id })
}
