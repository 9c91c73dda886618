//! The durable waiting room's tickets ([`WaitingRoomStore`], used by
//! `app::placement::waiting_room`): order attempts that wait for a placement writer, kept in
//! the database so that a node's crash or restart loses none, admitted in `seq` order by the
//! one node holding the `waiting-room` lease.
//!
//! A ticket carries its validated order request, encoded here as JSON (the domain types stay
//! free of storage formats), and once done its outcome: the order placed or replayed, or the
//! refusal.

use super::error::{StoreError, StoreResult};
use super::rows::Columns;
use crate::domain::allocation::{Line, OrderRequest, Rejection};
use crate::domain::{Quantity, Timestamp, Won};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[async_trait]
pub trait WaitingRoomStore: Send + Sync {
    /// Queues `request` as ticket `id` at the end of the line, unless the buyer already has
    /// an open ticket for the same idempotency key: then that one is returned, unchanged.
    /// `None` when `max_waiting` tickets already wait (the room is full).
    async fn enqueue_ticket(
        &self,
        id: &str,
        request: &OrderRequest,
        max_waiting: i64,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRecord>>;
    async fn ticket(&self, id: &str) -> StoreResult<Option<TicketRecord>>;
    /// The line as every node shows it: the first waiting ticket's `seq` and how many wait.
    async fn waiting_line(&self) -> StoreResult<WaitingLine>;
    /// Marks up to `limit` of the first waiting tickets admitted, counting an attempt each,
    /// and returns them in line order.
    async fn admit_tickets(&self, limit: i64) -> StoreResult<Vec<TicketRecord>>;
    /// Puts admitted tickets back in line (keeping their place): all of them when `seqs` is
    /// `None` — a new lease holder's first step, since the previous holder's attempts may
    /// not have finished — else those named.
    async fn readmit_tickets(&self, seqs: Option<&[i64]>) -> StoreResult<u64>;
    /// `admitted → done` with the outcome of its admission number `attempts` (the ticket's
    /// `attempts` as admitted); `false`, changing nothing, when the ticket is no longer in
    /// that admission: finished, put back in line, or admitted again by a new holder (whose
    /// answer is the one that counts).
    async fn finish_ticket(
        &self,
        seq: i64,
        attempts: i64,
        outcome: &TicketOutcome,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Deletes up to `limit` tickets finished before `before`; returns how many.
    async fn prune_tickets(&self, before: Timestamp, limit: i64) -> StoreResult<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    Waiting,
    /// Handed to a writer; the outcome follows shortly.
    Admitted,
    Done,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Waiting => "waiting",
            TicketState::Admitted => "admitted",
            TicketState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<TicketState> {
        match s {
            "waiting" => Some(TicketState::Waiting),
            "admitted" => Some(TicketState::Admitted),
            "done" => Some(TicketState::Done),
            _ => None,
        }
    }
}

/// How a ticket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketOutcome {
    Placed {
        order_id: i64,
    },
    /// The attempt had been placed before (same buyer and key): its order.
    Replayed {
        order_id: i64,
    },
    Rejected(Rejection),
    /// Placement kept failing (the database, not the order): the buyer retries with the
    /// same idempotency key.
    Failed,
}

#[derive(Debug, Clone)]
pub struct TicketRecord {
    pub seq: i64,
    pub id: String,
    pub request: OrderRequest,
    pub state: TicketState,
    /// Admissions so far (a takeover or a failed placement admits a ticket again).
    pub attempts: i64,
    pub outcome: Option<TicketOutcome>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitingLine {
    /// `None` when nobody waits.
    pub head: Option<i64>,
    /// From the first waiting ticket to the last ticket queued (a few of those may already
    /// be done): what a buyer joining now would have ahead.
    pub waiting: i64,
    /// The last `seq` that has left the line (admitted or done); 0 when none has. Only
    /// admission takes a ticket out of the line, so a ticket after this one was still
    /// waiting when the line was read: no need to read it (`WaitingRoom::ticket`).
    pub left: i64,
}

impl WaitingLine {
    /// From the first waiting ticket's `seq`, the last ticket's, and the last admitted and
    /// done tickets'.
    pub(crate) fn new(
        head: Option<i64>,
        tail: Option<i64>,
        last_admitted: Option<i64>,
        last_done: Option<i64>,
    ) -> WaitingLine {
        let left = last_admitted.max(last_done).unwrap_or(0);
        match (head, tail) {
            (Some(head), Some(tail)) => WaitingLine {
                head: Some(head),
                waiting: (tail - head + 1).max(0),
                left,
            },
            _ => WaitingLine {
                left,
                ..WaitingLine::default()
            },
        }
    }
}

/// The outcome as its three columns: `outcome`, `order_id`, `rejection`.
pub(crate) fn outcome_columns(
    outcome: &TicketOutcome,
) -> (&'static str, Option<i64>, Option<String>) {
    match outcome {
        TicketOutcome::Placed { order_id } => ("placed", Some(*order_id), None),
        TicketOutcome::Replayed { order_id } => ("replayed", Some(*order_id), None),
        TicketOutcome::Rejected(rejection) => {
            let encoded = serde_json::to_string(&StoredRejection::from(rejection))
                .unwrap_or_else(|_| "{}".to_owned());
            ("rejected", None, Some(encoded))
        }
        TicketOutcome::Failed => ("failed", None, None),
    }
}

pub(crate) fn outcome_from_columns(
    outcome: Option<&str>,
    order_id: Option<i64>,
    rejection: Option<&str>,
) -> StoreResult<Option<TicketOutcome>> {
    let corrupt = || StoreError::Corrupt(format!("ticket outcome {outcome:?}"));
    Ok(Some(match outcome {
        None => return Ok(None),
        Some("placed") => TicketOutcome::Placed {
            order_id: order_id.ok_or_else(corrupt)?,
        },
        Some("replayed") => TicketOutcome::Replayed {
            order_id: order_id.ok_or_else(corrupt)?,
        },
        Some("rejected") => {
            let stored: StoredRejection =
                serde_json::from_str(rejection.ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            TicketOutcome::Rejected(stored.into_rejection().ok_or_else(corrupt)?)
        }
        Some("failed") => TicketOutcome::Failed,
        Some(_) => return Err(corrupt()),
    }))
}

/// `sql::TICKET_BY_ID` and the other ticket reads.
pub(crate) fn ticket_from_row(row: &impl Columns) -> StoreResult<TicketRecord> {
    let state = row.text("status")?;
    let outcome = row.opt_text("outcome")?;
    let rejection = row.opt_text("rejection")?;
    Ok(TicketRecord {
        seq: row.int("seq")?,
        id: row.text("id")?,
        request: decode_request(
            row.int("user_id")?,
            row.text("idempotency_key")?,
            &row.text("request")?,
        )?,
        state: TicketState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket status {state:?}")))?,
        attempts: row.int("attempts")?,
        outcome: outcome_from_columns(
            outcome.as_deref(),
            row.opt_int("order_id")?,
            rejection.as_deref(),
        )?,
        created_at: row.ts("created_at")?,
    })
}

pub(crate) fn encode_request(request: &OrderRequest) -> String {
    let stored = StoredRequest {
        request_hash: request.request_hash.clone(),
        lines: request
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity.get()))
            .collect(),
        coupon_id: request.coupon_id,
        points: request.points,
    };
    serde_json::to_string(&stored).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn decode_request(
    user_id: i64,
    idempotency_key: String,
    encoded: &str,
) -> StoreResult<OrderRequest> {
    let corrupt = || StoreError::Corrupt("ticket request".to_owned());
    let stored: StoredRequest = serde_json::from_str(encoded).map_err(|_| corrupt())?;
    let lines = stored
        .lines
        .into_iter()
        .map(|(product_id, quantity)| {
            Ok(Line {
                product_id,
                quantity: Quantity::new("quantity", quantity).map_err(|_| corrupt())?,
            })
        })
        .collect::<StoreResult<Vec<Line>>>()?;
    Ok(OrderRequest {
        user_id,
        idempotency_key,
        request_hash: stored.request_hash,
        lines,
        coupon_id: stored.coupon_id,
        points: stored.points,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRequest {
    request_hash: String,
    /// `(product_id, quantity)`, as validated.
    lines: Vec<(i64, i64)>,
    coupon_id: Option<i64>,
    points: i64,
}

/// A refusal by its stable code and the one number some codes carry.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRejection {
    code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<i64>,
}

impl From<&Rejection> for StoredRejection {
    fn from(rejection: &Rejection) -> StoredRejection {
        let (product_id, value) = match rejection {
            Rejection::UnknownProduct { product_id }
            | Rejection::NotReleased { product_id }
            | Rejection::OutOfStock { product_id } => (Some(*product_id), None),
            Rejection::PurchaseLimit {
                product_id,
                max_per_user,
            } => (Some(*product_id), Some(*max_per_user)),
            Rejection::CouponMinOrderNotMet { min_order_amount } => {
                (None, Some(min_order_amount.get()))
            }
            Rejection::InsufficientPoints { available } => (None, Some(*available)),
            Rejection::PointsExceedPayable { payable } => (None, Some(payable.get())),
            Rejection::IdempotencyMismatch
            | Rejection::TotalTooLarge
            | Rejection::CouponNotFound
            | Rejection::CouponExpired
            | Rejection::CouponInUse => (None, None),
        };
        StoredRejection {
            // `code()` maps two variants to `not_found`/`validation_failed`; the variant
            // name is kept instead so decoding is exact.
            code: variant_name(rejection).to_owned(),
            product_id,
            value,
        }
    }
}

fn variant_name(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::UnknownProduct { .. } => "unknown_product",
        Rejection::NotReleased { .. } => "not_released",
        Rejection::OutOfStock { .. } => "out_of_stock",
        Rejection::PurchaseLimit { .. } => "purchase_limit",
        Rejection::IdempotencyMismatch => "idempotency_mismatch",
        Rejection::TotalTooLarge => "total_too_large",
        Rejection::CouponNotFound => "coupon_not_found",
        Rejection::CouponExpired => "coupon_expired",
        Rejection::CouponInUse => "coupon_in_use",
        Rejection::CouponMinOrderNotMet { .. } => "coupon_min_order_not_met",
        Rejection::InsufficientPoints { .. } => "insufficient_points",
        Rejection::PointsExceedPayable { .. } => "points_exceed_payable",
    }
}

impl StoredRejection {
    fn into_rejection(self) -> Option<Rejection> {
        let product_id = self.product_id;
        let won = |v: Option<i64>| v.and_then(|v| Won::new("amount", v).ok());
        Some(match self.code.as_str() {
            "unknown_product" => Rejection::UnknownProduct {
                product_id: product_id?,
            },
            "not_released" => Rejection::NotReleased {
                product_id: product_id?,
            },
            "out_of_stock" => Rejection::OutOfStock {
                product_id: product_id?,
            },
            "purchase_limit" => Rejection::PurchaseLimit {
                product_id: product_id?,
                max_per_user: self.value?,
            },
            "idempotency_mismatch" => Rejection::IdempotencyMismatch,
            "total_too_large" => Rejection::TotalTooLarge,
            "coupon_not_found" => Rejection::CouponNotFound,
            "coupon_expired" => Rejection::CouponExpired,
            "coupon_in_use" => Rejection::CouponInUse,
            "coupon_min_order_not_met" => Rejection::CouponMinOrderNotMet {
                min_order_amount: won(self.value)?,
            },
            "insufficient_points" => Rejection::InsufficientPoints {
                available: self.value?,
            },
            "points_exceed_payable" => Rejection::PointsExceedPayable {
                payable: won(self.value)?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_rejection() -> Vec<Rejection> {
        let won = |v| Won::new("amount", v).unwrap();
        vec![
            Rejection::UnknownProduct { product_id: 1 },
            Rejection::NotReleased { product_id: 2 },
            Rejection::OutOfStock { product_id: 3 },
            Rejection::PurchaseLimit {
                product_id: 4,
                max_per_user: 2,
            },
            Rejection::IdempotencyMismatch,
            Rejection::TotalTooLarge,
            Rejection::CouponNotFound,
            Rejection::CouponExpired,
            Rejection::CouponInUse,
            Rejection::CouponMinOrderNotMet {
                min_order_amount: won(50_000),
            },
            Rejection::InsufficientPoints { available: 7 },
            Rejection::PointsExceedPayable { payable: won(900) },
        ]
    }

    #[test]
    fn every_outcome_survives_its_columns() {
        let mut outcomes = vec![
            TicketOutcome::Placed { order_id: 9 },
            TicketOutcome::Replayed { order_id: 10 },
            TicketOutcome::Failed,
        ];
        outcomes.extend(every_rejection().into_iter().map(TicketOutcome::Rejected));
        for outcome in outcomes {
            let (kind, order_id, rejection) = outcome_columns(&outcome);
            let back = outcome_from_columns(Some(kind), order_id, rejection.as_deref()).unwrap();
            assert_eq!(back, Some(outcome));
        }
        assert_eq!(outcome_from_columns(None, None, None).unwrap(), None);
        assert!(outcome_from_columns(Some("placed"), None, None).is_err());
        assert!(outcome_from_columns(Some("rejected"), None, Some("{\"code\":\"x\"}")).is_err());
    }

    #[test]
    fn a_request_survives_its_encoding() {
        let request = OrderRequest {
            user_id: 5,
            idempotency_key: "k-1".into(),
            request_hash: "abc".into(),
            lines: vec![
                Line {
                    product_id: 1,
                    quantity: Quantity::new("q", 2).unwrap(),
                },
                Line {
                    product_id: 3,
                    quantity: Quantity::new("q", 1).unwrap(),
                },
            ],
            coupon_id: Some(8),
            points: 300,
        };
        let back = decode_request(5, "k-1".into(), &encode_request(&request)).unwrap();
        assert_eq!(back.lines, request.lines);
        assert_eq!(
            (back.request_hash, back.coupon_id, back.points),
            ("abc".to_owned(), Some(8), 300)
        );
        assert!(decode_request(5, "k".into(), "{\"lines\":[]}").is_err());
        assert!(decode_request(
            5,
            "k".into(),
            "{\"request_hash\":\"a\",\"lines\":[[1,0]],\"coupon_id\":null,\"points\":0}"
        )
        .is_err());
    }
}
