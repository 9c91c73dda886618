//! Loyalty points ([`PointsStore`], used by `app::points`; rules in
//! `crate::domain::points`), with the rows they read and write and the audit of accounts,
//! lots and holds against their ledger.

use super::error::{StoreError, StoreResult};
use super::page::{Page, PageRequest};
use crate::domain::points::{HoldStatus, PointsKind};
use crate::domain::Timestamp;
use async_trait::async_trait;
use std::collections::BTreeMap;

/// Every change is a conditional write on the account (`balance - held >= amount`), the
/// lots and, for an order's hold, the hold's status, with its ledger rows and `points.*`
/// event in the same transaction; the CHECKs (`0 <= held <= balance`, `0 <= held <=
/// remaining <= amount`) are the last line of defence. Writers lock the account before its
/// lots.
#[async_trait]
pub trait PointsStore: Send + Sync {
    /// The account and what of it expires by `horizon` (unheld remainders, soonest first).
    async fn points_summary(&self, user_id: i64, horizon: Timestamp) -> StoreResult<PointsSummary>;
    /// The buyer's ledger, newest first.
    async fn points_history(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<PointsLedgerRecord>>;
    /// An admin's grant or adjustment, once per `(admin_id, idempotency_key)`.
    async fn apply_points_operation(
        &self,
        operation: &NewPointsOperation,
        now: Timestamp,
    ) -> StoreResult<PointsOperationOutcome>;
    /// Records `(consumer, event_id)` as processed and, the first time only, gives the
    /// buyer of the confirmed order their points as a lot, in one transaction.
    async fn earn_points(&self, earning: &Earning, now: Timestamp) -> StoreResult<EarnOutcome>;
    /// Up to `limit` buyers, ascending, with unheld points in lots whose `expires_at <= now`.
    async fn users_with_expired_points(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<i64>>;
    /// Expires the unheld part of the buyer's lots due by `now` (`points.expired`); `None`
    /// when nothing was due.
    async fn expire_points(
        &self,
        user_id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<ExpiredPoints>>;
    /// Accounts, lots and holds beside their ledger rows, from one snapshot.
    async fn points_audit(&self) -> StoreResult<PointsAudit>;
}

/// A buyer's points account; all zeros when the buyer never had points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointsAccount {
    pub user_id: i64,
    pub balance: i64,
    pub held: i64,
}

/// Points that expire at one instant (unheld remainders of lots), soonest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsExpiring {
    pub amount: i64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct PointsSummary {
    pub account: PointsAccount,
    pub expiring: Vec<PointsExpiring>,
}

#[derive(Debug, Clone)]
pub struct PointsLedgerRecord {
    pub id: i64,
    pub user_id: i64,
    pub kind: PointsKind,
    /// Positive, except a negative `adjust`.
    pub amount: i64,
    pub lot_id: Option<i64>,
    pub order_id: Option<i64>,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// `grant` (a lot that expires) or `adjust` (a signed correction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsOperationKind {
    Grant,
    Adjust,
}

impl PointsOperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointsOperationKind::Grant => "grant",
            PointsOperationKind::Adjust => "adjust",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "grant" => Some(PointsOperationKind::Grant),
            "adjust" => Some(PointsOperationKind::Adjust),
            _ => None,
        }
    }
}

/// An admin's grant or adjustment, keyed by `(admin_id, idempotency_key)`.
#[derive(Debug, Clone)]
pub struct NewPointsOperation {
    pub admin_id: i64,
    pub idempotency_key: String,
    /// Hash of the request as sent: a replay must match it.
    pub request_hash: String,
    pub user_id: i64,
    pub kind: PointsOperationKind,
    /// Positive for a grant; signed, non-zero for an adjustment.
    pub amount: i64,
    pub reason: String,
    /// The grant's lot expiry (`None`: never; adjustments never expire).
    pub expires_at: Option<Timestamp>,
}

/// An applied operation, with the account as it left it (a replay answers the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsOperationRecord {
    pub id: i64,
    pub admin_id: i64,
    pub user_id: i64,
    pub kind: PointsOperationKind,
    pub amount: i64,
    pub reason: String,
    pub expires_at: Option<Timestamp>,
    pub balance_after: i64,
    pub held_after: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub enum PointsOperationOutcome {
    Done(PointsOperationRecord),
    /// The key was used before with the same request: its original result.
    Replayed(PointsOperationRecord),
    /// The key was used before with another request; nothing changed.
    Mismatch,
    /// No such buyer; nothing changed.
    UnknownUser,
    /// A negative adjustment larger than the unheld balance; nothing changed.
    Insufficient,
}

/// Points held for one order, and the account after the change that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsHold {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub status: HoldStatus,
    pub balance: i64,
    pub held: i64,
}

/// One delivery of an `order.confirmed` event to the earning consumer.
#[derive(Debug, Clone)]
pub struct Earning {
    /// The consumer's name in `processed_events` (`points-earn`).
    pub consumer: &'static str,
    pub event_id: i64,
    pub order_id: i64,
    pub rate_bps: i64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarnOutcome {
    Earned {
        user_id: i64,
        amount: i64,
        lot_id: i64,
    },
    /// Recorded as processed, but the purchase earns nothing (too small, or earned before).
    Nothing,
    /// Not recorded: no such order is confirmed (a forged or corrupt event); the caller
    /// treats it as a failure to retry.
    NotConfirmed,
    /// This consumer processed this event before (another node, or a redelivery).
    AlreadyProcessed,
}

/// What one expiry of a buyer's due lots took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredPoints {
    pub user_id: i64,
    pub amount: i64,
    pub lots: usize,
    pub balance: i64,
    pub held: i64,
}

/// One account beside its ledger and its lots (see `app::audit`).
#[derive(Debug, Clone, Default)]
pub struct PointsAccountAudit {
    pub user_id: i64,
    pub balance: i64,
    pub held: i64,
    /// Sum of ledger amounts per kind.
    pub ledger: Vec<(PointsKind, i64)>,
    pub lots_remaining: i64,
    pub lots_held: i64,
}

/// One lot beside the ledger rows that reference it.
#[derive(Debug, Clone)]
pub struct PointsLotAudit {
    pub lot_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub remaining: i64,
    pub held: i64,
    pub ledger: Vec<(PointsKind, i64)>,
}

/// One order's points hold beside the ledger rows of that order.
#[derive(Debug, Clone)]
pub struct PointsHoldAudit {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub status: HoldStatus,
    /// Refunded so far: the shares of parts cancelled or returned, or the whole amount once
    /// the order is refunded.
    pub refunded: i64,
    /// `points_used` of the order's partner orders cancelled on their own or returned after
    /// confirmation.
    pub taken_back_points: i64,
    pub ledger: Vec<(PointsKind, i64)>,
}

#[derive(Debug, Clone, Default)]
pub struct PointsAudit {
    pub accounts: Vec<PointsAccountAudit>,
    pub lots: Vec<PointsLotAudit>,
    pub holds: Vec<PointsHoldAudit>,
}

/// The rows a points audit reads, each backend in its own dialect, from one snapshot;
/// [`PointsAudit::assemble`] puts them together the same way for both.
#[derive(Debug, Clone, Default)]
pub struct PointsAuditRows {
    /// `(user_id, balance, held)`.
    pub accounts: Vec<(i64, i64, i64)>,
    /// `(user_id, kind, Σ amount)`.
    pub ledger_by_user: Vec<(i64, String, i64)>,
    /// `(user_id, Σ remaining, Σ held)` of the user's lots.
    pub lot_sums: Vec<(i64, i64, i64)>,
    /// `(lot_id, user_id, amount, remaining, held)`.
    pub lots: Vec<(i64, i64, i64, i64, i64)>,
    /// `(lot_id, kind, Σ amount)`.
    pub ledger_by_lot: Vec<(i64, String, i64)>,
    /// `(order_id, user_id, amount, status, refunded, Σ points_used of cancelled parts)`.
    pub holds: Vec<(i64, i64, i64, String, i64, i64)>,
    /// `(order_id, kind, Σ amount)` of hold, release, spend and refund rows.
    pub ledger_by_order: Vec<(i64, String, i64)>,
}

type KindSums = BTreeMap<i64, Vec<(PointsKind, i64)>>;

fn points_kind_sums(rows: Vec<(i64, String, i64)>) -> StoreResult<KindSums> {
    let mut sums = KindSums::new();
    for (key, raw, sum) in rows {
        let kind = PointsKind::parse(&raw)
            .ok_or_else(|| StoreError::Corrupt(format!("points kind {raw:?}")))?;
        sums.entry(key).or_default().push((kind, sum));
    }
    Ok(sums)
}

impl PointsAudit {
    /// Every account that has a row anywhere (account, ledger or lot), every lot and every
    /// hold, each with its ledger sums.
    pub fn assemble(rows: PointsAuditRows) -> StoreResult<PointsAudit> {
        let by_user = points_kind_sums(rows.ledger_by_user)?;
        let mut by_lot = points_kind_sums(rows.ledger_by_lot)?;
        let mut by_order = points_kind_sums(rows.ledger_by_order)?;
        let lots = rows
            .lots
            .into_iter()
            .map(
                |(lot_id, user_id, amount, remaining, held)| PointsLotAudit {
                    lot_id,
                    user_id,
                    amount,
                    remaining,
                    held,
                    ledger: by_lot.remove(&lot_id).unwrap_or_default(),
                },
            )
            .collect();
        let holds = rows
            .holds
            .into_iter()
            .map(
                |(order_id, user_id, amount, raw, refunded, taken_back_points)| {
                    let status = HoldStatus::parse(&raw).ok_or_else(|| {
                        StoreError::Corrupt(format!("points hold status {raw:?}"))
                    })?;
                    Ok(PointsHoldAudit {
                        order_id,
                        user_id,
                        amount,
                        status,
                        refunded,
                        taken_back_points,
                        ledger: by_order.remove(&order_id).unwrap_or_default(),
                    })
                },
            )
            .collect::<StoreResult<_>>()?;
        Ok(PointsAudit {
            accounts: account_audits(rows.accounts, rows.lot_sums, by_user),
            lots,
            holds,
        })
    }
}

/// Every user with an account row, ledger rows or lots, ascending, with their sums.
fn account_audits(
    accounts: Vec<(i64, i64, i64)>,
    lot_sums: Vec<(i64, i64, i64)>,
    by_user: KindSums,
) -> Vec<PointsAccountAudit> {
    let lot_sums: BTreeMap<i64, (i64, i64)> =
        lot_sums.into_iter().map(|(u, r, h)| (u, (r, h))).collect();
    let balances: BTreeMap<i64, (i64, i64)> =
        accounts.into_iter().map(|(u, b, h)| (u, (b, h))).collect();
    let mut users: Vec<i64> = balances.keys().copied().collect();
    users.extend(by_user.keys().copied());
    users.extend(lot_sums.keys().copied());
    users.sort_unstable();
    users.dedup();
    users
        .into_iter()
        .map(|user_id| {
            let (balance, held) = balances.get(&user_id).copied().unwrap_or_default();
            let (lots_remaining, lots_held) = lot_sums.get(&user_id).copied().unwrap_or_default();
            PointsAccountAudit {
                user_id,
                balance,
                held,
                ledger: by_user.get(&user_id).cloned().unwrap_or_default(),
                lots_remaining,
                lots_held,
            }
        })
        .collect()
}
