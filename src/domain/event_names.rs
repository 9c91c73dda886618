//! The names of aggregates and events written to the outbox: the stable vocabulary of the
//! event stream (DESIGN §4). A leaf module: it imports nothing, so any module can name an
//! event. The payloads are built in `domain::events`.

pub const ORDER: &str = "order";
pub const PRODUCT: &str = "product";
pub const SESSION: &str = "session";
pub const USER: &str = "user";
pub const PARTNER: &str = "partner";
/// Aggregate id: the waitlist entry.
pub const WAITLIST: &str = "waitlist";
/// Aggregate id: the coupon campaign (so one campaign's events stay in order).
pub const COUPON: &str = "coupon";
/// Aggregate id: the partner order (one seller's part of an order).
pub const PARTNER_ORDER: &str = "partner_order";
/// Aggregate id: the settlement statement (one partner's business day).
pub const SETTLEMENT: &str = "settlement";

pub const ORDER_PLACED: &str = "order.placed";
pub const ORDER_PAID: &str = "order.paid";
pub const ORDER_CONFIRMED: &str = "order.confirmed";
pub const ORDER_CANCELLED: &str = "order.cancelled";
pub const ORDER_EXPIRED: &str = "order.expired";
pub const ORDER_REFUNDED: &str = "order.refunded";
pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const STOCK_CHANGED: &str = "stock.changed";
pub const SESSION_REVOKED: &str = "session.revoked";
pub const SESSION_STARTED: &str = "session.started";
pub const SESSION_ROTATED: &str = "session.rotated";
pub const USER_CREATED: &str = "user.created";
pub const PARTNER_CREATED: &str = "partner.created";
/// A seller's steps after payment (`domain::fulfilment`): `paid → preparing → shipped →
/// delivered`.
pub const PARTNER_ORDER_PREPARING: &str = "partner_order.preparing";
pub const PARTNER_ORDER_SHIPPED: &str = "partner_order.shipped";
pub const PARTNER_ORDER_DELIVERED: &str = "partner_order.delivered";
/// A seller (or admin) cancelled one part before it shipped; the rest of the order goes on.
pub const PARTNER_ORDER_CANCELLED: &str = "partner_order.cancelled";
/// A seller (or admin) took back one part after the purchase was confirmed
/// (`confirmed → refunded`); the order stays confirmed.
pub const PARTNER_ORDER_RETURNED: &str = "partner_order.returned";
pub const PAYMENT_FAILED: &str = "payment.failed";
/// The gateway did not give an order's money back; the refund retrier tries again.
pub const PAYMENT_REFUND_FAILED: &str = "payment.refund_failed";
/// A refund that had failed went through on a retry.
pub const PAYMENT_REFUNDED: &str = "payment.refunded";
pub const WAITLIST_JOINED: &str = "waitlist.joined";
pub const WAITLIST_LEFT: &str = "waitlist.left";
pub const WAITLIST_OFFERED: &str = "waitlist.offered";
pub const WAITLIST_LAPSED: &str = "waitlist.lapsed";
pub const WAITLIST_SKIPPED: &str = "waitlist.skipped";
pub const WAITLIST_FULFILLED: &str = "waitlist.fulfilled";
pub const COUPON_CAMPAIGN_CREATED: &str = "coupon.campaign_created";
pub const COUPON_ISSUED: &str = "coupon.issued";
/// A user coupon taken by an order (`issued → held`).
pub const COUPON_HELD: &str = "coupon.held";
/// The order holding the coupon was paid (`held → used`).
pub const COUPON_USED: &str = "coupon.used";
/// The order was cancelled, expired or refunded: the coupon is the buyer's again.
pub const COUPON_RETURNED: &str = "coupon.returned";
/// Aggregate id: the buyer whose points changed.
pub const POINTS: &str = "points";
pub const POINTS_EARNED: &str = "points.earned";
pub const POINTS_GRANTED: &str = "points.granted";
pub const POINTS_ADJUSTED: &str = "points.adjusted";
pub const POINTS_EXPIRED: &str = "points.expired";
pub const POINTS_HELD: &str = "points.held";
pub const POINTS_RELEASED: &str = "points.released";
pub const POINTS_SPENT: &str = "points.spent";
pub const POINTS_REFUNDED: &str = "points.refunded";
/// A partner's statement for a business day was made (`domain::settlement`).
pub const SETTLEMENT_CREATED: &str = "settlement.created";

/// Every aggregate type: each has its topic on Kafka, created at start.
pub const AGGREGATES: &[&str] = &[
    ORDER,
    PRODUCT,
    SESSION,
    USER,
    PARTNER,
    WAITLIST,
    COUPON,
    POINTS,
    PARTNER_ORDER,
    SETTLEMENT,
];
