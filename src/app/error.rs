//! What a use case can refuse, or fail with. Each variant is one reason a caller can act
//! on; the HTTP layer maps them to stable error codes in one `match` (`http::error`), and
//! the command line prints them. A leaf of `app`: the use cases import it, it imports none.

use crate::domain::allocation::Rejection;
use crate::domain::{Actor, DomainError, Role};
use crate::payment::breaker::BreakerError;
use crate::payment::GatewayError;
use crate::store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    /// Input that breaks a rule of the domain (a quantity out of range, an empty name…).
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// The message says what: "order not found", "not waiting for this product".
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this to this resource.
    #[error("not allowed for this account")]
    Forbidden,
    #[error("wrong email or password")]
    InvalidCredentials,
    /// Too many failed logins for the account or from the address, or too many sign-ups
    /// from the address: nothing was checked; try again after `retry_after`.
    #[error("too many attempts; try again later")]
    TooManyAttempts { retry_after: std::time::Duration },
    /// Every password check this node may run at once is running (`auth::HashLimiter`).
    #[error("too many sign-ins in progress; retry shortly")]
    PasswordChecksBusy,
    /// A refresh token that is unknown, expired, rotated away or revoked.
    #[error("invalid, expired or revoked refresh token")]
    InvalidRefreshToken,
    /// Placement refused the order (out of stock, purchase limit, coupon, points…).
    #[error("order refused: {0:?}")]
    Rejected(Rejection),
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error("order is not awaiting payment")]
    OrderNotPayable,
    #[error("order can no longer be cancelled")]
    OrderNotCancellable,
    /// The buyer asked to cancel a paid order of which a part has already shipped.
    #[error("a part of the order has shipped: it can no longer be cancelled")]
    OrderAlreadyShipped,
    #[error("only a paid order can be confirmed")]
    OrderNotConfirmable,
    /// A paid order with a partner order neither delivered nor cancelled yet.
    #[error("the purchase can be confirmed once every partner order is delivered")]
    OrderNotDelivered,
    /// A partner order asked to take a step its status does not allow (the message says
    /// which status and step).
    #[error("{0}")]
    InvalidTransition(String),
    #[error("amount does not match the order's payable amount")]
    PaymentAmountMismatch,
    #[error("the payment was declined")]
    PaymentDeclined,
    /// A webhook whose signature is missing, stale or wrong: nothing in it is believed.
    #[error("missing, stale or invalid webhook signature")]
    InvalidSignature,
    /// The gateway knows the payment but has not captured it (waiting for the buyer, a
    /// virtual account not yet paid, cancelled…).
    #[error("the payment is not completed at the gateway")]
    PaymentNotCompleted,
    /// The gateway does not know the payment id (or it belongs to another store).
    #[error("the payment gateway does not know this payment")]
    PaymentNotFound,
    /// The payment id is bound to another order: one payment pays one order.
    #[error("this payment id belongs to another order")]
    PaymentKeyReused,
    #[error(transparent)]
    /// The gateway refused a request of ours (a 4xx): not the buyer's doing, and not
    /// worth retrying as is. A failing gateway is `PaymentGatewayUnavailable`.
    Gateway(GatewayError),
    /// The payment gateway's circuit breaker is open, or a call to the gateway timed out:
    /// the buyer may pay again after `retry_after_secs`, within the order's deadline.
    #[error("the payment gateway is unavailable; retry in {retry_after_secs} s")]
    PaymentGatewayUnavailable { retry_after_secs: u64 },
    /// A stock correction would take `on_hand` below the units held for open orders.
    #[error("on_hand cannot fall below the units held for open orders")]
    InsufficientStock,
    #[error("already on the waitlist of this product")]
    AlreadyWaitlisted,
    #[error("coupons of this campaign cannot be claimed now")]
    CouponNotIssuable,
    #[error("all coupons of this campaign have been issued")]
    CouponSoldOut,
    #[error("you already hold a coupon of this campaign")]
    CouponAlreadyIssued,
    /// An admin's points operation reused its Idempotency-Key with another body.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("the buyer's points not held for open orders are fewer than that")]
    InsufficientPoints,
    /// A dead letter that was already replayed or discarded: only an open one moves.
    #[error("the dead letter is not open (already replayed or discarded)")]
    DeadLetterNotOpen,
    /// A dead letter names a handler this node does not run (the message says which).
    #[error("{0}")]
    UnknownHandler(String),
    /// A dead letter's message is not an event this system wrote, so no replay can
    /// process it (the message says why); discard it.
    #[error("{0}")]
    InvalidMessage(String),
    /// The handler failed again on a replayed dead letter; the message is the handler's
    /// error, shortened. The letter stays open.
    #[error("{0}")]
    ReplayFailed(String),
    /// A business day asked to be settled before it ended in the settlement time zone
    /// (the message says which).
    #[error("{0}")]
    BusinessDayNotOver(String),
    /// A batch of which some items break a rule: nothing of it was done. Each item error
    /// says which item (its index in the request) and why.
    #[error("{} of the items are invalid; nothing was created", .0.len())]
    InvalidItems(Vec<ItemError>),
    /// A batch with more items than one request may carry (`max`); nothing was done.
    #[error("at most {max} items per request, got {given}")]
    BatchTooLarge { max: usize, given: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that cannot fail in normal operation did (a worker task died, a hash
    /// could not be computed); logged, and answered as an internal error.
    #[error("{0}")]
    Internal(String),
}

/// Why the item at `index` of a batch was refused.
#[derive(Debug)]
pub struct ItemError {
    pub index: usize,
    pub error: DomainError,
}

/// Refuses a caller whose role is not one of `roles`: the first check of every use case
/// that is not open to everyone.
pub fn require(actor: &Actor, roles: &[Role]) -> AppResult<()> {
    if roles.contains(&actor.role) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

impl AppError {
    /// `"{what} not found"`.
    pub fn not_found(what: &str) -> AppError {
        AppError::NotFound(format!("{what} not found"))
    }
}

/// A gateway that failed (timeout, 5xx, network) or that the breaker does not ask while it
/// keeps failing is `PaymentGatewayUnavailable`: the buyer may retry (after the breaker's
/// wait, or a second); a request the gateway refused stays `Gateway`.
impl From<GatewayError> for AppError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unavailable(_) => AppError::PaymentGatewayUnavailable {
                retry_after_secs: 1,
            },
            GatewayError::Busy { retry_after } => AppError::PaymentGatewayUnavailable {
                retry_after_secs: whole_secs_rounded_up(retry_after),
            },
            GatewayError::Rejected(_) => AppError::Gateway(e),
        }
    }
}

/// A refused or timed-out gateway call is `PaymentGatewayUnavailable` (the wait rounded up
/// to whole seconds, at least one); the call's own error converts as it would without the
/// breaker.
impl<E: Into<AppError>> From<BreakerError<E>> for AppError {
    fn from(e: BreakerError<E>) -> Self {
        match e {
            BreakerError::Open { retry_after } => AppError::PaymentGatewayUnavailable {
                retry_after_secs: whole_secs_rounded_up(retry_after),
            },
            BreakerError::Timeout => AppError::PaymentGatewayUnavailable {
                retry_after_secs: 1,
            },
            BreakerError::Inner(e) => e.into(),
        }
    }
}

/// A client that waits this long has waited at least `wait`.
fn whole_secs_rounded_up(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Why an order could not even be handed to placement.
#[derive(Debug, Error)]
pub enum PlaceError {
    /// The writers and the waiting room are full: come back later (HTTP 503 + Retry-After).
    #[error("placement queue and waiting room full")]
    Overloaded,
    /// This node is stopping: try another (HTTP 503 + Retry-After).
    #[error("this node is shutting down")]
    ShuttingDown,
    /// The lock baseline waited too long for a product's lock.
    #[error("timed out waiting for a product lock")]
    LockTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<crate::auth::HashBusy> for AppError {
    fn from(_: crate::auth::HashBusy) -> Self {
        AppError::PasswordChecksBusy
    }
}
