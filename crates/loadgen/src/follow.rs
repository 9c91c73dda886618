//! Following up a drop attempt that its first answer did not decide, as a buyer's client
//! would, so that a run under faults (issue 12) says what became of every attempt:
//!
//! - `202 Accepted` is a waiting-room ticket: it is polled at its `status_url` until it is
//!   `placed` or `replayed` (an order), `rejected` (a refusal with its code) or `failed`
//!   (send the order again). Any node may answer; a node that does not know the ticket
//!   answers 404, and a ticket no node knows any more is **lost** (a waiting room kept in
//!   one node's memory loses its tickets with the node);
//! - no answer at all, or `503` (a node stopping or overloaded, with `Retry-After`) or
//!   `502`/`504` (a proxy without its upstream), is retried on the next node after
//!   `Retry-After` or a short backoff;
//! - every retry sends the same Idempotency-Key, which makes it safe: an order the server
//!   placed before its answer was lost comes back as a replay (200), never as a second one.
//!
//! What one answer means is decided by pure functions ([`read_post`], [`read_poll`]),
//! tested below; [`Follower`] runs them against the targets until an attempt is settled or
//! its patience runs out, and keeps the [`Journal`] the drop writes out: every order it was
//! told about, every ticket and how it ended, every retry and why.

use crate::api::{self, Target, TicketStatus, TicketView};
use crate::outcome::ErrorKind;
use crate::runner::{self, Answer, Settled};
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// Longest `Retry-After` honoured: a server asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Pause before retry n without a `Retry-After`: 100 ms, doubling, at most 1.6 s.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX_DOUBLINGS: u32 = 4;

/// Answers a request may be sent again for, with the same Idempotency-Key.
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Why an attempt is sent again, and how it ends when it cannot be any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// As counted in summary.json: the error kind (`connect`…), the answer's code
    /// (`overloaded`, `unavailable`, `http_502`…), `ticket_failed` or `ticket_lost`.
    pub reason: String,
    /// The server's `Retry-After`, capped.
    pub after: Option<Duration>,
    /// The attempt's end if its patience runs out first.
    pub otherwise: Settled,
}

impl Retry {
    pub fn no_answer(kind: ErrorKind) -> Retry {
        Retry {
            reason: kind.as_str().to_owned(),
            after: None,
            otherwise: Settled::Failed(kind),
        }
    }
}

/// What an answer to `POST /api/v1/orders` means for the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostRead {
    Placed { order_id: i64, replayed: bool },
    Queued(TicketView),
    Refused(String),
    Retry(Retry),
}

pub fn read_post(answer: &Answer) -> PostRead {
    let malformed = || PostRead::Refused(format!("malformed_{}", answer.status.as_u16()));
    match answer.status {
        StatusCode::CREATED | StatusCode::OK => {
            match serde_json::from_slice::<api::Created>(&answer.body) {
                Ok(order) => PostRead::Placed {
                    order_id: order.id,
                    replayed: answer.status == StatusCode::OK,
                },
                Err(_) => malformed(),
            }
        }
        StatusCode::ACCEPTED => match serde_json::from_slice::<TicketView>(&answer.body) {
            Ok(ticket) => PostRead::Queued(ticket),
            Err(_) => malformed(),
        },
        status if is_retryable(status) => {
            let code = api::error_code(status, &answer.body).into_owned();
            PostRead::Retry(Retry {
                reason: code.clone(),
                after: retry_after(answer),
                otherwise: Settled::Rejected(code),
            })
        }
        status => PostRead::Refused(api::error_code(status, &answer.body).into_owned()),
    }
}

/// What an answer to `GET {status_url}` says about a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollRead {
    Ticket(TicketView),
    /// 404: this node does not know the ticket.
    Unknown,
    /// No answer, or 502/503/504: ask another node.
    Unreachable {
        after: Option<Duration>,
    },
    /// Any other answer (an expired token…): the ticket cannot be followed.
    Refused(String),
}

pub fn read_poll(answer: &Answer) -> PollRead {
    match answer.status {
        StatusCode::OK => match serde_json::from_slice::<TicketView>(&answer.body) {
            Ok(ticket) => PollRead::Ticket(ticket),
            Err(_) => PollRead::Refused("malformed_200".to_owned()),
        },
        StatusCode::NOT_FOUND => PollRead::Unknown,
        status if is_retryable(status) => PollRead::Unreachable {
            after: retry_after(answer),
        },
        status => PollRead::Refused(api::error_code(status, &answer.body).into_owned()),
    }
}

/// `Retry-After` in seconds (the only form the API sends), capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(answer: &Answer) -> Option<Duration> {
    let seconds: u64 = answer
        .headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The pause before retry `n` (0-based) when the server named none.
pub fn backoff(n: u32) -> Duration {
    BACKOFF_BASE * (1 << n.min(BACKOFF_MAX_DOUBLINGS))
}

/// How a ticket ended, as tickets.json and summary.json name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketEnd {
    Placed,
    Replayed,
    Rejected,
    /// The waiting room said `failed`; the attempt was sent again.
    Failed,
    /// Every node answered 404: the ticket is gone. The attempt was sent again.
    Lost,
    /// Still undecided when the attempt's patience ran out.
    Unresolved,
    /// Polling was refused (or answered something unreadable).
    Refused,
}

impl TicketEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketEnd::Placed => "placed",
            TicketEnd::Replayed => "replayed",
            TicketEnd::Rejected => "rejected",
            TicketEnd::Failed => "failed",
            TicketEnd::Lost => "lost",
            TicketEnd::Unresolved => "unresolved",
            TicketEnd::Refused => "refused",
        }
    }
}

/// One `202` ticket and what became of it: a line of tickets.json.
#[derive(Debug, Clone, Serialize)]
pub struct TicketRecord {
    pub attempt: u64,
    pub idempotency_key: String,
    pub ticket: String,
    /// The target that answered 202.
    pub node: String,
    pub end: TicketEnd,
    pub order_id: Option<i64>,
    /// The refusal's (or failure's) code.
    pub code: Option<String>,
    pub polls: u32,
    /// From the 202 to the end.
    pub waited_ms: u64,
}

/// Everything the follow-ups learnt, for orders.txt, tickets.json and summary.json.
#[derive(Default)]
pub struct Journal {
    /// Every order the server said it placed for an attempt: 201, a replay (200) on a
    /// retry, a ticket `placed` or `replayed`.
    orders: Mutex<Vec<i64>>,
    /// Of those, orders learnt from a replay on a retry: placed by an attempt whose answer
    /// never arrived.
    replayed_on_retry: Mutex<u64>,
    tickets: Mutex<Vec<TicketRecord>>,
    retries: Mutex<BTreeMap<String, u64>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal {
    pub fn order(&self, order_id: i64) {
        locked(&self.orders).push(order_id);
    }

    fn retry(&self, reason: &str) {
        *locked(&self.retries).entry(reason.to_owned()).or_default() += 1;
    }

    pub fn orders(&self) -> Vec<i64> {
        locked(&self.orders).clone()
    }

    pub fn tickets(&self) -> Vec<TicketRecord> {
        let mut tickets = locked(&self.tickets).clone();
        tickets.sort_by_key(|t| t.attempt);
        tickets
    }

    pub fn facts(&self) -> Followed {
        let tickets = locked(&self.tickets);
        let mut ends = BTreeMap::new();
        for t in tickets.iter() {
            *ends.entry(t.end).or_default() += 1;
        }
        let retries = locked(&self.retries).clone();
        Followed {
            orders_acknowledged: locked(&self.orders).len() as u64,
            orders_replayed_on_retry: *locked(&self.replayed_on_retry),
            tickets: tickets.len() as u64,
            tickets_by_end: ends,
            retries: retries.values().sum(),
            retries_by_reason: retries,
        }
    }
}

/// What summary.json says of the follow-ups.
#[derive(Serialize, Debug, PartialEq)]
pub struct Followed {
    pub orders_acknowledged: u64,
    pub orders_replayed_on_retry: u64,
    /// `202` answers (one attempt may get several: a ticket that failed, then another).
    pub tickets: u64,
    pub tickets_by_end: BTreeMap<TicketEnd, u64>,
    pub retries: u64,
    pub retries_by_reason: BTreeMap<String, u64>,
}

impl Followed {
    pub fn tickets_ended(&self, end: TicketEnd) -> u64 {
        self.tickets_by_end.get(&end).copied().unwrap_or(0)
    }
}

/// Sends a drop's attempts and follows them up: attempt n is buyer `n % tokens`, with key
/// `{key_prefix}-{n}`, first to node `n % nodes`.
pub struct Follower {
    pub client: Client,
    pub targets: Vec<Target>,
    /// `POST /api/v1/orders` on each target, parsed once.
    pub order_urls: Vec<Url>,
    pub tokens: Vec<HeaderValue>,
    /// Attempt n sends `bodies[n % len]`: one body for a drop's identical attempts, one per
    /// attempt when each names its own coupon. Serialised before the run, shared by
    /// reference count, so a retry sends exactly what the first try sent.
    pub bodies: Vec<Bytes>,
    /// Unique per run, so keys never meet those of an earlier run with the same buyers.
    pub key_prefix: String,
    /// How long an attempt is followed up before it counts as failed.
    pub patience: Duration,
    pub poll_every: Duration,
    pub journal: Journal,
}

/// How following a ticket ended for the attempt.
enum AfterTicket {
    Settled(Settled),
    Again(Retry),
}

impl Follower {
    fn nodes(&self) -> usize {
        self.order_urls.len()
    }

    fn token(&self, attempt: u64) -> &HeaderValue {
        &self.tokens[(attempt % self.tokens.len() as u64) as usize]
    }

    pub fn key(&self, attempt: u64) -> String {
        format!("{}-{attempt}", self.key_prefix)
    }

    pub fn first_node(&self, attempt: u64) -> usize {
        (attempt % self.nodes() as u64) as usize
    }

    /// Attempt `attempt`'s order, to node `node`.
    pub fn post(&self, attempt: u64, node: usize) -> RequestBuilder {
        self.client
            .post(self.order_urls[node % self.nodes()].clone())
            .header(AUTHORIZATION, self.token(attempt).clone())
            .header(CONTENT_TYPE, JSON)
            .header(IDEMPOTENCY_KEY, self.key(attempt))
            .body(self.bodies[(attempt % self.bodies.len() as u64) as usize].clone())
    }

    async fn send_post(&self, attempt: u64, node: usize) -> PostRead {
        match runner::send(self.post(attempt, node)).await {
            Ok(answer) => read_post(&answer),
            Err(e) => PostRead::Retry(Retry::no_answer(ErrorKind::of(&e))),
        }
    }

    async fn poll(&self, attempt: u64, node: usize, status_url: &str) -> PollRead {
        let url = match self.targets[node % self.nodes()].endpoint(status_url) {
            Ok(url) => url,
            Err(_) => return PollRead::Refused("bad_status_url".to_owned()),
        };
        let request = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.token(attempt).clone());
        match runner::send(request).await {
            Ok(answer) => read_poll(&answer),
            Err(_) => PollRead::Unreachable { after: None },
        }
    }

    /// Follows attempt `attempt` from the reading of its first answer until it is settled:
    /// an order, a refusal, or its patience spent on retries and tickets.
    pub async fn follow(self: Arc<Self>, attempt: u64, first: PostRead) -> Settled {
        let deadline = Instant::now() + self.patience;
        let mut node = self.first_node(attempt);
        let mut read = first;
        let mut retries = 0;
        loop {
            let retry = match read {
                PostRead::Placed { order_id, replayed } => {
                    self.journal.order(order_id);
                    if replayed && retries > 0 {
                        *locked(&self.journal.replayed_on_retry) += 1;
                    }
                    return Settled::Ok;
                }
                PostRead::Refused(code) => return Settled::Rejected(code),
                PostRead::Queued(ticket) => {
                    match self.follow_ticket(attempt, node, ticket, deadline).await {
                        AfterTicket::Settled(settled) => return settled,
                        AfterTicket::Again(retry) => retry,
                    }
                }
                PostRead::Retry(retry) => retry,
            };
            let wait = retry.after.unwrap_or_else(|| backoff(retries));
            if Instant::now() + wait >= deadline {
                return retry.otherwise;
            }
            tokio::time::sleep(wait).await;
            self.journal.retry(&retry.reason);
            retries += 1;
            node += 1;
            read = self.send_post(attempt, node).await;
        }
    }

    async fn follow_ticket(
        &self,
        attempt: u64,
        node: usize,
        ticket: TicketView,
        deadline: Instant,
    ) -> AfterTicket {
        let started = Instant::now();
        let mut record = TicketRecord {
            attempt,
            idempotency_key: self.key(attempt),
            ticket: ticket.ticket.clone(),
            node: self.targets[node % self.nodes()].as_str().to_owned(),
            end: TicketEnd::Unresolved,
            order_id: None,
            code: None,
            polls: 0,
            waited_ms: 0,
        };
        let (end, followed) = self
            .poll_until_decided(attempt, node, ticket, deadline, &mut record)
            .await;
        record.end = end;
        record.waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        locked(&self.journal.tickets).push(record);
        followed
    }

    /// Polls the ticket, starting at the node that issued it and moving on when a node does
    /// not answer or does not know it, until it is decided, every node has said 404, or
    /// the deadline passes.
    async fn poll_until_decided(
        &self,
        attempt: u64,
        node: usize,
        mut ticket: TicketView,
        deadline: Instant,
        record: &mut TicketRecord,
    ) -> (TicketEnd, AfterTicket) {
        let mut at = node;
        let mut unknown_at = vec![false; self.nodes()];
        let mut wait = self.poll_every;
        loop {
            match ticket.status() {
                TicketStatus::Pending => {}
                TicketStatus::Placed { order_id, replayed } => {
                    record.order_id = Some(order_id);
                    self.journal.order(order_id);
                    let end = if replayed {
                        TicketEnd::Replayed
                    } else {
                        TicketEnd::Placed
                    };
                    return (end, AfterTicket::Settled(Settled::Ok));
                }
                TicketStatus::Rejected(code) => {
                    record.code = Some(code.clone());
                    return (
                        TicketEnd::Rejected,
                        AfterTicket::Settled(Settled::Rejected(code)),
                    );
                }
                TicketStatus::Failed(code) => {
                    record.code = Some(code.clone());
                    let retry = Retry {
                        reason: "ticket_failed".to_owned(),
                        after: None,
                        otherwise: Settled::Rejected(code),
                    };
                    return (TicketEnd::Failed, AfterTicket::Again(retry));
                }
                TicketStatus::Malformed => {
                    let code = "malformed_ticket".to_owned();
                    record.code = Some(code.clone());
                    return (
                        TicketEnd::Refused,
                        AfterTicket::Settled(Settled::Rejected(code)),
                    );
                }
            }
            if Instant::now() + wait >= deadline {
                let unresolved = Settled::Rejected("ticket_unresolved".to_owned());
                return (TicketEnd::Unresolved, AfterTicket::Settled(unresolved));
            }
            tokio::time::sleep(wait).await;
            wait = self.poll_every;
            record.polls += 1;
            match self.poll(attempt, at, &ticket.status_url).await {
                PollRead::Ticket(read) => ticket = read,
                PollRead::Unknown => {
                    unknown_at[at % self.nodes()] = true;
                    if unknown_at.iter().all(|&u| u) {
                        let retry = Retry {
                            reason: "ticket_lost".to_owned(),
                            after: None,
                            otherwise: Settled::Rejected("ticket_lost".to_owned()),
                        };
                        return (TicketEnd::Lost, AfterTicket::Again(retry));
                    }
                    at += 1;
                }
                PollRead::Unreachable { after } => {
                    wait = after.unwrap_or(self.poll_every);
                    at += 1;
                }
                PollRead::Refused(code) => {
                    record.code = Some(code.clone());
                    let refused = Settled::Rejected(format!("ticket_{code}"));
                    return (TicketEnd::Refused, AfterTicket::Settled(refused));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }

    const WAITING: &str = r#"{"ticket":"t1","status":"waiting","position":3,"status_url":"/api/v1/queue/t1","events_url":"/api/v1/queue/t1/events","order":null,"error":null}"#;

    #[test]
    fn an_order_answer_is_placed_or_replayed() {
        assert_eq!(
            read_post(&answer(
                201,
                r#"{"id":41,"status":"pending_payment"}"#,
                None
            )),
            PostRead::Placed {
                order_id: 41,
                replayed: false
            }
        );
        assert_eq!(
            read_post(&answer(200, r#"{"id":41}"#, None)),
            PostRead::Placed {
                order_id: 41,
                replayed: true
            }
        );
        assert_eq!(
            read_post(&answer(201, "<html>", None)),
            PostRead::Refused("malformed_201".into())
        );
    }

    #[test]
    fn a_202_is_a_ticket_to_follow() {
        let PostRead::Queued(ticket) = read_post(&answer(202, WAITING, None)) else {
            panic!("not queued")
        };
        assert_eq!(ticket.ticket, "t1");
        assert_eq!(ticket.status_url, "/api/v1/queue/t1");
        assert_eq!(
            read_post(&answer(202, "{}", None)),
            PostRead::Refused("malformed_202".into())
        );
    }

    #[test]
    fn unavailable_nodes_are_retried_with_their_retry_after() {
        let overloaded = r#"{"error":{"code":"overloaded","message":"m"}}"#;
        assert_eq!(
            read_post(&answer(503, overloaded, Some("2"))),
            PostRead::Retry(Retry {
                reason: "overloaded".into(),
                after: Some(Duration::from_secs(2)),
                otherwise: Settled::Rejected("overloaded".into()),
            })
        );
        let PostRead::Retry(retry) = read_post(&answer(502, "bad gateway", None)) else {
            panic!("502 is retried")
        };
        assert_eq!((retry.reason.as_str(), retry.after), ("http_502", None));
        assert!(matches!(
            read_post(&answer(504, "", Some("1"))),
            PostRead::Retry(_)
        ));
        // A server asking for a long pause is asked again sooner.
        let PostRead::Retry(long) = read_post(&answer(503, overloaded, Some("3600"))) else {
            panic!("503 is retried")
        };
        assert_eq!(long.after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn refusals_are_final() {
        let oos = r#"{"error":{"code":"out_of_stock","message":"m"}}"#;
        assert_eq!(
            read_post(&answer(409, oos, None)),
            PostRead::Refused("out_of_stock".into())
        );
        assert_eq!(
            read_post(&answer(500, "", None)),
            PostRead::Refused("http_500".into())
        );
        assert_eq!(
            read_post(&answer(
                429,
                r#"{"error":{"code":"rate_limited","message":"m"}}"#,
                Some("1")
            )),
            PostRead::Refused("rate_limited".into())
        );
        assert!(!is_retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!is_retryable(StatusCode::CONFLICT));
    }

    #[test]
    fn a_poll_reads_the_ticket_or_says_where_to_ask_next() {
        assert!(
            matches!(read_poll(&answer(200, WAITING, None)), PollRead::Ticket(t) if t.position == 3)
        );
        assert_eq!(
            read_poll(&answer(
                404,
                r#"{"error":{"code":"not_found","message":"m"}}"#,
                None
            )),
            PollRead::Unknown
        );
        assert_eq!(
            read_poll(&answer(503, "", Some("1"))),
            PollRead::Unreachable {
                after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            read_poll(&answer(502, "", None)),
            PollRead::Unreachable { after: None }
        );
        assert_eq!(
            read_poll(&answer(
                401,
                r#"{"error":{"code":"invalid_token","message":"m"}}"#,
                None
            )),
            PollRead::Refused("invalid_token".into())
        );
        assert_eq!(
            read_poll(&answer(200, "nope", None)),
            PollRead::Refused("malformed_200".into())
        );
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        assert_eq!(
            retry_after(&answer(503, "", Some(" 3 "))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&answer(503, "", Some("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(&answer(503, "", None)), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let waits: Vec<u128> = (0..7).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 1600, 1600]);
    }

    #[test]
    fn the_journal_counts_tickets_by_end_and_retries_by_reason() {
        let journal = Journal::default();
        journal.order(5);
        journal.order(6);
        journal.retry("connect");
        journal.retry("connect");
        journal.retry("ticket_lost");
        let record = |attempt, end| TicketRecord {
            attempt,
            idempotency_key: format!("k-{attempt}"),
            ticket: format!("t{attempt}"),
            node: "http://a:1".into(),
            end,
            order_id: None,
            code: None,
            polls: 1,
            waited_ms: 10,
        };
        for (attempt, end) in [
            (3, TicketEnd::Lost),
            (1, TicketEnd::Placed),
            (2, TicketEnd::Placed),
        ] {
            locked(&journal.tickets).push(record(attempt, end));
        }
        let facts = journal.facts();
        assert_eq!(facts.orders_acknowledged, 2);
        assert_eq!(facts.tickets, 3);
        assert_eq!(facts.tickets_ended(TicketEnd::Placed), 2);
        assert_eq!(facts.tickets_ended(TicketEnd::Lost), 1);
        assert_eq!(facts.tickets_ended(TicketEnd::Rejected), 0);
        assert_eq!(facts.retries, 3);
        assert_eq!(facts.retries_by_reason["connect"], 2);
        let attempts: Vec<u64> = journal.tickets().iter().map(|t| t.attempt).collect();
        assert_eq!(attempts, [1, 2, 3], "tickets.json lists tickets by attempt");
        let json = serde_json::to_value(&facts).unwrap();
        assert_eq!(json["tickets_by_end"]["lost"], 1);
    }

    /// Nodes faked on loopback sockets for the follow-up loop: each answers a request with
    /// `respond(method, path, idempotency key)` and logs `METHOD path key`.
    mod fake {
        use super::super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        pub type Log = Arc<Mutex<Vec<String>>>;
        type Respond = Arc<dyn Fn(&str, &str, &str) -> (u16, String) + Send + Sync>;

        pub async fn node(
            respond: impl Fn(&str, &str, &str) -> (u16, String) + Send + Sync + 'static,
        ) -> (Target, Log) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let target =
                Target::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let log: Log = Arc::default();
            let respond: Respond = Arc::new(respond);
            let served = log.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, respond.clone(), served.clone()));
                }
            });
            (target, log)
        }

        /// A target nobody listens on: connections are refused.
        pub async fn gone() -> Target {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            drop(listener);
            Target::parse(&format!("http://{address}")).unwrap()
        }

        async fn serve(mut stream: TcpStream, respond: Respond, log: Log) {
            let mut buffer = Vec::new();
            loop {
                let head_end = loop {
                    if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        })
                        .map(|(_, v)| v.trim().to_owned())
                        .unwrap_or_default()
                };
                let length: usize = header("content-length").parse().unwrap_or(0);
                while buffer.len() < head_end + length {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                buffer.drain(..head_end + length);
                let mut request_line = head.lines().next().unwrap_or_default().split(' ');
                let (method, path) = (
                    request_line.next().unwrap_or_default(),
                    request_line.next().unwrap_or_default(),
                );
                let key = header("idempotency-key");
                log.lock().unwrap().push(format!("{method} {path} {key}"));
                let (status, body) = respond(method, path, &key);
                let retry_after = if status == 503 {
                    "retry-after: 0\r\n"
                } else {
                    ""
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{retry_after}content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }

    fn follower(targets: Vec<Target>, patience: Duration) -> Arc<Follower> {
        let order_urls = targets
            .iter()
            .map(|t| t.endpoint("/api/v1/orders").unwrap())
            .collect();
        Arc::new(Follower {
            client: api::client(8, Duration::from_secs(5)).unwrap(),
            targets,
            order_urls,
            tokens: vec![api::bearer("buyer").unwrap()],
            bodies: vec![Bytes::from_static(b"{}")],
            key_prefix: "k".into(),
            patience,
            poll_every: Duration::from_millis(10),
            journal: Journal::default(),
        })
    }

    fn waiting() -> TicketView {
        serde_json::from_str(WAITING).unwrap()
    }

    fn ticket_answer(status: &str, order: &str) -> (u16, String) {
        let body = format!(
            r#"{{"ticket":"t1","status":"{status}","position":0,"status_url":"/api/v1/queue/t1","order":{order},"error":null}}"#
        );
        (200, body)
    }

    const NOT_FOUND: &str = r#"{"error":{"code":"not_found","message":"ticket not found"}}"#;

    #[tokio::test]
    async fn a_ticket_no_node_knows_is_lost_and_the_order_is_sent_again_with_its_key() {
        let (a, a_log) = fake::node(|_, _, _| (404, NOT_FOUND.into())).await;
        let (b, b_log) = fake::node(|method, _, _| match method {
            "POST" => (201, r#"{"id":9}"#.into()),
            _ => (404, NOT_FOUND.into()),
        })
        .await;
        let f = follower(vec![a, b], Duration::from_secs(10));
        let settled = f.clone().follow(0, PostRead::Queued(waiting())).await;
        assert_eq!(settled, Settled::Ok);
        let tickets = f.journal.tickets();
        assert_eq!(tickets.len(), 1);
        assert_eq!(tickets[0].end, TicketEnd::Lost);
        assert_eq!(f.journal.orders(), [9]);
        assert_eq!(f.journal.facts().retries_by_reason["ticket_lost"], 1);
        assert_eq!(*a_log.lock().unwrap(), ["GET /api/v1/queue/t1 "]);
        assert_eq!(
            *b_log.lock().unwrap(),
            ["GET /api/v1/queue/t1 ", "POST /api/v1/orders k-0"]
        );
    }

    #[tokio::test]
    async fn a_ticket_is_followed_on_another_node_while_its_own_is_down() {
        let down = fake::gone().await;
        let polls = Arc::new(Mutex::new(0));
        let counted = polls.clone();
        let (b, _) = fake::node(move |_, _, _| {
            let mut n = counted.lock().unwrap();
            *n += 1;
            if *n < 3 {
                ticket_answer("placing", "null")
            } else {
                ticket_answer("placed", r#"{"id":12}"#)
            }
        })
        .await;
        let f = follower(vec![down, b], Duration::from_secs(10));
        assert_eq!(
            f.clone().follow(0, PostRead::Queued(waiting())).await,
            Settled::Ok
        );
        let ticket = &f.journal.tickets()[0];
        assert_eq!((ticket.end, ticket.order_id), (TicketEnd::Placed, Some(12)));
        assert_eq!(
            ticket.polls, 4,
            "one refused connection, then three answers"
        );
        assert_eq!(f.journal.orders(), [12]);
        assert_eq!(f.journal.facts().retries, 0);
    }

    #[tokio::test]
    async fn a_failed_ticket_is_sent_again_and_a_rejected_one_is_final() {
        let (node, log) = fake::node(|method, _, _| match method {
            "POST" => (202, WAITING.into()),
            _ => (200, r#"{"ticket":"t1","status":"rejected","status_url":"/api/v1/queue/t1","order":null,"error":{"code":"out_of_stock","message":"m"}}"#.into()),
        })
        .await;
        let f = follower(vec![node], Duration::from_secs(10));
        let failed: TicketView = serde_json::from_str(
            r#"{"ticket":"t0","status":"failed","status_url":"/api/v1/queue/t0","order":null,"error":{"code":"unavailable","message":"m"}}"#,
        )
        .unwrap();
        let settled = f.clone().follow(3, PostRead::Queued(failed)).await;
        assert_eq!(settled, Settled::Rejected("out_of_stock".into()));
        let ends: Vec<TicketEnd> = f.journal.tickets().iter().map(|t| t.end).collect();
        assert_eq!(ends, [TicketEnd::Failed, TicketEnd::Rejected]);
        assert_eq!(f.journal.facts().retries_by_reason["ticket_failed"], 1);
        assert_eq!(log.lock().unwrap()[0], "POST /api/v1/orders k-3");
    }

    #[tokio::test]
    async fn no_answer_is_retried_on_the_next_node_and_a_replay_is_the_order() {
        let down = fake::gone().await;
        let (b, b_log) = fake::node(|_, _, _| (200, r#"{"id":5}"#.into())).await;
        let f = follower(vec![down, b], Duration::from_secs(10));
        let settled = f
            .clone()
            .follow(2, PostRead::Retry(Retry::no_answer(ErrorKind::Connect)))
            .await;
        assert_eq!(settled, Settled::Ok);
        assert_eq!(*b_log.lock().unwrap(), ["POST /api/v1/orders k-2"]);
        let facts = f.journal.facts();
        assert_eq!(
            (facts.orders_acknowledged, facts.orders_replayed_on_retry),
            (1, 1)
        );
        assert_eq!(facts.retries_by_reason["connect"], 1);
    }

    #[tokio::test]
    async fn an_attempt_that_stays_unavailable_ends_when_its_patience_does() {
        let overloaded = r#"{"error":{"code":"overloaded","message":"m"}}"#;
        let (node, log) = fake::node(move |_, _, _| (503, overloaded.into())).await;
        let f = follower(vec![node], Duration::from_millis(300));
        let first = read_post(&answer(503, overloaded, Some("0")));
        let settled = f.clone().follow(0, first).await;
        assert_eq!(settled, Settled::Rejected("overloaded".into()));
        let sent = log.lock().unwrap().len() as u64;
        assert!(sent >= 2, "retried {sent} times in 300 ms");
        assert_eq!(f.journal.facts().retries, sent);
    }
}
