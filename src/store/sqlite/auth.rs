use super::{write_event, SqliteStore};
use crate::domain::{events, Timestamp};
use crate::store::error::conflict_on_unique;
use crate::store::rows::role_of;
use crate::store::{AuthStore, NewUser, RotateOutcome, StoreResult, UserRecord};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// The unique constraint on `users.email` (PostgreSQL's default name; SQLite names none).
const USERS_EMAIL_KEY: &str = "users_email_key";
const USER_COLUMNS: &str = "id, email, password_hash, role, partner_id, created_at";
/// Rows per multi-row INSERT when provisioning: 5 parameters each stays far below
/// SQLite's 32,766 bound-parameter limit.
const BULK_CHUNK_ROWS: usize = 1000;

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: role_of(row.try_get("role")?)?,
        partner_id: row.try_get("partner_id")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn insert_user(&self, user: &NewUser, now: Timestamp) -> StoreResult<UserRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO users (email, password_hash, role, partner_id, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        ))
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.partner_id)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_on_unique(USERS_EMAIL_KEY, "email_taken"))?;
        let record = user_from_row(&row)?;
        let event = events::user_created(record.id, record.role, record.partner_id);
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn insert_users_bulk(&self, users: &[NewUser], now: Timestamp) -> StoreResult<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(users.len());
        for chunk in users.chunks(BULK_CHUNK_ROWS) {
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
            let sql = format!(
                "INSERT INTO users (email, password_hash, role, partner_id, created_at) VALUES {} RETURNING id",
                values.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql);
            for user in chunk {
                query = query
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(user.role.as_str())
                    .bind(user.partner_id)
                    .bind(now.millis());
            }
            let chunk_ids = query
                .fetch_all(&mut *tx)
                .await
                .map_err(conflict_on_unique(USERS_EMAIL_KEY, "email_taken"))?;
            ids.extend(chunk_ids);
        }
        for (user, id) in users.iter().zip(&ids) {
            let event = events::user_created(*id, user.role, user.partner_id);
            write_event(&mut tx, &event, now.millis()).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_session(
        &self,
        user_id: i64,
        refresh_hash: &str,
        refresh_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sessions (user_id, refresh_hash, refresh_expires_at, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(refresh_hash)
        .bind(refresh_expires_at.millis())
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await?;
        let event = events::session(events::SESSION_STARTED, user_id, id);
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome> {
        let mut tx = self.write_tx().await?;
        let rotated = sqlx::query(
            "UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = $2,
                    refresh_expires_at = $3
             WHERE refresh_hash = $1 AND revoked_at IS NULL AND refresh_expires_at > $4
             RETURNING id, user_id",
        )
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
                write_event(&mut tx, &event, now.millis()).await?;
                RotateOutcome::Rotated {
                    session_id,
                    user_id,
                }
            }
            None => {
                // A token that was already rotated away is being replayed: whoever holds
                // it may have stolen it, so the whole session dies.
                let reused: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE sessions SET revoked_at = $2
                     WHERE previous_hash = $1 AND revoked_at IS NULL
                     RETURNING id, user_id",
                )
                .bind(old_hash)
                .bind(now.millis())
                .fetch_optional(&mut *tx)
                .await?;
                match reused {
                    Some((session_id, user_id)) => {
                        let event = events::session_reuse_revoked(user_id, session_id);
                        write_event(&mut tx, &event, now.millis()).await?;
                        RotateOutcome::Reused
                    }
                    None => RotateOutcome::Invalid,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_session(
        &self,
        user_id: i64,
        session_id: i64,
        jti: &str,
        access_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $3
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(access_expires_at.millis())
        .execute(&mut *tx)
        .await?;
        write_event(
            &mut tx,
            &events::session_revoked(user_id, session_id, jti, access_expires_at),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoked_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT jti FROM revoked_tokens WHERE expires_at > $1")
                .bind(now.millis())
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }
}
