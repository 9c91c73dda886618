//! Loyalty points as a service (issue 4, item 3): earning on purchase confirmation, the
//! expiry job, and the hold/spend calls order handling uses. The rules are in
//! `crate::domain::points`; the guarded writes in `store/*/points.rs`.
//!
//! **Earning, exactly once.** Every node's dispatcher hands each `order.confirmed` event to
//! this node's [`Earner`] (so every node sees every event), and a timer re-reads the
//! confirmations no consumer has recorded (events committed while no node was running, or
//! whose processing failed: the timer is the retry). The store records `(points-earn,
//! event id)` in `processed_events` in the same transaction as the lot, with `ON CONFLICT DO
//! NOTHING`: whichever delivery commits first earns, every other one finds the row and does
//! nothing. The buyer earns `points_earn_rate_bps` of the order's `payable`, rounded down,
//! as a lot expiring `points_valid_days` after processing.
//!
//! **Expiry, on one node.** Each node runs [`ExpiryJob`] every `points_expiry_interval_secs`;
//! a run first takes the `points-expiry` lease (a conditional upsert in `leases`, held for
//! two intervals and renewed by its holder each run), so one node expires while it lives
//! and another takes over within two intervals of its death. Expiry takes only the unheld
//! part of a due lot (`remaining` drops to `held`): points held for an open order are not
//! taken from under it; if that order releases them, they expire at the next run.

use crate::domain::events::{self, Event};
use crate::domain::points::PointsKind;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{EarnOutcome, Earning, PointsAudit, Store, StoreResult};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

/// The earning consumer's name in `processed_events`.
pub const EARN_CONSUMER: &str = "points-earn";
/// The expiry job's lease.
pub const EXPIRY_LEASE: &str = "points-expiry";
/// How often the earner re-reads confirmations nobody recorded (its safety net and retry).
const EARN_CATCH_UP_INTERVAL: Duration = Duration::from_secs(60);
/// Confirmations re-read per catch-up pass.
const EARN_CATCH_UP_BATCH: i64 = 1000;
/// Events queued by the dispatcher for the earner; beyond it they wait for the catch-up.
const EARN_QUEUE_MAX: usize = 100_000;
/// Buyers whose points one expiry batch handles (one transaction each).
const EXPIRY_BATCH_USERS: i64 = 1000;
/// Batches per run at most; the rest waits for the next run.
const EXPIRY_BATCHES_MAX: usize = 100;
const SECS_PER_DAY: u64 = 86_400;

/// `order.confirmed` events handed from this node's dispatcher to its earner.
#[derive(Default)]
pub struct EarnQueue {
    events: Mutex<Vec<Event>>,
    wake: Notify,
}

impl EarnQueue {
    /// Called by the dispatcher; never blocks it. A full queue drops the event, which the
    /// earner's catch-up finds later.
    pub fn push(&self, event: &Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() < EARN_QUEUE_MAX {
            events.push(event.clone());
        }
        drop(events);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The earning consumer (see the module comment).
pub struct Earner {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub queue: Arc<EarnQueue>,
    /// Woken after a lot is written, so its event reaches streams at once.
    pub outbox_wake: Arc<Notify>,
    pub rate_bps: i64,
    pub valid_days: u64,
}

impl Earner {
    /// Handles one delivery of an event; anything but `order.confirmed` is ignored. Safe to
    /// call any number of times, on any number of nodes, with the same event.
    pub async fn handle(&self, event: &Event, now: Timestamp) -> StoreResult<EarnOutcome> {
        if event.event_type != events::ORDER_CONFIRMED || event.aggregate_type != events::ORDER {
            return Ok(EarnOutcome::Nothing);
        }
        let earning = Earning {
            consumer: EARN_CONSUMER,
            event_id: event.id,
            // The aggregate of an `order.*` event is the order.
            order_id: event.aggregate_id,
            rate_bps: self.rate_bps,
            expires_at: now.plus_secs(self.valid_days.saturating_mul(SECS_PER_DAY)),
        };
        let outcome = self.store.earn_points(&earning, now).await?;
        if let EarnOutcome::Earned { amount, .. } = outcome {
            self.metrics.points_earned.inc_by(points_u64(amount));
            self.outbox_wake.notify_one();
        }
        Ok(outcome)
    }

    /// Works until `stop` fires: the queued events on every wake-up, a catch-up pass on every
    /// tick (the first one at start).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut timer = tokio::time::interval(EARN_CATCH_UP_INTERVAL);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let catch_up = tokio::select! {
                _ = timer.tick() => true,
                _ = self.queue.wake.notified() => false,
                _ = stop.changed() => return,
            };
            let mut due = self.queue.take();
            if catch_up {
                match self
                    .store
                    .unprocessed_confirmations(EARN_CONSUMER, EARN_CATCH_UP_BATCH)
                    .await
                {
                    Ok(missed) => due.extend(missed),
                    Err(e) => tracing::warn!(error = %e, "points catch-up read failed"),
                }
            }
            for event in &due {
                if let Err(e) = self.handle(event, Timestamp::now()).await {
                    // Unrecorded, so the next catch-up pass tries it again.
                    tracing::warn!(event_id = event.id, error = %e, "earning points failed");
                }
            }
        }
    }
}

/// What one expiry run did on the node holding the lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryRun {
    pub users: usize,
    pub lots: usize,
    pub points: i64,
}

/// The expiry job (see the module comment).
pub struct ExpiryJob {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub outbox_wake: Arc<Notify>,
    pub interval: Duration,
    /// This node's name in `leases`: unique per process.
    pub holder: String,
}

impl ExpiryJob {
    /// Runs every `interval` (the first run one interval after start) until `stop` fires.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.run_once(&self.holder, Timestamp::now()).await {
                tracing::warn!(error = %e, "points expiry run failed");
            }
        }
    }

    /// Takes the lease for `holder` and expires everything due by `now`; `None` when
    /// another holder has the lease.
    pub async fn run_once(&self, holder: &str, now: Timestamp) -> StoreResult<Option<ExpiryRun>> {
        let lease_ms =
            i64::try_from(self.interval.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
        let until = Timestamp::from_millis(now.millis().saturating_add(lease_ms));
        if !self
            .store
            .try_lease(EXPIRY_LEASE, holder, until, now)
            .await?
        {
            return Ok(None);
        }
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
            self.outbox_wake.notify_one();
            tracing::info!(users = run.users, points = run.points, "expired points");
        }
        Ok(Some(run))
    }
}

fn points_u64(amount: i64) -> u64 {
    u64::try_from(amount).unwrap_or(0)
}

fn replay(ledger: &[(PointsKind, i64)]) -> (i64, i64) {
    ledger.iter().fold((0, 0), |(b, h), (kind, amount)| {
        let (d_b, d_h) = kind.effect(*amount);
        (b + d_b, h + d_h)
    })
}

fn sum_of(ledger: &[(PointsKind, i64)], kind: PointsKind) -> i64 {
    ledger
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, a)| a)
        .sum()
}

/// What `stampede verify` checks of points, one line per difference:
///
/// - per account: `balance` and `held` equal the replay of its ledger with
///   [`PointsKind::effect`] — `balance = Σ(earn + adjust + refund − spend − expire)`,
///   `held = Σ(hold − release − spend)` (a spend always spends a whole open hold) — and equal
///   the sums of its lots' `remaining` and `held`; `0 <= held <= balance`;
/// - per lot: `remaining` and `held` equal the replay of the rows that reference it,
///   `0 <= held <= remaining <= amount`;
/// - per order's hold: its rows match its status (`held`: holds = amount; `released`: and
///   releases = amount; `spent`: and spends = amount; `refunded`: and refunds = amount).
pub fn check_audit(audit: &PointsAudit, problems: &mut Vec<String>) {
    for a in &audit.accounts {
        let user = a.user_id;
        let (balance, held) = replay(&a.ledger);
        if (balance, held) != (a.balance, a.held) {
            problems.push(format!(
                "points of user {user}: balance/held are {}/{} but the ledger sums to {balance}/{held}",
                a.balance, a.held
            ));
        }
        if (a.lots_remaining, a.lots_held) != (a.balance, a.held) {
            problems.push(format!(
                "points of user {user}: balance/held are {}/{} but the lots hold {}/{}",
                a.balance, a.held, a.lots_remaining, a.lots_held
            ));
        }
        if a.held < 0 || a.held > a.balance {
            problems.push(format!(
                "points of user {user}: impossible balance {} held {}",
                a.balance, a.held
            ));
        }
    }
    for lot in &audit.lots {
        let (remaining, held) = replay(&lot.ledger);
        if (remaining, held) != (lot.remaining, lot.held) {
            problems.push(format!(
                "point lot {}: remaining/held are {}/{} but its ledger rows sum to {remaining}/{held}",
                lot.lot_id, lot.remaining, lot.held
            ));
        }
        if lot.held < 0 || lot.held > lot.remaining || lot.remaining > lot.amount {
            problems.push(format!(
                "point lot {}: impossible remaining {} held {} of {}",
                lot.lot_id, lot.remaining, lot.held, lot.amount
            ));
        }
    }
    for hold in &audit.holds {
        let (h, r, s, f) = hold.status.expected_rows();
        for (kind, factor) in [
            (PointsKind::Hold, h),
            (PointsKind::Release, r),
            (PointsKind::Spend, s),
            (PointsKind::Refund, f),
        ] {
            let moved = sum_of(&hold.ledger, kind);
            if moved != factor * hold.amount {
                problems.push(format!(
                    "points hold of order {} ({}): {} rows total {moved}, expected {}",
                    hold.order_id,
                    hold.status.as_str(),
                    kind.as_str(),
                    factor * hold.amount
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::points::HoldStatus;
    use crate::store::{PointsAccountAudit, PointsHoldAudit, PointsLotAudit};

    fn books() -> PointsAudit {
        // Earned 1000 in lot 1; 300 held for order 7, of which the whole hold was spent;
        // 100 expired.
        let lot_rows = vec![
            (PointsKind::Earn, 1000),
            (PointsKind::Hold, 300),
            (PointsKind::Spend, 300),
            (PointsKind::Expire, 100),
        ];
        PointsAudit {
            accounts: vec![PointsAccountAudit {
                user_id: 5,
                balance: 600,
                held: 0,
                ledger: lot_rows.clone(),
                lots_remaining: 600,
                lots_held: 0,
            }],
            lots: vec![PointsLotAudit {
                lot_id: 1,
                user_id: 5,
                amount: 1000,
                remaining: 600,
                held: 0,
                ledger: lot_rows,
            }],
            holds: vec![PointsHoldAudit {
                order_id: 7,
                user_id: 5,
                amount: 300,
                status: HoldStatus::Spent,
                ledger: vec![(PointsKind::Hold, 300), (PointsKind::Spend, 300)],
            }],
        }
    }

    #[test]
    fn balanced_points_are_clean() {
        let mut problems = Vec::new();
        check_audit(&books(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn every_kind_of_points_drift_is_reported() {
        let mut audit = books();
        audit.accounts[0].balance = 700;
        audit.lots[0].held = 50;
        audit.holds[0].status = HoldStatus::Refunded;
        let mut problems = Vec::new();
        check_audit(&audit, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("balance/held are 700/0 but the ledger sums to 600/0"),
            "{text}"
        );
        assert!(text.contains("but the lots hold 600/0"), "{text}");
        assert!(
            text.contains("point lot 1: remaining/held are 600/50"),
            "{text}"
        );
        assert!(text.contains("refund rows total 0, expected 300"), "{text}");
    }
}
