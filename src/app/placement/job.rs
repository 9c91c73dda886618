//! One order handed to a writer, and the bookkeeping shared by the writers and the waiting
//! room's pump.

use crate::domain::allocation::OrderRequest;
use crate::metrics::Metrics;
use crate::store::{PlaceOutcome, StoreError};
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
