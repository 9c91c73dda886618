//! One order handed to a writer, and the bookkeeping shared by the writers and the waiting
//! room's pump.

use crate::cluster::gate::Admit;
use crate::domain::allocation::OrderRequest;
use crate::metrics::Metrics;
use crate::store::{PlaceOutcome, Store, StoreError};
use tokio::sync::oneshot;

pub(super) struct Job {
    pub request: OrderRequest,
    pub reply: oneshot::Sender<Result<PlaceOutcome, StoreError>>,
}

/// `(product_id, quantity)` per line, as the gate counts them.
pub(super) fn gate_lines(request: &OrderRequest) -> Vec<(i64, i64)> {
    request
        .lines
        .iter()
        .map(|l| (l.product_id, l.quantity.get()))
        .collect()
}

/// Counts a placement outcome in the domain metrics.
pub(super) fn count(metrics: &Metrics, outcome: &PlaceOutcome) {
    match outcome {
        PlaceOutcome::Placed(order) => {
            metrics.orders_placed.inc();
            metrics.order_points(order.status, order.points_used);
        }
        PlaceOutcome::Replayed(_) => {}
        PlaceOutcome::Rejected(rejection) => metrics.reject(rejection.code()),
    }
}

/// The product to refuse the attempt for without a writer, if any. An `Unsure` gate is
/// checked against the database: a retry of an attempt placed where this gate could not see
/// it goes on to the writer, which replays its order (as it decides on any error).
pub(super) async fn sold_out(
    store: &dyn Store,
    request: &OrderRequest,
    admit: Admit,
) -> Option<i64> {
    match admit {
        Admit::SoldOut { product_id } => Some(product_id),
        Admit::Unsure { product_id } => {
            let placed = store
                .order_of_attempt(request.user_id, &request.idempotency_key)
                .await;
            matches!(placed, Ok(None)).then_some(product_id)
        }
        Admit::Pass | Admit::Again => None,
    }
}
