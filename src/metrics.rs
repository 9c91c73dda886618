//! Every metric Stampede exports, declared in one place (STYLE §10). Counters get the
//! `_total` suffix from the encoder: `orders_placed` is exported as `orders_placed_total`.

use crate::domain::OrderStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// One of [`HTTP_METHODS`] or `OTHER` ([`method_label`]): a client may send any token
    /// as a method, and each would be a new series.
    pub method: &'static str,
    /// The matched route template (`/api/v1/orders/{id}`), never the raw path, so label
    /// cardinality stays bounded.
    pub route: String,
    pub status: u16,
}

/// The methods that get a label of their own.
pub const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `method` label of a request: its method when standard, else `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    HTTP_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`HttpLabels`]: `POST /api/v1/orders` (placing) apart from `GET` (listing).
    pub method: &'static str,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Where a waiting-room ticket's answer came from: `known` (what the node knew of it) or
/// `store` (read).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// A product in play (on sale, or its stock moved recently): the series of a product that
/// leaves play are removed, so the stock gauges stay bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProductLabels {
    pub product_id: i64,
}

/// A job's run: `outcome` is `ok` or `failed`. `job_name`, not `job`: Prometheus gives
/// every scraped series a `job` label of its own (the scrape job).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobRunLabels {
    pub job_name: String,
    pub outcome: &'static str,
}

/// `database`, `redis` or `broker`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

/// A seller's step on a partner order: `prepare`, `ship` or `deliver`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

/// A consumer worker's handler (`points-earn`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub handler: String,
}

/// One partition a consumer group reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// How a payment gateway call ended: `ok`, `failure`, `rejected`, `timeout` or
/// `short_circuited` (`payment::breaker::CallOutcome::as_str`). A `&'static str`, so only
/// names written in the code can become label values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// A sweeper transition of a due order: `expire` or `confirm`. A `&'static str`, so only
/// names written in the code can become label values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub transition: &'static str,
}

/// Which abuse limit refused a request: `login_account`, `login_ip`, `signup_ip`,
/// `password_hash_busy`, `streams_per_user`. A `&'static str`, like [`OutcomeLabels`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AbuseLabels {
    pub reason: &'static str,
}

/// Fine enough to read a p99 against the one-second goal (issue 9).
const RELAY_LAG_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0,
    30.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Declares every metric once: its field, how it is built, and its name and help text in
/// the registry (the name is the field's).
macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $init:expr, $help:literal;)*) => {
        pub struct Metrics {
            registry: Registry,
            $($(#[doc = $doc])* pub $name: $ty,)*
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::default();
                $(
                    let $name: $ty = $init;
                    registry.register(stringify!($name), $help, $name.clone());
                )*
                Metrics { registry, $($name,)* }
            }
        }
    };
}

metrics! {
    http_requests: Family<HttpLabels, Counter> = Family::default(),
        "HTTP requests by method, route and status";
    http_request_duration_seconds: HistogramFamily<RouteLabels> =
        Family::new_with_constructor(latency_histogram),
        "HTTP request latency by route";
    /// The top of the order funnel: attempted → placed → paid → confirmed.
    orders_attempted: Counter = Counter::default(),
        "Order attempts that reached placement (valid requests; refused or placed)";
    orders_placed: Counter = Counter::default(),
        "Orders placed (stock held)";
    orders_rejected: Family<ReasonLabels, Counter> = Family::default(),
        "Order placements refused, by reason";
    orders_paid: Counter = Counter::default(),
        "Orders paid (holds committed)";
    orders_cancelled: Family<ReasonLabels, Counter> = Family::default(),
        "Orders cancelled or refunded, by reason";
    /// By who confirmed: `buyer`, `admin`, or `auto` (the sweeper,
    /// `auto_confirm_after_secs` after the last delivery).
    orders_confirmed: Family<ReasonLabels, Counter> = Family::default(),
        "Purchases confirmed (paid → confirmed), by buyer, admin or auto";
    /// By step: `prepare`, `ship`, `deliver`, and `cancel`, `return` (`app::fulfilment`).
    partner_orders_advanced: Family<StepLabels, Counter> = Family::default(),
        "Partner orders moved a step by their sellers (paid → preparing → shipped → delivered; cancel, return)";
    holds_expired: Counter = Counter::default(),
        "Orders whose payment deadline passed and whose holds were released";
    /// Once per pass and order; the pass goes on with the other due orders
    /// (`app::orders::Orders::sweep_each`).
    sweeper_failures: Family<TransitionLabels, Counter> = Family::default(),
        "Due orders whose sweeper transition failed, by transition (expire, confirm)";
    payments: Family<ReasonLabels, Counter> = Family::default(),
        "Payment attempts by outcome";
    /// Calls to the payment gateway through its circuit breaker, by outcome: `ok`,
    /// `failure` (counted by the breaker), `rejected` (the gateway answered and refused),
    /// `timeout`, `short_circuited` (refused by the open breaker without a call).
    payment_gateway_calls: Family<OutcomeLabels, Counter> = Family::default(),
        "Payment gateway calls by outcome (ok, failure, rejected, timeout, short_circuited)";
    /// Every call made (not the short-circuited ones), up to the call timeout.
    payment_gateway_latency_seconds: Histogram = latency_histogram(),
        "Latency of payment gateway calls made through the circuit breaker";
    payment_gateway_breaker_state: Gauge = Gauge::default(),
        "Payment gateway circuit breaker: 0 closed, 1 half-open, 2 open";
    placement_batch_size: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        "Orders per placement transaction";
    placement_batch_seconds: Histogram = latency_histogram(),
        "Duration of one placement transaction";
    placement_queue_full: Counter = Counter::default(),
        "Orders refused because the writers and the waiting room were full";
    waiting_room_entered: Counter = Counter::default(),
        "Order attempts that waited in the waiting room";
    /// Failed `SET NX` tries of the lock baseline (`placement_strategy = "lock"`).
    lock_retries: Counter = Counter::default(),
        "Tries of the lock baseline that found a product's lock taken";
    /// On the node holding the room's lease; a ticket admitted again (a takeover, a failed
    /// placement) counts again.
    waiting_room_admitted: Counter = Counter::default(),
        "Waiting-room tickets admitted to a placement writer";
    waiting_room_full: Counter = Counter::default(),
        "Order attempts refused because the waiting room was full";
    waiting_room_depth: Gauge = Gauge::default(),
        "Order attempts waiting in the waiting room now";
    /// `known`: answered from what the node knew (a finished ticket, or one behind the line
    /// as last read); `store`: read from the database.
    waiting_room_ticket_reads: Family<SourceLabels, Counter> = Family::default(),
        "Waiting-room ticket lookups, by where the answer came from (known, store)";
    sold_out_fast_rejects: Counter = Counter::default(),
        "Orders refused from the in-memory sold-out gate without a database write";
    outbox_dispatched: Counter = Counter::default(),
        "Outbox events dispatched on this node";
    /// Events written but not yet dispatched on this node.
    outbox_lag_events: Gauge = Gauge::default(),
        "Outbox events not yet dispatched on this node";
    relay_active: Gauge = Gauge::default(),
        "1 while this node holds the Kafka relay's lease";
    relay_published: Counter = Counter::default(),
        "Outbox events the broker acknowledged from this node's relay";
    relay_lag_events: Gauge = Gauge::default(),
        "Outbox events after the relay's recorded position (0 when caught up; on the holder)";
    /// From an event's commit to the broker's acknowledgement of it.
    relay_lag_seconds: Histogram = Histogram::new(RELAY_LAG_BUCKETS.iter().copied()),
        "Seconds from an outbox event's commit to the broker's acknowledgement";
    relay_failures: Counter = Counter::default(),
        "Relay rounds that ended in an error (broker or database); the relay backs off";
    consumer_processed: Family<HandlerLabels, Counter> = Family::default(),
        "Messages a consumer handler processed (or found processed before)";
    consumer_failed: Family<HandlerLabels, Counter> = Family::default(),
        "Failed attempts of a consumer handler (each retry counts)";
    consumer_dead_lettered: Family<HandlerLabels, Counter> = Family::default(),
        "Messages a consumer handler gave up on and kept as dead letters";
    consumer_lag: Family<PartitionLabels, Gauge> = Family::default(),
        "Messages behind the partition's end, per consumer group, as the client last saw";
    gate_passes: Counter = Counter::default(),
        "Order attempts the availability gate let through to the database";
    gate_sold_out: Counter = Counter::default(),
        "Order attempts the availability gate refused as sold out without a database write";
    cache_hits: Counter = Counter::default(),
        "Product listing reads answered from the cache";
    cache_misses: Counter = Counter::default(),
        "Product listing reads that went to the database";
    rate_limited: Family<ReasonLabels, Counter> = Family::default(),
        "Requests refused with 429, by limit (user or ip)";
    /// Requests refused by an abuse limit (failed logins, sign-ups, password checks in
    /// progress, live streams), by limit ([`AbuseLabels`]).
    abuse_refused: Family<AbuseLabels, Counter> = Family::default(),
        "Requests refused by an abuse limit (failed logins, sign-ups, password hashes, live streams), by limit";
    live_streams: Gauge = Gauge::default(),
        "Live streams (Server-Sent Events) open on this node";
    redis_errors: Counter = Counter::default(),
        "Redis calls that failed or timed out (each fell back to the in-process path)";
    /// 1 while Redis is configured and reachable.
    redis_up: Gauge = Gauge::default(),
        "1 while Redis is configured and reachable, else 0";
    waitlist_joins: Counter = Counter::default(),
        "Buyers who joined a product's waitlist";
    /// Offers made (an order placed for the first buyer in line).
    waitlist_offers: Counter = Counter::default(),
        "Waitlist offers made: orders placed for the first buyer in line";
    /// Offers whose order was cancelled or expired unpaid.
    waitlist_lapses: Counter = Counter::default(),
        "Waitlist offers whose order was cancelled or expired unpaid";
    /// Buyers passed over, by the rejection code of their offer's order.
    waitlist_skips: Family<ReasonLabels, Counter> = Family::default(),
        "Waiting buyers passed over, by the rejection of their offer's order";
    /// User coupons handed out by first-come campaigns.
    coupon_claim_batch_size: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        "Coupon claims per claim transaction (group commit)";
    coupons_issued: Counter = Counter::default(),
        "User coupons issued by first-come campaigns";
    /// Coupon claims refused, by reason (`sold_out`, `already_issued`, `not_issuable`,
    /// `unknown_campaign`).
    coupons_refused: Family<ReasonLabels, Counter> = Family::default(),
        "Coupon claims refused, by reason";
    /// Coupon claims the coupon gate let through to the database.
    coupon_gate_passes: Counter = Counter::default(),
        "Coupon claims the coupon gate let through to the database";
    /// Coupon claims the coupon gate refused without a database write, by reason.
    coupon_gate_refused: Family<ReasonLabels, Counter> = Family::default(),
        "Coupon claims the coupon gate refused without a database write, by reason";
    /// Points given by confirmed purchases (`app::points`).
    points_earned: Counter = Counter::default(),
        "Points earned by confirmed purchases";
    /// Points given by admins' grants and positive adjustments.
    points_granted: Counter = Counter::default(),
        "Points granted or added by admins";
    /// Points taken by admins' negative adjustments.
    points_deducted: Counter = Counter::default(),
        "Points taken by admins' negative adjustments";
    points_expired: Counter = Counter::default(),
        "Points expired by the expiry job";
    /// Points held, released, spent and refunded by orders (`Metrics::order_points`).
    points_held: Counter = Counter::default(),
        "Points held for orders";
    points_released: Counter = Counter::default(),
        "Held points given back (order cancelled or expired)";
    points_spent: Counter = Counter::default(),
        "Held points spent (order paid)";
    points_refunded: Counter = Counter::default(),
        "Spent points given back (order refunded)";
    /// Expiry runs this node made while holding the lease.
    points_expiry_runs: Counter = Counter::default(),
        "Points expiry runs made by this node as lease holder";
    /// Dead letters processed after all (`app::dead_letters`): by an operator's replay or
    /// by the dead-letter job's retry. Distinct from the consumers' own `consumer_*`.
    dead_letters_replayed: Counter = Counter::default(),
        "Dead letters replayed successfully, by an operator or the retry job";
    /// Operators' replays that failed (refused or the handler failed again).
    dead_letters_replay_failed: Counter = Counter::default(),
        "Operators' replays of dead letters that failed; the letters stay open";
    /// Automatic retries by the dead-letter job that failed; each counts one retry of
    /// `dlq_retry_max`.
    dead_letters_retry_failed: Counter = Counter::default(),
        "Automatic retries of dead letters that failed again";
    dead_letters_discarded: Counter = Counter::default(),
        "Dead letters discarded by operators";
    /// Counted by the dead-letter job at each run, on the node holding its lease; a node
    /// that lost the lease keeps its last count, so read it with `max`.
    dead_letters_open: Gauge = Gauge::default(),
        "Open dead letters, as the dead-letter job last counted them";
    /// Products in play only (`app::operations`): on sale, or whose stock moved recently.
    stock_on_hand: Family<ProductLabels, Gauge> = Family::default(),
        "Units on hand of a product in play";
    stock_held: Family<ProductLabels, Gauge> = Family::default(),
        "Units held by open orders of a product in play";
    stock_available: Family<ProductLabels, Gauge> = Family::default(),
        "Units available (on hand - held) of a product in play";
    stock_sold: Family<ProductLabels, Gauge> = Family::default(),
        "Units taken by orders (held or sold, not released or returned) of a product in play";
    /// Every run of every scheduled job on this node (lease-held jobs only where they ran).
    job_runs: Family<JobRunLabels, Counter> = Family::default(),
        "Scheduled job runs by job_name and outcome (ok, failed)";
    /// 1 up, 0 down, as this node last saw it; absent when not configured.
    dependency_up: Family<DependencyLabels, Gauge> = Family::default(),
        "Whether a dependency answers this node: database, redis, broker (1 up, 0 down)";
    nodes_alive: Gauge = Gauge::default(),
        "Nodes whose heartbeat is recent, as this node last read them";
    /// Set by the verify job at each run on the node holding its lease (read it with
    /// `max`): 0 when every ledger balances.
    ledger_drift: Gauge = Gauge::default(),
        "Differences the last scheduled verify found between ledgers and balances";
    verify_runs: Counter = Counter::default(),
        "Scheduled verify runs made by this node as lease holder";
}

impl Metrics {
    /// Counts the points of an order that has just entered its status: held when placed,
    /// spent when paid, released when cancelled or expired, refunded when refunded.
    pub fn order_points(&self, status: OrderStatus, points_used: i64) {
        let counter = match status {
            OrderStatus::PendingPayment => &self.points_held,
            OrderStatus::Paid => &self.points_spent,
            OrderStatus::Cancelled => &self.points_released,
            OrderStatus::Refunded => &self.points_refunded,
            OrderStatus::Confirmed => return,
        };
        counter.inc_by(u64::try_from(points_used).unwrap_or(0));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reject(&self, reason: &str) {
        self.orders_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
