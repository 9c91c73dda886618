//! Loyalty points as use cases (issue 4, item 3): the buyer's balance and ledger, admins'
//! grants and adjustments, earning on purchase confirmation and expiring due lots. The rules
//! are in `crate::domain::points`; the guarded writes in `store/*/points/`; the jobs that
//! run earning and expiry in `crate::jobs::points`.
//!
//! **Earning, exactly once.** Every node's dispatcher hands each `order.confirmed` event to
//! this node's earning job (so every node sees every event), and a timer re-reads the
//! confirmations no consumer has recorded (events committed while no node was running, or
//! whose processing failed: the timer is the retry). The store records `(points-earn,
//! event id)` in `processed_events` in the same transaction as the lot, with `ON CONFLICT DO
//! NOTHING`: whichever delivery commits first earns, every other one finds the row and does
//! nothing. The buyer earns `points_earn_rate_bps` of what they paid for the order's
//! confirmed partner orders (the sum of their `payable`: a part cancelled on its own was
//! refunded), rounded down, as a lot expiring `points_valid_days` after processing.
//!
//! **Expiry, on one node.** The expiry job runs under its lease (`jobs::scheduler`), so one
//! node expires while it lives and another takes over within two intervals of its death.
//! Expiry takes only the unheld part of a due lot (`remaining` drops to `held`): points held
//! for an open order are not taken from under it; if that order releases them, they expire
//! at the next run.

use super::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::domain::events::{self, Event};
use crate::domain::points::{Points as PointsAmount, PointsDelta, Reason};
use crate::domain::{Actor, DomainError, IdempotencyKey, Role, Timestamp};
use crate::events::EventSync;
use crate::metrics::Metrics;
use crate::store::{
    Backlog, EarnOutcome, Earning, NewPointsOperation, Page, PageRequest, PointsLedgerRecord,
    PointsOperationKind, PointsOperationOutcome, PointsOperationRecord, PointsSummary, Store,
    StoreResult,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The earning consumer's name in `processed_events`.
pub const EARN_CONSUMER: &str = "points-earn";
/// How far ahead the buyer's summary lists points about to expire.
pub const EXPIRING_HORIZON_DAYS: u64 = 30;
/// Confirmations re-read per catch-up pass.
const EARN_CATCH_UP_BATCH: i64 = 1000;
/// Buyers whose points one expiry batch handles (one transaction each).
const EXPIRY_BATCH_USERS: i64 = 1000;
/// Batches per run at most; the rest waits for the next run.
const EXPIRY_BATCHES_MAX: usize = 100;
const SECS_PER_DAY: u64 = 86_400;

pub struct Points {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub events: EventSync,
    /// Points a confirmed purchase earns, in basis points of its confirmed parts' `payable`.
    pub earn_rate_bps: i64,
    /// Validity of earned points, and of granted points without an expiry.
    pub valid_days: u64,
}

/// An applied grant or adjustment, or the replay of one.
pub struct Applied {
    pub record: PointsOperationRecord,
    /// The same Idempotency-Key and body were seen before: this is the first result.
    pub replayed: bool,
}

/// What one expiry run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryRun {
    pub users: usize,
    pub lots: usize,
    pub points: i64,
}

/// An admin's operation on a buyer's points, before validation.
pub struct OperationInput {
    pub user_id: i64,
    pub amount: i64,
    pub reason: String,
    /// Grants only: when the lot expires; `points_valid_days` from now when absent.
    pub expires_at: Option<Timestamp>,
}

impl Points {
    /// The buyer's account and what of it expires within [`EXPIRING_HORIZON_DAYS`].
    pub async fn summary(&self, actor: &Actor) -> AppResult<PointsSummary> {
        require(actor, &[Role::Buyer])?;
        let horizon = self
            .clock
            .now()
            .plus_secs(EXPIRING_HORIZON_DAYS * SECS_PER_DAY);
        Ok(self.store.points_summary(actor.id, horizon).await?)
    }

    /// The buyer's ledger, newest first.
    pub async fn history(
        &self,
        actor: &Actor,
        page: PageRequest,
    ) -> AppResult<Page<PointsLedgerRecord>> {
        require(actor, &[Role::Buyer])?;
        Ok(self.store.points_history(actor.id, page).await?)
    }

    /// An admin gives a buyer a lot of points, once per Idempotency-Key.
    pub async fn grant(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        input: &OperationInput,
    ) -> AppResult<Applied> {
        require(actor, &[Role::Admin])?;
        let amount = PointsAmount::new("amount", input.amount)?;
        let reason = Reason::parse(&input.reason)?;
        let now = self.clock.now();
        if input.expires_at.is_some_and(|t| t <= now) {
            return Err(DomainError::new("expires_at", "must be in the future").into());
        }
        let valid_secs = self.valid_days.saturating_mul(SECS_PER_DAY);
        let effective = input
            .expires_at
            .unwrap_or_else(|| now.plus_secs(valid_secs));
        let what = (PointsOperationKind::Grant, input.user_id, amount.get());
        let expiry = (input.expires_at, Some(effective));
        self.apply(operation(actor, key, what, &reason, expiry))
            .await
    }

    /// An admin corrects a buyer's points by a signed amount, once per Idempotency-Key.
    pub async fn adjust(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        input: &OperationInput,
    ) -> AppResult<Applied> {
        require(actor, &[Role::Admin])?;
        let amount = PointsDelta::new("amount", input.amount)?;
        let reason = Reason::parse(&input.reason)?;
        let what = (PointsOperationKind::Adjust, input.user_id, amount.get());
        self.apply(operation(actor, key, what, &reason, (None, None)))
            .await
    }

    async fn apply(&self, operation: NewPointsOperation) -> AppResult<Applied> {
        let outcome = self
            .store
            .apply_points_operation(&operation, self.clock.now())
            .await?;
        match outcome {
            PointsOperationOutcome::Done(record) => {
                let amount = record.amount.unsigned_abs();
                if record.amount > 0 {
                    self.metrics.points_granted.inc_by(amount);
                } else {
                    self.metrics.points_deducted.inc_by(amount);
                }
                self.events.wake();
                Ok(Applied {
                    record,
                    replayed: false,
                })
            }
            PointsOperationOutcome::Replayed(record) => Ok(Applied {
                record,
                replayed: true,
            }),
            PointsOperationOutcome::Mismatch => Err(AppError::IdempotencyMismatch),
            PointsOperationOutcome::UnknownUser => Err(AppError::not_found("buyer")),
            PointsOperationOutcome::Insufficient => Err(AppError::InsufficientPoints),
        }
    }

    /// Handles one delivery of an event; anything but `order.confirmed` is ignored. Safe to
    /// call any number of times, on any number of nodes, with the same event.
    pub async fn earn(&self, event: &Event, now: Timestamp) -> StoreResult<EarnOutcome> {
        if event.event_type != events::ORDER_CONFIRMED || event.aggregate_type != events::ORDER {
            return Ok(EarnOutcome::Nothing);
        }
        let earning = Earning {
            consumer: EARN_CONSUMER,
            event_id: event.id,
            // The aggregate of an `order.*` event is the order.
            order_id: event.aggregate_id,
            rate_bps: self.earn_rate_bps,
            expires_at: now.plus_secs(self.valid_days.saturating_mul(SECS_PER_DAY)),
        };
        let outcome = self.store.earn_points(&earning, now).await?;
        if let EarnOutcome::Earned { amount, .. } = outcome {
            self.metrics.points_earned.inc_by(points_u64(amount));
            self.events.wake();
        }
        Ok(outcome)
    }

    /// Confirmations nobody has earned points for yet, oldest first (the earning job's
    /// safety net for events no running node saw), except those the earning consumer kept
    /// as dead letters: the dead-letter job and operators own those.
    pub async fn unearned_confirmations(&self) -> StoreResult<Vec<Event>> {
        self.store
            .unprocessed_events(EARN_CONSUMER, Backlog::OrderConfirmed, EARN_CATCH_UP_BATCH)
            .await
    }

    /// Expires everything due by `now`. The caller makes sure one node runs it at a time
    /// (the expiry job's lease).
    pub async fn expire_due(&self, now: Timestamp) -> StoreResult<ExpiryRun> {
        self.metrics.points_expiry_runs.inc();
        let mut run = ExpiryRun::default();
        for _ in 0..EXPIRY_BATCHES_MAX {
            let users = self
                .store
                .users_with_expired_points(now, EXPIRY_BATCH_USERS)
                .await?;
            for user_id in &users {
                if let Some(expired) = self.store.expire_points(*user_id, now).await? {
                    run.users += 1;
                    run.lots += expired.lots;
                    run.points += expired.amount;
                    self.metrics
                        .points_expired
                        .inc_by(points_u64(expired.amount));
                }
            }
            if (users.len() as i64) < EXPIRY_BATCH_USERS {
                break;
            }
        }
        if run.users > 0 {
            self.events.wake();
            tracing::info!(users = run.users, points = run.points, "expired points");
        }
        Ok(run)
    }
}

/// Hex SHA-256 of the request as sent; the reason goes last, so no separator is ambiguous.
fn request_hash(
    kind: PointsOperationKind,
    user_id: i64,
    amount: i64,
    expires_at: Option<Timestamp>,
    reason: &Reason,
) -> String {
    let expires = expires_at.map_or_else(|| "-".to_owned(), |t| t.millis().to_string());
    let canonical = format!(
        "{}:{user_id}:{amount}:{expires}:{}",
        kind.as_str(),
        reason.as_str()
    );
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn operation(
    admin: &Actor,
    key: &IdempotencyKey,
    (kind, user_id, amount): (PointsOperationKind, i64, i64),
    reason: &Reason,
    (requested, effective): (Option<Timestamp>, Option<Timestamp>),
) -> NewPointsOperation {
    NewPointsOperation {
        admin_id: admin.id,
        idempotency_key: key.as_str().to_owned(),
        request_hash: request_hash(kind, user_id, amount, requested, reason),
        user_id,
        kind,
        amount,
        reason: reason.as_str().to_owned(),
        expires_at: effective,
    }
}

fn points_u64(amount: i64) -> u64 {
    u64::try_from(amount).unwrap_or(0)
}
