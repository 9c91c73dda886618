//! The waiting room (issues 3 and 12): when the placement writers' queues are full, attempts
//! wait in line instead of being refused. The client gets `202` with a ticket and follows its
//! position, then its outcome. A full room answers `503` with `Retry-After`.
//!
//! Tickets are kept in the store (`store::waiting_room`), so a node's crash, restart or
//! deploy loses none, and any node answers for any ticket. One node at a time admits them:
//! the holder of the `waiting-room` lease runs the [`WaitingRoom::pump`], which takes the
//! first waiting tickets in line order (first in, first out across the cluster) as its
//! writers free up and writes each outcome back. A new holder first puts the tickets its
//! predecessor admitted back in line: placing one again is idempotent (same buyer and
//! idempotency key), so an order placed just before a crash is replayed, never doubled.
//!
//! A stopping node's pump admits nothing more, finishes what it admitted within the grace
//! period, and gives up the lease so another node carries on at once.

use super::job::{gate_lines, sold_out, Job};
use super::known_tickets::KnownTickets;
use crate::auth::random_token;
use crate::clock::SharedClock;
use crate::cluster::gate::{attempt_key, Gate};
use crate::domain::allocation::{OrderRequest, Rejection};
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{
    PlaceOutcome, Store, StoreError, StoreResult, TicketOutcome, TicketRecord, TicketState,
    WaitingLine,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinSet;

/// Random bytes in a ticket id: unguessable, so a ticket id alone reveals nothing.
const TICKET_BYTES: usize = 16;
/// The lease of the one node that admits tickets.
pub const LEASE: &str = "waiting-room";
/// Tickets admitted per store round trip, at most: they wait in this node for room in the
/// writers' queues.
const ADMIT_MAX: i64 = 256;
/// A ticket whose placement failed this many times (the database, not the order) ends as
/// `failed`: its buyer retries with the same idempotency key.
const MAX_ATTEMPTS: i64 = 5;
/// Pause after a store error before the pump tries again.
const BACKOFF: Duration = Duration::from_millis(250);
/// How often a node not holding the room's lease asks for it, at most.
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
/// Finished tickets deleted per pass once their outcome has been kept long enough.
const PRUNE_BATCH: i64 = 1_000;
/// A line read in the last this many polls answers for the tickets waiting behind it.
const LINE_TRUSTED_FOR: u32 = 10;

#[derive(Debug, Clone, Copy)]
pub struct RoomConfig {
    /// Tickets that may wait; 0 refuses at once when the writers are full.
    pub depth: usize,
    /// How long a finished ticket's outcome stays readable.
    pub ticket_ttl: Duration,
    /// How long the admitting node's lease lasts; renewed at a third of it.
    pub lease: Duration,
    /// How often every node reads the line (for positions, and to see tickets queued
    /// elsewhere); the admitting node is also woken by tickets queued on it.
    pub poll: Duration,
}

pub enum Enqueued {
    Ticket(TicketRecord),
    Full,
}

pub struct WaitingRoom {
    store: Arc<dyn Store>,
    clock: SharedClock,
    config: RoomConfig,
    /// Told each admitted attempt's outcome.
    gate: Gate,
    metrics: Arc<Metrics>,
    arrived: Notify,
    /// The line as this node last read it, and when.
    line: Mutex<SeenLine>,
    /// While this node holds the lease, it alone admits: its line's `left` is exact.
    admitting: AtomicBool,
    /// Tickets whose answer does not need a read (`known_tickets`).
    known: KnownTickets,
    /// Tickets this node admitted whose outcome is not written yet.
    in_flight: AtomicUsize,
}

#[derive(Default)]
struct SeenLine {
    line: WaitingLine,
    read_at: Option<Instant>,
}

impl WaitingRoom {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        config: RoomConfig,
        gate: Gate,
        metrics: Arc<Metrics>,
    ) -> WaitingRoom {
        WaitingRoom {
            store,
            clock,
            config,
            gate,
            metrics,
            arrived: Notify::new(),
            line: Mutex::new(SeenLine::default()),
            admitting: AtomicBool::new(false),
            known: KnownTickets::new(config.ticket_ttl),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Whether nobody waits, as this node last read the line (at most one poll old): new
    /// attempts queue behind waiting tickets rather than slip past them into a writer.
    pub fn is_empty(&self) -> bool {
        self.seen().line.waiting == 0
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenLine> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether every ticket this node admitted has its outcome written.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Queues the attempt at the end of the line, or returns the ticket already open for
    /// the same buyer and idempotency key.
    pub async fn enqueue(&self, request: &OrderRequest) -> StoreResult<Enqueued> {
        let id = random_token(TICKET_BYTES);
        let depth = i64::try_from(self.config.depth).unwrap_or(i64::MAX);
        let queued = self
            .store
            .enqueue_ticket(&id, request, depth, self.clock.now())
            .await?;
        let Some(ticket) = queued else {
            self.metrics.waiting_room_full.inc();
            return Ok(Enqueued::Full);
        };
        if ticket.id == id {
            self.metrics.waiting_room_entered.inc();
            let mut seen = self.seen();
            seen.line.head.get_or_insert(ticket.seq);
            seen.line.waiting += 1;
            drop(seen);
            self.arrived.notify_one();
        }
        Ok(Enqueued::Ticket(ticket))
    }

    /// A ticket, from what this node knows of it when that still holds (finished, or
    /// behind the line as last read), else read from the store.
    pub async fn ticket(&self, id: &str) -> StoreResult<Option<TicketRecord>> {
        let line = self.trusted_line();
        if let Some(ticket) = self.known.get(id, line.as_ref()) {
            self.metrics
                .waiting_room_ticket_reads
                .get_or_create(&SourceLabels {
                    source: "known".into(),
                })
                .inc();
            return Ok(Some(ticket));
        }
        self.metrics
            .waiting_room_ticket_reads
            .get_or_create(&SourceLabels {
                source: "store".into(),
            })
            .inc();
        let ticket = self.store.ticket(id).await?;
        if let Some(ticket) = &ticket {
            self.known.learn(ticket);
        }
        Ok(ticket)
    }

    /// The line as last read, if recent enough to answer for waiting tickets: read within
    /// [`LINE_TRUSTED_FOR`] polls, or kept exact by this node admitting.
    fn trusted_line(&self) -> Option<WaitingLine> {
        let seen = self.seen();
        let read_at = seen.read_at?;
        let fresh = read_at.elapsed() < self.config.poll * LINE_TRUSTED_FOR;
        (fresh || self.admitting.load(Ordering::Acquire)).then_some(seen.line)
    }

    /// 1 for the next ticket to be admitted; 0 once admitted.
    pub fn position(&self, ticket: &TicketRecord) -> u64 {
        if ticket.state != TicketState::Waiting {
            return 0;
        }
        let head = self.seen().line.head.unwrap_or(ticket.seq);
        u64::try_from(ticket.seq - head + 1).unwrap_or(1).max(1)
    }

    /// Reads the line every `poll`; while this node holds the lease, admits tickets in
    /// order as its writers free up. On `stop`: admits nothing more, waits up to `grace`
    /// for the outcomes of what it admitted, and gives up the lease.
    pub(super) async fn pump(
        self: Arc<Self>,
        holder: String,
        writers: Arc<[mpsc::Sender<Job>]>,
        mut stop: watch::Receiver<bool>,
        grace: Duration,
    ) {
        let mut lease = Lease::new(&holder, self.config.lease);
        let mut admitted = JoinSet::new();
        let mut pruned_at = tokio::time::Instant::now();
        while !*stop.borrow() {
            while admitted.try_join_next().is_some() {}
            let line = match self.store.waiting_line().await {
                Ok(line) => line,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the waiting room's line failed");
                    pause(&mut stop, BACKOFF).await;
                    continue;
                }
            };
            *self.seen() = SeenLine {
                line,
                read_at: Some(Instant::now()),
            };
            self.metrics.waiting_room_depth.set(line.waiting);
            if !self.hold(&mut lease).await {
                pause(&mut stop, self.config.poll).await;
                continue;
            }
            if pruned_at.elapsed() >= self.config.ticket_ttl / 4 {
                pruned_at = tokio::time::Instant::now();
                self.prune().await;
            }
            if line.waiting == 0 {
                tokio::select! {
                    _ = self.arrived.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = stop.wait_for(|stopped| *stopped) => {}
                }
                continue;
            }
            // Taken a batch at a time (one write for many tickets), then handed to the
            // writers one by one as their queues free up.
            let tickets = match self.store.admit_tickets(ADMIT_MAX).await {
                Ok(tickets) => tickets,
                Err(e) => {
                    tracing::warn!(error = %e, "admitting waiting tickets failed");
                    pause(&mut stop, BACKOFF).await;
                    continue;
                }
            };
            if let Some(last) = tickets.last() {
                let mut seen = self.seen();
                seen.line.left = seen.line.left.max(last.seq);
            }
            for ticket in tickets {
                // A holder that lost the room meanwhile leaves the rest to the new holder,
                // which has put them back in line.
                if !self.hold(&mut lease).await {
                    break;
                }
                self.clone()
                    .admit(ticket, &writers, &mut stop, &mut admitted)
                    .await;
            }
        }
        if tokio::time::timeout(grace, async {
            while admitted.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = admitted.len(),
                "waiting-room outcomes not written within the grace period; the next holder places them again"
            );
        }
        self.admitting.store(false, Ordering::Release);
        lease.release(&*self.store, self.clock.now()).await;
    }

    /// Holds on to the lease (renewing it when due); whether this node admits.
    async fn hold(&self, lease: &mut Lease<'_>) -> bool {
        let held = lease.hold(&*self.store, self.clock.now()).await;
        self.admitting.store(held, Ordering::Release);
        held
    }

    /// Hands one admitted ticket to its writer (waiting for room in its queue, so nobody
    /// overtakes) and spawns the wait for its outcome.
    async fn admit(
        self: Arc<Self>,
        ticket: TicketRecord,
        writers: &[mpsc::Sender<Job>],
        stop: &mut watch::Receiver<bool>,
        admitted: &mut JoinSet<()>,
    ) {
        let lines = gate_lines(&ticket.request);
        let attempt = attempt_key(ticket.request.user_id, &ticket.request.idempotency_key);
        let admit = self.gate.admit(&attempt, &lines).await;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.metrics.waiting_room_admitted.inc();
        // A ticket admitted before (by a holder that died, or whose placement failed) may
        // have its order already, or about to commit in the old holder's writer: only the
        // writer's transaction knows, and replays it. The gate's sold-out shortcut is for
        // first admissions.
        let refused = if ticket.attempts <= 1 {
            sold_out(&*self.store, &ticket.request, admit).await
        } else {
            None
        };
        if let Some(product_id) = refused {
            self.metrics.sold_out_fast_rejects.inc();
            let rejection = Rejection::OutOfStock { product_id };
            self.metrics.reject(rejection.code());
            let outcome = TicketOutcome::Rejected(rejection);
            admitted.spawn(async move { self.finish(&ticket, outcome).await });
            return;
        }
        let writer = ticket.request.user_id.unsigned_abs() as usize % writers.len();
        let permit = tokio::select! {
            permit = writers[writer].reserve() => permit.ok(),
            _ = stop.wait_for(|stopped| *stopped) => None,
        };
        let Some(permit) = permit else {
            // Stopping: back in line for the next holder.
            self.gate.settle(admit, &lines, None).await;
            if let Err(e) = self.store.readmit_tickets(Some(&[ticket.seq])).await {
                tracing::warn!(error = %e, "putting a ticket back in line failed; the next holder will");
            }
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        let (reply, answer) = oneshot::channel();
        permit.send(Job {
            request: ticket.request.clone(),
            reply,
        });
        admitted.spawn(async move {
            let placed = answer
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("placement writer stopped".into())));
            self.gate.settle(admit, &lines, placed.as_ref().ok()).await;
            let outcome = match placed {
                Ok(PlaceOutcome::Placed(order)) => TicketOutcome::Placed { order_id: order.id },
                Ok(PlaceOutcome::Replayed(order)) => TicketOutcome::Replayed { order_id: order.id },
                Ok(PlaceOutcome::Rejected(rejection)) => TicketOutcome::Rejected(rejection),
                Err(e) if ticket.attempts < MAX_ATTEMPTS => {
                    tracing::warn!(ticket = ticket.seq, error = %e, "queued placement failed; back in line");
                    tokio::time::sleep(BACKOFF).await;
                    if let Err(e) = self.store.readmit_tickets(Some(&[ticket.seq])).await {
                        tracing::warn!(error = %e, "putting a ticket back in line failed; the next holder will");
                    }
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
                Err(e) => {
                    tracing::warn!(ticket = ticket.seq, error = %e, "queued placement failed too often");
                    TicketOutcome::Failed
                }
            };
            self.finish(&ticket, outcome).await;
        });
    }

    /// Writes a ticket's outcome, retrying while the store is away: until it is written,
    /// nobody else would finish the ticket (this node holds the lease).
    async fn finish(&self, ticket: &TicketRecord, outcome: TicketOutcome) {
        for attempt in 1.. {
            match self
                .store
                .finish_ticket(ticket.seq, ticket.attempts, &outcome, self.clock.now())
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 40 => {
                    tracing::debug!(error = %e, "writing a ticket's outcome failed; retrying");
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(e) => {
                    tracing::warn!(ticket = ticket.seq, error = %e, "a ticket's outcome could not be written; the next holder places it again");
                    break;
                }
            }
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    async fn prune(&self) {
        let ttl = i64::try_from(self.config.ticket_ttl.as_millis()).unwrap_or(i64::MAX);
        let before = crate::domain::Timestamp::from_millis(self.clock.now().millis() - ttl);
        if let Err(e) = self.store.prune_tickets(before, PRUNE_BATCH).await {
            tracing::warn!(error = %e, "pruning finished tickets failed");
        }
    }
}

/// This node's hold on [`LEASE`]: renewed at a third of its length, and on taking it over,
/// the previous holder's admitted tickets are put back in line first.
struct Lease<'a> {
    holder: &'a str,
    length: Duration,
    held: bool,
    renew_at: tokio::time::Instant,
}

impl<'a> Lease<'a> {
    fn new(holder: &'a str, length: Duration) -> Lease<'a> {
        Lease {
            holder,
            length,
            held: false,
            renew_at: tokio::time::Instant::now(),
        }
    }

    async fn hold(&mut self, store: &dyn Store, now: crate::domain::Timestamp) -> bool {
        if tokio::time::Instant::now() < self.renew_at {
            return self.held;
        }
        let length = i64::try_from(self.length.as_millis()).unwrap_or(i64::MAX);
        let until = crate::domain::Timestamp::from_millis(now.millis().saturating_add(length));
        let taken = match store.try_lease(LEASE, self.holder, until, now).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the waiting-room lease failed");
                false
            }
        };
        if taken && !self.held {
            match store.readmit_tickets(None).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    tickets = n,
                    "took over the waiting room; its admitted tickets are back in line"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "taking over the waiting room failed");
                    return false;
                }
            }
            tracing::info!("admitting the waiting room's tickets");
        }
        self.held = taken;
        // The holder renews at a third of the lease; the others ask often enough to take
        // over soon after a holder gives the lease up, whatever its length.
        let every = if taken {
            self.length / 3
        } else {
            (self.length / 3).min(TAKEOVER_EVERY)
        };
        self.renew_at = tokio::time::Instant::now() + every;
        taken
    }

    /// Lets the lease lapse now, so another node takes over without waiting it out.
    async fn release(&self, store: &dyn Store, now: crate::domain::Timestamp) {
        if self.held {
            let _ = store.try_lease(LEASE, self.holder, now, now).await;
        }
    }
}

async fn pause(stop: &mut watch::Receiver<bool>, how_long: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(how_long) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}
