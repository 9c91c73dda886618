//! The placement writer of DESIGN §3: validated order requests queue here and are applied in
//! batches, one transaction per batch (group commit). A batch never fails as a whole on
//! account of one order: allocation decides each order on its own, and if the transaction
//! itself fails the batch is retried one order at a time.
//!
//! When the writers' queues are full, attempts wait in the [`waiting_room`] instead. A
//! stopping node refuses new attempts ([`Placement::drain`]) and reports when everything it
//! accepted is decided ([`Placement::is_idle`]).

mod job;
mod known_tickets;
pub mod lock;
pub mod request;
pub mod waiting_room;

use super::error::PlaceError;
use crate::clock::SharedClock;
use crate::cluster::gate::{attempt_key, Gate};
use crate::domain::allocation::{OrderRequest, Rejection};
use crate::events::EventSync;
use crate::metrics::Metrics;
use crate::store::{PlaceOutcome, Store, StoreError, TicketRecord};
use job::{count, gate_lines, sold_out, Job};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use waiting_room::{Enqueued, RoomConfig, WaitingRoom};

#[derive(Debug, Clone, Copy)]
pub struct PlacementConfig {
    pub batch_max: usize,
    pub linger: Duration,
    pub queue_depth: usize,
    pub writers: usize,
    pub hold_ttl_secs: u64,
    pub room: RoomConfig,
    /// How long a stopping node waits for the outcomes of what it accepted.
    pub grace: Duration,
}

/// Tries of a single order that keeps losing an idempotency race to another node.
const IDEMPOTENCY_RACE_ATTEMPTS: u32 = 3;

/// What became of an attempt.
pub enum Placed {
    /// Decided by a writer while the caller waited.
    Now(PlaceOutcome),
    /// Waiting in the waiting room; follow the ticket.
    Queued(TicketRecord),
}

#[derive(Clone)]
pub struct Placement {
    /// `Some` only with `STAMPEDE_PLACEMENT_STRATEGY=lock`, the seeds' baseline.
    lock: Option<Arc<lock::LockPlacement>>,
    writers: Arc<[mpsc::Sender<Job>]>,
    room: Arc<WaitingRoom>,
    gate: Gate,
    /// Asked whether an attempt has an order when the gate cannot vouch ([`Admit::Unsure`]).
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Attempts being decided while their caller waits.
    deciding: Arc<AtomicUsize>,
    draining: Arc<watch::Sender<bool>>,
}

impl Placement {
    /// Spawns the writer tasks and, when `holder` names this node, the waiting room's pump.
    /// Writers stop when every `Placement` clone is dropped; the pump when `stop` fires.
    #[allow(
        clippy::too_many_arguments,
        reason = "the writers' dependencies, named once at wiring"
    )]
    pub fn start(
        store: Arc<dyn Store>,
        clock: SharedClock,
        config: PlacementConfig,
        gate: Gate,
        metrics: Arc<Metrics>,
        events: EventSync,
        (holder, stop): (Option<String>, watch::Receiver<bool>),
        lock: Option<Arc<lock::LockPlacement>>,
    ) -> Placement {
        let depth = (config.queue_depth / config.writers).max(1);
        let writers: Vec<mpsc::Sender<Job>> = (0..config.writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(depth);
                let writer = Writer {
                    store: store.clone(),
                    clock: clock.clone(),
                    config,
                    metrics: metrics.clone(),
                    events: events.clone(),
                };
                tokio::spawn(writer.run(rx));
                tx
            })
            .collect();
        let writers: Arc<[mpsc::Sender<Job>]> = writers.into();
        let room = Arc::new(WaitingRoom::new(
            store.clone(),
            clock,
            config.room,
            gate.clone(),
            metrics.clone(),
        ));
        let draining = Arc::new(watch::channel(false).0);
        if let Some(holder) = holder {
            // The pump stops admitting when the node drains, or at the latest when it stops.
            let (pump_stop, pump_stopped) = watch::channel(false);
            let mut drained = draining.subscribe();
            let mut stop = stop;
            tokio::spawn(async move {
                tokio::select! {
                    _ = drained.wait_for(|d| *d) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                let _ = pump_stop.send(true);
            });
            tokio::spawn(
                room.clone()
                    .pump(holder, writers.clone(), pump_stopped, config.grace),
            );
        }
        Placement {
            lock,
            writers,
            room,
            gate,
            store,
            metrics,
            deciding: Arc::default(),
            draining,
        }
    }

    pub fn waiting_room(&self) -> &WaitingRoom {
        &self.room
    }

    /// From now on, refuses new attempts (`PlaceError::ShuttingDown`): the node is stopping.
    /// The waiting room's pump stops admitting and finishes what it admitted.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Whether every attempt this node accepted has been decided: those whose caller waits,
    /// and the waiting-room tickets it admitted.
    pub fn is_idle(&self) -> bool {
        self.deciding.load(Ordering::Acquire) == 0 && self.room.is_idle()
    }

    /// Places one order. The availability gate refuses products known to be sold out
    /// without a database round trip; what it lets through, the database decides, and the
    /// gate is told the outcome. When the writer is full (or others already wait), the
    /// attempt waits in the waiting room.
    ///
    /// The work always runs to its end, so the gate is settled even if the caller goes
    /// away (a request timeout drops the handler): units taken at admission are always
    /// given back unless the database holds them. It runs in the caller's task, and only
    /// what is left of it when the caller goes away moves to a task of its own
    /// ([`Detached`]): no hand-off between tasks per order.
    pub async fn place(&self, request: OrderRequest) -> Result<Placed, PlaceError> {
        if self.is_draining() {
            return Err(PlaceError::ShuttingDown);
        }
        self.metrics.orders_attempted.inc();
        if let Some(lock) = &self.lock {
            // The seeds' baseline has no gate: every attempt takes the lock.
            let outcome = lock.place(request).await?;
            count(&self.metrics, &outcome);
            return Ok(Placed::Now(outcome));
        }
        let this = self.clone();
        this.deciding.fetch_add(1, Ordering::AcqRel);
        Detached::new(async move {
            let placed = this.decide(request).await;
            this.deciding.fetch_sub(1, Ordering::AcqRel);
            placed
        })
        .await
    }

    async fn decide(&self, request: OrderRequest) -> Result<Placed, PlaceError> {
        let lines = gate_lines(&request);
        let attempt = attempt_key(request.user_id, &request.idempotency_key);
        let admit = self.gate.admit(&attempt, &lines).await;
        if let Some(product_id) = sold_out(&*self.store, &request, admit).await {
            self.metrics.sold_out_fast_rejects.inc();
            let rejection = Rejection::OutOfStock { product_id };
            self.metrics.reject(rejection.code());
            return Ok(Placed::Now(PlaceOutcome::Rejected(rejection)));
        }
        // One buyer's requests always go to the same writer, so their idempotency keys are
        // decided in order on this node.
        let writer = request.user_id.unsigned_abs() as usize % self.writers.len();
        let request = if self.room.is_empty() {
            let (reply, answer) = oneshot::channel();
            match self.writers[writer].try_send(Job { request, reply }) {
                Ok(()) => {
                    let outcome = Self::answer(answer).await;
                    self.gate.settle(admit, &lines, outcome.as_ref().ok()).await;
                    return Ok(Placed::Now(outcome?));
                }
                Err(mpsc::error::TrySendError::Full(job)) => job.request,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.gate.settle(admit, &lines, None).await;
                    return Err(stopped());
                }
            }
        } else {
            request
        };
        // A ticket is admitted through the gate again when its turn comes (perhaps on
        // another node): what this attempt counted is given back now.
        self.gate.settle(admit, &lines, None).await;
        match self.room.enqueue(&request).await? {
            Enqueued::Ticket(ticket) => Ok(Placed::Queued(ticket)),
            Enqueued::Full => {
                self.metrics.placement_queue_full.inc();
                Err(PlaceError::Overloaded)
            }
        }
    }

    async fn answer(
        answer: oneshot::Receiver<Result<PlaceOutcome, StoreError>>,
    ) -> Result<PlaceOutcome, PlaceError> {
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(PlaceError::Store)
    }
}

/// A future polled in the caller's task that, if dropped before it finishes, finishes in
/// a task of its own: what it started (a unit taken at the gate) is always settled.
struct Detached<T: Send + 'static> {
    future: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> Detached<T> {
    fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        Detached {
            future: Some(Box::pin(future)),
        }
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending; // finished already: never polled again
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let (Some(future), Ok(runtime)) = (self.future.take(), Handle::try_current()) {
            runtime.spawn(future);
        }
    }
}

fn stopped() -> PlaceError {
    PlaceError::Store(StoreError::Unavailable("placement writer stopped".into()))
}

struct Writer {
    store: Arc<dyn Store>,
    clock: SharedClock,
    config: PlacementConfig,
    metrics: Arc<Metrics>,
    events: EventSync,
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
        let now = self.clock.now();
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
                for outcome in &result.outcomes {
                    count(&self.metrics, outcome);
                }
                // Answer once this node has dispatched the batch's events, so a buyer's next
                // read (listing, gate, live stream) already shows the order. A separate task
                // waits, so the writer goes straight on to the next batch.
                let events = self.events.clone();
                tokio::spawn(async move {
                    match result.last_event_id {
                        Some(last) => events.caught_up_to(last).await,
                        // Nothing written: a replay may still wait on its order's events.
                        None => events.caught_up().await,
                    }
                    for (outcome, reply) in result.outcomes.into_iter().zip(replies) {
                        let _ = reply.send(Ok(outcome));
                    }
                });
            }
            Err(err) if requests.len() > 1 => {
                tracing::warn!(error = %err, size = requests.len(), "placement batch failed; retrying its orders one by one");
                for (request, reply) in requests.into_iter().zip(replies) {
                    let outcome = self.place_one(&request).await;
                    if let Ok(outcome) = &outcome {
                        count(&self.metrics, outcome);
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
        self.events.wake();
    }

    /// Places one order in its own transaction. Losing an idempotency race to another
    /// node is retried: the retry finds the winner's order and replays it.
    async fn place_one(&self, request: &OrderRequest) -> Result<PlaceOutcome, StoreError> {
        let mut attempt = 1;
        loop {
            let now = self.clock.now();
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
}

#[cfg(test)]
mod tests {
    use super::Detached;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_detached_future_answers_in_the_callers_task() {
        assert_eq!(Detached::new(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn a_detached_future_dropped_halfway_still_finishes() {
        let (started_tx, started) = oneshot::channel();
        let (go_tx, go) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel();
        let caller = tokio::spawn(Detached::new(async move {
            let _ = started_tx.send(());
            let _ = go.await;
            let _ = finished_tx.send("settled");
        }));
        started
            .await
            .expect("the future started in the caller's task");
        // The caller goes away (a request timeout drops the handler) mid-way.
        caller.abort();
        let _ = caller.await;
        go_tx
            .send(())
            .expect("the rest of the future still waits to be resumed");
        let done = tokio::time::timeout(Duration::from_secs(5), finished).await;
        assert_eq!(done.expect("finished in time"), Ok("settled"));
    }
}
