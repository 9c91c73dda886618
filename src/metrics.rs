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
    pub method: String,
    /// The matched route template (`/api/v1/orders/{id}`), never the raw path, so label
    /// cardinality stays bounded.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration_seconds: HistogramFamily<RouteLabels>,
    pub orders_placed: Counter,
    pub orders_rejected: Family<ReasonLabels, Counter>,
    pub orders_paid: Counter,
    pub orders_cancelled: Family<ReasonLabels, Counter>,
    /// By who confirmed: `buyer`, `admin`, or `auto` (the sweeper, after
    /// `auto_confirm_after_secs`).
    pub orders_confirmed: Family<ReasonLabels, Counter>,
    pub holds_expired: Counter,
    pub payments: Family<ReasonLabels, Counter>,
    pub placement_batch_size: Histogram,
    pub placement_batch_seconds: Histogram,
    pub placement_queue_full: Counter,
    pub waiting_room_entered: Counter,
    /// Failed `SET NX` tries of the lock baseline (`placement_strategy = "lock"`).
    pub lock_retries: Counter,
    pub waiting_room_full: Counter,
    pub waiting_room_depth: Gauge,
    pub sold_out_fast_rejects: Counter,
    pub outbox_dispatched: Counter,
    /// Events written but not yet dispatched on this node.
    pub outbox_lag_events: Gauge,
    pub gate_passes: Counter,
    pub gate_sold_out: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub rate_limited: Family<ReasonLabels, Counter>,
    pub redis_errors: Counter,
    /// 1 while Redis is configured and reachable.
    pub redis_up: Gauge,
    pub waitlist_joins: Counter,
    /// Offers made (an order placed for the first buyer in line).
    pub waitlist_offers: Counter,
    /// Offers whose order was cancelled or expired unpaid.
    pub waitlist_lapses: Counter,
    /// Buyers passed over, by the rejection code of their offer's order.
    pub waitlist_skips: Family<ReasonLabels, Counter>,
    /// User coupons handed out by first-come campaigns.
    pub coupons_issued: Counter,
    /// Coupon claims refused, by reason (`sold_out`, `already_issued`, `not_issuable`,
    /// `unknown_campaign`).
    pub coupons_refused: Family<ReasonLabels, Counter>,
    /// Coupon claims the coupon gate let through to the database.
    pub coupon_gate_passes: Counter,
    /// Coupon claims the coupon gate refused without a database write, by reason.
    pub coupon_gate_refused: Family<ReasonLabels, Counter>,
    /// Points given by confirmed purchases (`crate::points`).
    pub points_earned: Counter,
    /// Points given by admins' grants and positive adjustments.
    pub points_granted: Counter,
    /// Points taken by admins' negative adjustments.
    pub points_deducted: Counter,
    pub points_expired: Counter,
    /// Points held, released, spent and refunded by orders (`Metrics::order_points`).
    pub points_held: Counter,
    pub points_released: Counter,
    pub points_spent: Counter,
    pub points_refunded: Counter,
    /// Expiry runs this node made while holding the lease.
    pub points_expiry_runs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_request_duration_seconds: Family::new_with_constructor(latency_histogram),
            orders_placed: Counter::default(),
            orders_rejected: Family::default(),
            orders_paid: Counter::default(),
            orders_cancelled: Family::default(),
            orders_confirmed: Family::default(),
            holds_expired: Counter::default(),
            payments: Family::default(),
            placement_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            placement_batch_seconds: latency_histogram(),
            placement_queue_full: Counter::default(),
            waiting_room_entered: Counter::default(),
            lock_retries: Counter::default(),
            waiting_room_full: Counter::default(),
            waiting_room_depth: Gauge::default(),
            sold_out_fast_rejects: Counter::default(),
            outbox_dispatched: Counter::default(),
            outbox_lag_events: Gauge::default(),
            gate_passes: Counter::default(),
            gate_sold_out: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            rate_limited: Family::default(),
            redis_errors: Counter::default(),
            redis_up: Gauge::default(),
            waitlist_joins: Counter::default(),
            waitlist_offers: Counter::default(),
            waitlist_lapses: Counter::default(),
            waitlist_skips: Family::default(),
            coupons_issued: Counter::default(),
            coupons_refused: Family::default(),
            coupon_gate_passes: Counter::default(),
            coupon_gate_refused: Family::default(),
            points_earned: Counter::default(),
            points_granted: Counter::default(),
            points_deducted: Counter::default(),
            points_expired: Counter::default(),
            points_held: Counter::default(),
            points_released: Counter::default(),
            points_spent: Counter::default(),
            points_refunded: Counter::default(),
            points_expiry_runs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            m.http_request_duration_seconds.clone(),
        );
        registry.register(
            "orders_placed",
            "Orders placed (stock held)",
            m.orders_placed.clone(),
        );
        registry.register(
            "orders_rejected",
            "Order placements refused, by reason",
            m.orders_rejected.clone(),
        );
        registry.register(
            "orders_paid",
            "Orders paid (holds committed)",
            m.orders_paid.clone(),
        );
        registry.register(
            "orders_cancelled",
            "Orders cancelled or refunded, by reason",
            m.orders_cancelled.clone(),
        );
        registry.register(
            "orders_confirmed",
            "Purchases confirmed (paid → confirmed), by buyer, admin or auto",
            m.orders_confirmed.clone(),
        );
        registry.register(
            "holds_expired",
            "Orders whose payment deadline passed and whose holds were released",
            m.holds_expired.clone(),
        );
        registry.register(
            "payments",
            "Payment attempts by outcome",
            m.payments.clone(),
        );
        registry.register(
            "placement_batch_size",
            "Orders per placement transaction",
            m.placement_batch_size.clone(),
        );
        registry.register(
            "placement_batch_seconds",
            "Duration of one placement transaction",
            m.placement_batch_seconds.clone(),
        );
        registry.register(
            "placement_queue_full",
            "Orders refused because the writers and the waiting room were full",
            m.placement_queue_full.clone(),
        );
        registry.register(
            "lock_retries",
            "Tries of the lock baseline that found a product's lock taken",
            m.lock_retries.clone(),
        );
        registry.register(
            "waiting_room_entered",
            "Order attempts that waited in the waiting room",
            m.waiting_room_entered.clone(),
        );
        registry.register(
            "waiting_room_full",
            "Order attempts refused because the waiting room was full",
            m.waiting_room_full.clone(),
        );
        registry.register(
            "waiting_room_depth",
            "Order attempts waiting in the waiting room now",
            m.waiting_room_depth.clone(),
        );
        registry.register(
            "sold_out_fast_rejects",
            "Orders refused from the in-memory sold-out gate without a database write",
            m.sold_out_fast_rejects.clone(),
        );
        registry.register(
            "outbox_dispatched",
            "Outbox events dispatched on this node",
            m.outbox_dispatched.clone(),
        );
        registry.register(
            "outbox_lag_events",
            "Outbox events not yet dispatched on this node",
            m.outbox_lag_events.clone(),
        );
        register_shared(&mut registry, &m);
        register_waitlist(&mut registry, &m);
        register_coupons(&mut registry, &m);
        register_points(&mut registry, &m);
        Metrics { registry, ..m }
    }
}

/// The metrics of what nodes share (`crate::cluster`).
fn register_shared(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "gate_passes",
        "Order attempts the availability gate let through to the database",
        m.gate_passes.clone(),
    );
    registry.register(
        "gate_sold_out",
        "Order attempts the availability gate refused as sold out without a database write",
        m.gate_sold_out.clone(),
    );
    registry.register(
        "cache_hits",
        "Product listing reads answered from the cache",
        m.cache_hits.clone(),
    );
    registry.register(
        "cache_misses",
        "Product listing reads that went to the database",
        m.cache_misses.clone(),
    );
    registry.register(
        "rate_limited",
        "Requests refused with 429, by limit (user or ip)",
        m.rate_limited.clone(),
    );
    registry.register(
        "redis_errors",
        "Redis calls that failed or timed out (each fell back to the in-process path)",
        m.redis_errors.clone(),
    );
    registry.register(
        "redis_up",
        "1 while Redis is configured and reachable, else 0",
        m.redis_up.clone(),
    );
}

/// The metrics of the waitlist (`crate::waitlist`).
fn register_waitlist(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "waitlist_joins",
        "Buyers who joined a product's waitlist",
        m.waitlist_joins.clone(),
    );
    registry.register(
        "waitlist_offers",
        "Waitlist offers made: orders placed for the first buyer in line",
        m.waitlist_offers.clone(),
    );
    registry.register(
        "waitlist_lapses",
        "Waitlist offers whose order was cancelled or expired unpaid",
        m.waitlist_lapses.clone(),
    );
    registry.register(
        "waitlist_skips",
        "Waiting buyers passed over, by the rejection of their offer's order",
        m.waitlist_skips.clone(),
    );
}

/// The metrics of coupon campaigns (`crate::coupons`, `cluster::coupon_gate`).
fn register_coupons(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "coupons_issued",
        "User coupons issued by first-come campaigns",
        m.coupons_issued.clone(),
    );
    registry.register(
        "coupons_refused",
        "Coupon claims refused, by reason",
        m.coupons_refused.clone(),
    );
    registry.register(
        "coupon_gate_passes",
        "Coupon claims the coupon gate let through to the database",
        m.coupon_gate_passes.clone(),
    );
    registry.register(
        "coupon_gate_refused",
        "Coupon claims the coupon gate refused without a database write, by reason",
        m.coupon_gate_refused.clone(),
    );
}

/// The metrics of loyalty points (`crate::points`), each counting points, not operations.
fn register_points(registry: &mut Registry, m: &Metrics) {
    let counters = [
        (
            "points_earned",
            "Points earned by confirmed purchases",
            &m.points_earned,
        ),
        (
            "points_granted",
            "Points granted or added by admins",
            &m.points_granted,
        ),
        (
            "points_deducted",
            "Points taken by admins' negative adjustments",
            &m.points_deducted,
        ),
        (
            "points_expired",
            "Points expired by the expiry job",
            &m.points_expired,
        ),
        ("points_held", "Points held for orders", &m.points_held),
        (
            "points_released",
            "Held points given back (order cancelled or expired)",
            &m.points_released,
        ),
        (
            "points_spent",
            "Held points spent (order paid)",
            &m.points_spent,
        ),
        (
            "points_refunded",
            "Spent points given back (order refunded)",
            &m.points_refunded,
        ),
        (
            "points_expiry_runs",
            "Points expiry runs made by this node as lease holder",
            &m.points_expiry_runs,
        ),
    ];
    for (name, help, counter) in counters {
        registry.register(name, help, counter.clone());
    }
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
