//! The waiting room (issue 3): when the placement writers' queues are full, attempts wait
//! here first-in first-out instead of being refused. The client gets `202` with a ticket
//! and follows its position, then its outcome, over SSE. A full room answers `503` with
//! `Retry-After`.
//!
//! One pump task admits the head ticket whenever its writer has capacity
//! (`mpsc::Sender::reserve`), so nobody overtakes, and new attempts queue behind waiting
//! tickets rather than slipping past them into a writer. Tickets live in this node's memory:
//! a restart loses them, and their clients retry with the same `Idempotency-Key`.

use super::job::{gate_lines, Job};
use crate::auth::random_token;
use crate::cluster::gate::{Admit, Gate};
use crate::domain::allocation::OrderRequest;
use crate::metrics::Metrics;
use crate::store::{PlaceOutcome, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// Random bytes in a ticket id: unguessable, so a ticket id alone reveals nothing.
const TICKET_BYTES: usize = 16;

/// Where a ticket is.
#[derive(Debug, Clone)]
pub enum TicketStatus {
    Waiting,
    /// Handed to a writer; the outcome follows shortly.
    Placing,
    Done(Result<PlaceOutcome, String>),
}

pub struct Ticket {
    pub id: String,
    pub owner: i64,
    /// Admission order: the ticket's position is `seq − head + 1`.
    pub seq: u64,
    pub status: watch::Sender<TicketStatus>,
    finished_at: Mutex<Option<Instant>>,
}

struct Waiting {
    ticket: Arc<Ticket>,
    request: OrderRequest,
    writer: usize,
    /// The gate's answer when the attempt arrived, to settle with once it is decided.
    admit: Admit,
}

#[derive(Default)]
struct Room {
    queue: VecDeque<Waiting>,
    tickets: HashMap<String, Arc<Ticket>>,
    /// `(user, idempotency key)` of waiting tickets: a retry gets the same ticket back.
    by_key: HashMap<(i64, String), String>,
    next_seq: u64,
}

pub struct WaitingRoom {
    room: Mutex<Room>,
    arrived: Notify,
    /// Sequence number of the next ticket to be admitted; watchers derive their position.
    head: watch::Sender<u64>,
    depth: usize,
    ticket_ttl: Duration,
    /// Told each admitted attempt's outcome (the attempt passed it before it queued).
    gate: Gate,
    metrics: Arc<Metrics>,
}

pub enum Enqueued {
    Ticket(Arc<Ticket>),
    Full,
}

impl WaitingRoom {
    pub fn new(
        depth: usize,
        ticket_ttl: Duration,
        gate: Gate,
        metrics: Arc<Metrics>,
    ) -> WaitingRoom {
        WaitingRoom {
            room: Mutex::new(Room::default()),
            arrived: Notify::new(),
            head: watch::channel(0).0,
            depth,
            ticket_ttl,
            gate,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Queues the attempt for `writer`, or returns the ticket already waiting for the same
    /// buyer and idempotency key.
    pub fn enqueue(&self, request: OrderRequest, writer: usize, admit: Admit) -> Enqueued {
        let mut room = self.lock();
        let key = (request.user_id, request.idempotency_key.clone());
        if let Some(ticket) = room.by_key.get(&key).and_then(|id| room.tickets.get(id)) {
            return Enqueued::Ticket(ticket.clone());
        }
        if room.queue.len() >= self.depth {
            self.metrics.waiting_room_full.inc();
            return Enqueued::Full;
        }
        let seq = room.next_seq;
        room.next_seq += 1;
        let ticket = Arc::new(Ticket {
            id: random_token(TICKET_BYTES),
            owner: request.user_id,
            seq,
            status: watch::channel(TicketStatus::Waiting).0,
            finished_at: Mutex::new(None),
        });
        room.tickets.insert(ticket.id.clone(), ticket.clone());
        room.by_key.insert(key, ticket.id.clone());
        room.queue.push_back(Waiting {
            ticket: ticket.clone(),
            request,
            writer,
            admit,
        });
        self.metrics.waiting_room_depth.set(room.queue.len() as i64);
        drop(room);
        self.metrics.waiting_room_entered.inc();
        self.arrived.notify_one();
        Enqueued::Ticket(ticket)
    }

    pub fn ticket(&self, id: &str) -> Option<Arc<Ticket>> {
        self.lock().tickets.get(id).cloned()
    }

    /// 1 for the next ticket to be admitted; 0 once admitted.
    pub fn position(&self, ticket: &Ticket) -> u64 {
        (ticket.seq + 1).saturating_sub(*self.head.borrow())
    }

    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Admits tickets in order as writers free up, until `stop` fires.
    pub(super) async fn pump(
        self: Arc<Self>,
        writers: Arc<[mpsc::Sender<Job>]>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let next = self.lock().queue.front().map(|w| w.writer);
            let Some(writer) = next else {
                tokio::select! {
                    _ = self.arrived.notified() => continue,
                    _ = stop.changed() => return,
                }
            };
            let permit = tokio::select! {
                permit = writers[writer].reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            // Only this task pops, so the head is still the ticket the permit was for.
            let Some(admitted) = self.admit_head() else {
                continue;
            };
            let (reply, answer) = oneshot::channel();
            let lines = gate_lines(&admitted.request);
            let admit = admitted.admit;
            permit.send(Job {
                request: admitted.request,
                reply,
            });
            let ticket = admitted.ticket;
            let gate = self.gate.clone();
            tokio::spawn(async move {
                let outcome = match answer.await {
                    Ok(result) => result.map_err(|e: StoreError| e.to_string()),
                    Err(_) => Err("placement writer stopped".to_owned()),
                };
                if let Err(cause) = &outcome {
                    tracing::warn!(ticket = %ticket.id, error = %cause, "queued placement failed");
                }
                gate.settle(admit, &lines, outcome.as_ref().ok()).await;
                *ticket.finished_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now());
                ticket.status.send_replace(TicketStatus::Done(outcome));
            });
        }
    }

    fn admit_head(&self) -> Option<Waiting> {
        let mut room = self.lock();
        let admitted = room.queue.pop_front()?;
        room.by_key.remove(&(
            admitted.request.user_id,
            admitted.request.idempotency_key.clone(),
        ));
        self.metrics.waiting_room_depth.set(room.queue.len() as i64);
        self.prune(&mut room);
        drop(room);
        self.head.send_replace(admitted.ticket.seq + 1);
        admitted.ticket.status.send_replace(TicketStatus::Placing);
        Some(admitted)
    }

    /// Forgets finished tickets once their outcome has been kept for `ticket_ttl`.
    fn prune(&self, room: &mut Room) {
        let ttl = self.ticket_ttl;
        room.tickets.retain(|_, t| {
            let finished = *t.finished_at.lock().unwrap_or_else(|p| p.into_inner());
            finished.is_none_or(|at| at.elapsed() < ttl)
        });
    }
}
