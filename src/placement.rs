//! The placement writer of DESIGN §3: validated order requests queue here and are applied in
//! batches, one transaction per batch (group commit). A batch never fails as a whole on
//! account of one order: allocation decides each order on its own, and if the transaction
//! itself fails the batch is retried one order at a time.

use crate::domain::allocation::{OrderRequest, Rejection};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::outbox::SoldOutGate;
use crate::store::{PlaceOutcome, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

#[derive(Debug, Clone, Copy)]
pub struct PlacementConfig {
    pub batch_max: usize,
    pub linger: Duration,
    pub queue_depth: usize,
    pub writers: usize,
    pub hold_ttl_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The queue is full: the caller should come back later (HTTP 503 + Retry-After).
    #[error("placement queue full")]
    Overloaded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tries of a single order that keeps losing an idempotency race to another node.
const IDEMPOTENCY_RACE_ATTEMPTS: u32 = 3;

struct Job {
    request: OrderRequest,
    reply: oneshot::Sender<Result<PlaceOutcome, StoreError>>,
}

#[derive(Clone)]
pub struct Placement {
    writers: Arc<[mpsc::Sender<Job>]>,
    gate: Arc<SoldOutGate>,
    metrics: Arc<Metrics>,
}

impl Placement {
    /// Spawns the writer tasks. They stop when every `Placement` clone is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        config: PlacementConfig,
        gate: Arc<SoldOutGate>,
        metrics: Arc<Metrics>,
        outbox_wake: Arc<Notify>,
    ) -> Placement {
        let depth = (config.queue_depth / config.writers).max(1);
        let writers: Vec<mpsc::Sender<Job>> = (0..config.writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(depth);
                let writer = Writer {
                    store: store.clone(),
                    config,
                    metrics: metrics.clone(),
                    outbox_wake: outbox_wake.clone(),
                };
                tokio::spawn(writer.run(rx));
                tx
            })
            .collect();
        Placement {
            writers: writers.into(),
            gate,
            metrics,
        }
    }

    /// Places one order. Products known to be sold out are refused here, without a
    /// database round trip, until a `stock.changed` event says units came back.
    pub async fn place(&self, request: OrderRequest) -> Result<PlaceOutcome, PlaceError> {
        if let Some(product_id) = request
            .lines
            .iter()
            .map(|l| l.product_id)
            .find(|p| self.gate.is_sold_out(*p))
        {
            self.metrics.sold_out_fast_rejects.inc();
            return Ok(PlaceOutcome::Rejected(Rejection::OutOfStock { product_id }));
        }
        // One buyer's requests always go to the same writer, so their idempotency keys are
        // decided in order on this node.
        let writer = &self.writers[request.user_id.unsigned_abs() as usize % self.writers.len()];
        let (reply, answer) = oneshot::channel();
        writer.try_send(Job { request, reply }).map_err(|_| {
            self.metrics.placement_queue_full.inc();
            PlaceError::Overloaded
        })?;
        answer
            .await
            .map_err(|_| {
                PlaceError::Store(StoreError::Unavailable("placement writer stopped".into()))
            })?
            .map_err(PlaceError::Store)
    }
}

struct Writer {
    store: Arc<dyn Store>,
    config: PlacementConfig,
    metrics: Arc<Metrics>,
    outbox_wake: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.config.linger;
            while batch.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) if self.config.linger.is_zero() => break,
                    Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    },
                }
            }
            self.apply(batch).await;
        }
    }

    async fn apply(&self, batch: Vec<Job>) {
        let (requests, replies): (Vec<OrderRequest>, Vec<_>) =
            batch.into_iter().map(|j| (j.request, j.reply)).unzip();
        let started = Instant::now();
        let now = Timestamp::now();
        let result = self
            .store
            .place_batch(&requests, now.plus_secs(self.config.hold_ttl_secs), now)
            .await;
        self.metrics
            .placement_batch_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .placement_batch_size
            .observe(requests.len() as f64);
        match result {
            Ok(result) => {
                for (outcome, reply) in result.outcomes.into_iter().zip(replies) {
                    self.count(&outcome);
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) if requests.len() > 1 => {
                tracing::warn!(error = %err, size = requests.len(), "placement batch failed; retrying its orders one by one");
                for (request, reply) in requests.into_iter().zip(replies) {
                    let outcome = self.place_one(&request).await;
                    if let Ok(outcome) = &outcome {
                        self.count(outcome);
                    }
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(err.to_string())));
                }
            }
        }
        self.outbox_wake.notify_one();
    }

    /// Places one order in its own transaction. Losing an idempotency race to another
    /// node is retried: the retry finds the winner's order and replays it.
    async fn place_one(&self, request: &OrderRequest) -> Result<PlaceOutcome, StoreError> {
        let mut attempt = 1;
        loop {
            let now = Timestamp::now();
            let result = self
                .store
                .place_batch(
                    std::slice::from_ref(request),
                    now.plus_secs(self.config.hold_ttl_secs),
                    now,
                )
                .await;
            match result {
                Err(StoreError::Conflict("idempotency_race"))
                    if attempt < IDEMPOTENCY_RACE_ATTEMPTS =>
                {
                    attempt += 1
                }
                other => {
                    return other.and_then(|mut r| r.outcomes.pop().ok_or(StoreError::NotFound))
                }
            }
        }
    }

    fn count(&self, outcome: &PlaceOutcome) {
        match outcome {
            PlaceOutcome::Placed(_) => {
                self.metrics.orders_placed.inc();
            }
            PlaceOutcome::Replayed(_) => {}
            PlaceOutcome::Rejected(rejection) => self.metrics.reject(rejection_code(rejection)),
        }
    }
}

/// The stable error code of each rejection (also used as the metric label).
pub fn rejection_code(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::UnknownProduct { .. } => "not_found",
        Rejection::NotReleased { .. } => "not_released",
        Rejection::OutOfStock { .. } => "out_of_stock",
        Rejection::PurchaseLimit { .. } => "purchase_limit",
        Rejection::IdempotencyMismatch => "idempotency_mismatch",
        Rejection::TotalTooLarge => "validation_failed",
    }
}
