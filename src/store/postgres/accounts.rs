//! Users, refresh-token sessions, the access-token deny-list and settings on PostgreSQL.

use super::conn::PgStore;
use super::outbox;
use crate::domain::events;
use crate::domain::Timestamp;
use crate::store::error::conflict_on_unique;
use crate::store::rows::user_from_row;
use crate::store::{sql, AuthStore, NewUser, RotateOutcome, StoreError, StoreResult, UserRecord};
use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::collections::HashMap;

#[async_trait]
impl AuthStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn insert_user(&self, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord> {
        insert_user(&self.pool, user, now).await
    }

    #[tracing::instrument(skip_all, fields(count = users.len()))]
    async fn insert_users_bulk(&self, users: &[NewUser], now: Timestamp) -> StoreResult<Vec<i64>> {
        insert_users_bulk(&self.pool, users, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::USER_BY_EMAIL)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(user_id = id))]
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
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
        create_session(&self.pool, user_id, refresh_hash, refresh_expires_at, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome> {
        rotate_refresh(&self.pool, old_hash, new_hash, new_expires_at, now).await
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
        revoke_session(&self.pool, user_id, session_id, jti, access_expires_at, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn revoked_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(sql::REVOKED_TOKENS)
            .bind(now.millis())
            .fetch_all(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn revoked_sessions(&self, since: Timestamp) -> StoreResult<Vec<(i64, Timestamp)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(sql::REVOKED_SESSIONS)
            .bind(since.millis())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (id, Timestamp::from_millis(at)))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(key = key))]
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        setting_or_insert(&self.pool, key, value).await
    }
}

async fn insert_user(pool: &PgPool, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord> {
    let mut tx = pool.begin().await?;
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

/// One statement for the whole list; ids are matched back by email (unique) rather than by
/// trusting the order of `RETURNING`, which PostgreSQL does not promise.
async fn insert_users_bulk(
    pool: &PgPool,
    users: &[NewUser],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let hashes: Vec<&str> = users.iter().map(|u| u.password_hash.as_str()).collect();
    let roles: Vec<&str> = users.iter().map(|u| u.role.as_str()).collect();
    let partners: Vec<Option<i64>> = users.iter().map(|u| u.partner_id).collect();
    let rows = sqlx::query(
        "INSERT INTO users (email, password_hash, role, partner_id, created_at) \
         SELECT u.email, u.password_hash, u.role, u.partner_id, $5 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
              WITH ORDINALITY AS u(email, password_hash, role, partner_id, ord) \
         ORDER BY u.ord \
         RETURNING id, email",
    )
    .bind(&emails)
    .bind(&hashes)
    .bind(&roles)
    .bind(&partners)
    .bind(now.millis())
    .fetch_all(&mut *tx)
    .await
    .map_err(conflict_on_unique(sql::USERS_EMAIL_KEY, "email_taken"))?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in &rows {
        ids.insert(
            row.try_get::<String, _>("email")?,
            row.try_get::<i64, _>("id")?,
        );
    }
    let ids = emails
        .iter()
        .map(|email| {
            ids.get(*email)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("no id returned for {email}")))
        })
        .collect::<StoreResult<Vec<i64>>>()?;
    let created: Vec<_> = users
        .iter()
        .zip(&ids)
        .map(|(user, id)| events::user_created(*id, user.role, user.partner_id))
        .collect();
    outbox::append(&mut tx, &created, now).await?;
    tx.commit().await?;
    Ok(ids)
}

async fn create_session(
    pool: &PgPool,
    user_id: i64,
    refresh_hash: &str,
    refresh_expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
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

/// A conditional `UPDATE` rotates the hash only while it is current, unrevoked and
/// unexpired. Two concurrent rotations of one token serialise on the row lock; the loser
/// re-evaluates its `WHERE` against the rotated row, no longer matches, finds the hash as
/// `previous_hash` instead and revokes the session as a reuse — which is what presenting
/// one refresh token twice is.
async fn rotate_refresh(
    pool: &PgPool,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<RotateOutcome> {
    let mut tx = pool.begin().await?;
    let rotated = sqlx::query(sql::ROTATE_REFRESH)
        .bind(old_hash)
        .bind(new_hash)
        .bind(new_expires_at.millis())
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
    let outcome = match rotated {
        Some(row) => {
            let (user_id, session_id) = (row.try_get("user_id")?, row.try_get("id")?);
            let event = events::session(events::SESSION_ROTATED, user_id, session_id);
            outbox::append(&mut tx, &[event], now).await?;
            RotateOutcome::Rotated {
                user_id,
                session_id,
            }
        }
        None => {
            // A token already rotated away is being replayed: whoever holds it may have
            // stolen it, so the whole session dies (once; later replays are just invalid).
            let reused: Option<(i64, i64)> = sqlx::query_as(sql::REVOKE_REUSED_SESSION)
                .bind(old_hash)
                .bind(now.millis())
                .fetch_optional(&mut *tx)
                .await?;
            match reused {
                Some((session_id, user_id)) => {
                    let event = events::session_reuse_revoked(user_id, session_id);
                    outbox::append(&mut tx, &[event], now).await?;
                    RotateOutcome::Reused { session_id }
                }
                None => RotateOutcome::Invalid,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn revoke_session(
    pool: &PgPool,
    user_id: i64,
    session_id: i64,
    jti: &str,
    access_expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
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

/// Insert-if-absent then read: the read runs after the insert's statement, so it sees
/// whichever value won a concurrent first start.
async fn setting_or_insert(pool: &PgPool, key: &str, value: &str) -> StoreResult<String> {
    sqlx::query(sql::INSERT_SETTING)
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
    let stored = sqlx::query_scalar(sql::SETTING)
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(stored)
}
