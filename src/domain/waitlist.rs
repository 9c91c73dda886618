//! The waitlist of a sold-out product (issue 3, item 5): buyers queue for units that come
//! back; the first in line is offered them as an ordinary held order with its own payment
//! deadline, and an offer that lapses passes to the next. The rules here are pure; the
//! worker that makes offers lives in `app::waitlist::offers`.

use super::error::DomainError;
use super::event_names as events;
use super::order::OrderStatus;
use super::values::Quantity;
use serde::{Deserialize, Serialize};

/// Units one buyer may wait for when the product has no purchase limit.
pub const MAX_WAITLIST_QUANTITY: i64 = 100;

/// Where a waitlist entry is:
/// `waiting → offered → fulfilled | lapsed`, `waiting → left`, `waiting → skipped`.
/// Only `waiting` and `offered` entries are active: a buyer has at most one active entry
/// per product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistStatus {
    /// In line.
    Waiting,
    /// Holds an offer: a `pending_payment` order with its own deadline.
    Offered,
    /// The offer's order was cancelled or expired unpaid; the units went to the next in line.
    Lapsed,
    /// Passed over: the offer's order was refused for a reason of this buyer's own (e.g. the
    /// purchase limit), so the units went to the next in line.
    Skipped,
    /// The buyer left the line.
    Left,
    /// The offer's order was paid.
    Fulfilled,
}

impl WaitlistStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitlistStatus::Waiting => "waiting",
            WaitlistStatus::Offered => "offered",
            WaitlistStatus::Lapsed => "lapsed",
            WaitlistStatus::Skipped => "skipped",
            WaitlistStatus::Left => "left",
            WaitlistStatus::Fulfilled => "fulfilled",
        }
    }

    pub fn parse(raw: &str) -> Option<WaitlistStatus> {
        match raw {
            "waiting" => Some(WaitlistStatus::Waiting),
            "offered" => Some(WaitlistStatus::Offered),
            "lapsed" => Some(WaitlistStatus::Lapsed),
            "skipped" => Some(WaitlistStatus::Skipped),
            "left" => Some(WaitlistStatus::Left),
            "fulfilled" => Some(WaitlistStatus::Fulfilled),
            _ => None,
        }
    }

    /// The event that announces an entry entering this status.
    pub fn event_type(self) -> &'static str {
        match self {
            WaitlistStatus::Waiting => events::WAITLIST_JOINED,
            WaitlistStatus::Offered => events::WAITLIST_OFFERED,
            WaitlistStatus::Lapsed => events::WAITLIST_LAPSED,
            WaitlistStatus::Skipped => events::WAITLIST_SKIPPED,
            WaitlistStatus::Left => events::WAITLIST_LEFT,
            WaitlistStatus::Fulfilled => events::WAITLIST_FULFILLED,
        }
    }

    /// What an entry whose offer is an order in `order` has become. An offer is normally
    /// linked while its order is pending; the other arms cover an entry linked late (a node
    /// stopped between placing the order and linking it) and settling an offer.
    pub fn for_offer(order: OrderStatus) -> WaitlistStatus {
        match order {
            OrderStatus::PendingPayment => WaitlistStatus::Offered,
            // A refund after payment does not reopen the entry: the buyer had the units.
            OrderStatus::Paid | OrderStatus::Confirmed | OrderStatus::Refunded => {
                WaitlistStatus::Fulfilled
            }
            OrderStatus::Cancelled => WaitlistStatus::Lapsed,
        }
    }
}

/// The units a buyer waits for: `requested` (default 1), at most the product's purchase
/// limit, or [`MAX_WAITLIST_QUANTITY`] when it has none.
pub fn waitlist_quantity(
    requested: Option<i64>,
    max_per_user: Option<i64>,
) -> Result<Quantity, DomainError> {
    let max = max_per_user.unwrap_or(MAX_WAITLIST_QUANTITY);
    let value = requested.unwrap_or(1);
    if !(1..=max).contains(&value) {
        return Err(DomainError::new(
            "quantity",
            format!("must be between 1 and {max}"),
        ));
    }
    Quantity::new("quantity", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn quantity_is_bounded_by_the_limit(v in any::<i64>(), limit in proptest::option::of(1i64..1000)) {
            let max = limit.unwrap_or(MAX_WAITLIST_QUANTITY);
            prop_assert_eq!(waitlist_quantity(Some(v), limit).is_ok(), (1..=max).contains(&v));
        }
    }

    #[test]
    fn quantity_defaults_to_one() {
        assert_eq!(waitlist_quantity(None, None).map(Quantity::get), Ok(1));
        assert_eq!(waitlist_quantity(None, Some(1)).map(Quantity::get), Ok(1));
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            WaitlistStatus::Waiting,
            WaitlistStatus::Offered,
            WaitlistStatus::Lapsed,
            WaitlistStatus::Skipped,
            WaitlistStatus::Left,
            WaitlistStatus::Fulfilled,
        ] {
            assert_eq!(WaitlistStatus::parse(status.as_str()), Some(status));
            assert!(status.event_type().starts_with("waitlist."));
        }
        assert_eq!(
            WaitlistStatus::for_offer(OrderStatus::Cancelled),
            WaitlistStatus::Lapsed
        );
        assert_eq!(
            WaitlistStatus::for_offer(OrderStatus::Paid),
            WaitlistStatus::Fulfilled
        );
    }
}
