//! What a node knows of waiting-room tickets without reading them again (issue 12).
//!
//! Buyers follow their tickets several times a second (`GET /queue/{ticket}`, and each
//! ticket stream), so with a long line, reading every ticket from the database each time
//! starves the placement writers of connections just when the line needs them most (after
//! a database outage, say). Most of those reads can be answered from what the node saw:
//!
//! - a finished ticket never changes (its outcome is fenced by admission, and written once);
//! - a waiting ticket leaves the line only by admission, and every node reads the line
//!   every poll, learning the last `seq` admitted (`WaitingLine::left`): a ticket after it
//!   is still waiting, as of that read.
//!
//! So a waiting ticket is answered "still waiting" from memory while the node's line is
//! fresh, and read again once the line shows something at or after it left. An admitted
//! ticket is about to finish: it is read again after [`ADMITTED_FOR`] (its buyer learns the
//! outcome that much later at most, and a few hundred tickets being placed at once are not
//! read four times a second each). Entries last
//! half of a finished ticket's lifetime (pruning never deletes a ticket still known here),
//! and the table is bounded.

use crate::store::{TicketRecord, TicketState, WaitingLine};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tickets known at most: beyond, the oldest half of the table is forgotten.
const CAPACITY: usize = 50_000;
/// How long an admitted ticket's state is trusted.
const ADMITTED_FOR: Duration = Duration::from_millis(500);

pub(super) struct KnownTickets {
    entries: Mutex<HashMap<String, Known>>,
    /// How long an entry is trusted.
    lifetime: Duration,
}

struct Known {
    ticket: TicketRecord,
    learned: Instant,
}

impl KnownTickets {
    /// `ticket_ttl`: how long a finished ticket stays in the store.
    pub(super) fn new(ticket_ttl: Duration) -> KnownTickets {
        KnownTickets {
            entries: Mutex::new(HashMap::new()),
            lifetime: ticket_ttl / 2,
        }
    }

    /// The ticket as known here, if that still holds: finished, or waiting behind
    /// everything that had left `line` (a line read recent enough to trust, if any).
    pub(super) fn get(&self, id: &str, line: Option<&WaitingLine>) -> Option<TicketRecord> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let known = entries.get(id)?;
        if known.learned.elapsed() >= self.lifetime {
            return None;
        }
        let holds = match known.ticket.state {
            TicketState::Done => true,
            TicketState::Waiting => line.is_some_and(|line| known.ticket.seq > line.left),
            TicketState::Admitted => known.learned.elapsed() < ADMITTED_FOR,
        };
        holds.then(|| known.ticket.clone())
    }

    /// Remembers a ticket just read from the store.
    pub(super) fn learn(&self, ticket: &TicketRecord) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&ticket.id) {
            let lifetime = self.lifetime;
            entries.retain(|_, known| known.learned.elapsed() < lifetime);
            if entries.len() >= CAPACITY {
                let mut learned: Vec<Instant> = entries.values().map(|k| k.learned).collect();
                let (_, median, _) = learned.select_nth_unstable(CAPACITY / 2);
                let median = *median;
                entries.retain(|_, known| known.learned > median);
            }
        }
        entries.insert(
            ticket.id.clone(),
            Known {
                ticket: ticket.clone(),
                learned: Instant::now(),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::allocation::OrderRequest;
    use crate::domain::Timestamp;
    use crate::store::TicketOutcome;

    fn ticket(seq: i64, state: TicketState) -> TicketRecord {
        TicketRecord {
            seq,
            id: format!("t{seq}"),
            request: OrderRequest {
                user_id: 1,
                idempotency_key: format!("k{seq}"),
                request_hash: String::new(),
                lines: Vec::new(),
                coupon_id: None,
                points: 0,
            },
            state,
            attempts: 0,
            outcome: (state == TicketState::Done).then_some(TicketOutcome::Failed),
            created_at: Timestamp::from_millis(0),
        }
    }

    fn line(left: i64) -> WaitingLine {
        WaitingLine {
            head: Some(left + 1),
            waiting: 10,
            left,
        }
    }

    #[test]
    fn a_waiting_ticket_is_known_only_while_the_line_has_not_reached_it() {
        let known = KnownTickets::new(Duration::from_secs(300));
        known.learn(&ticket(5, TicketState::Waiting));
        assert!(known.get("t5", Some(&line(4))).is_some());
        assert!(known.get("t5", Some(&line(5))).is_none(), "admitted since");
        assert!(known.get("t5", Some(&line(9))).is_none());
        assert!(known.get("t5", None).is_none(), "no line fresh enough");
        assert!(known.get("t6", Some(&line(0))).is_none(), "never read");
    }

    #[test]
    fn a_finished_ticket_is_known_whatever_the_line_and_an_admitted_one_briefly() {
        let known = KnownTickets::new(Duration::from_secs(300));
        known.learn(&ticket(5, TicketState::Done));
        known.learn(&ticket(6, TicketState::Admitted));
        assert!(known.get("t5", None).is_some());
        assert!(known.get("t5", Some(&line(100))).is_some());
        assert!(known.get("t6", None).is_some(), "just read");
        std::thread::sleep(ADMITTED_FOR);
        assert!(known.get("t6", None).is_none(), "read again after a while");
        assert!(known.get("t5", None).is_some());
    }

    #[test]
    fn entries_expire_and_the_table_stays_bounded() {
        let known = KnownTickets::new(Duration::ZERO);
        known.learn(&ticket(5, TicketState::Done));
        assert!(known.get("t5", None).is_none(), "expired at once");

        let known = KnownTickets::new(Duration::from_secs(300));
        for seq in 0..(CAPACITY as i64 + 10) {
            known.learn(&ticket(seq, TicketState::Done));
        }
        assert!(known.len() <= CAPACITY, "{} entries", known.len());
        let newest = CAPACITY as i64 + 9;
        assert!(known.get(&format!("t{newest}"), None).is_some());
    }
}
