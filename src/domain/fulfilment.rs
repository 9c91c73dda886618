//! What happens to a partner order after payment (DESIGN §3): the seller prepares it,
//! ships it with a carrier's tracking number, and it is delivered; the buyer then confirms
//! the purchase. A partner order also follows its order through payment, cancellation,
//! refund and confirmation; once confirmed, the seller may still take it back (a return:
//! `confirmed → refunded`, the order staying confirmed).

use super::event_names::{PARTNER_ORDER_DELIVERED, PARTNER_ORDER_PREPARING, PARTNER_ORDER_SHIPPED};
use super::order::OrderStatus;
use super::DomainError;
use serde::{Deserialize, Serialize};

/// Longest carrier name, in characters ("CJ대한통운", "Royal Mail").
pub const MAX_CARRIER_CHARS: usize = 100;
/// Longest tracking number, in characters. Carriers' numbers are far shorter; the limit
/// only keeps rows and events small.
pub const MAX_TRACKING_NUMBER_CHARS: usize = 64;

/// Longest reason a seller gives for cancelling or taking back a partner order, in
/// characters.
pub const MAX_CANCEL_REASON_CHARS: usize = 500;

/// Why a seller (or admin) cancels a partner order before it ships, or takes it back after
/// the purchase was confirmed: trimmed, 1 to [`MAX_CANCEL_REASON_CHARS`] characters, no
/// control characters but line breaks. The buyer reads it either way, so both follow one
/// rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelNote(String);

impl CancelNote {
    pub fn new(raw: &str) -> Result<CancelNote, DomainError> {
        let reason = raw.trim();
        let count = reason.chars().count();
        let controls = reason.chars().any(|c| c.is_control() && c != '\n');
        if count == 0 || count > MAX_CANCEL_REASON_CHARS || controls {
            return Err(DomainError::new(
                "reason",
                format!(
                    "must be 1 to {MAX_CANCEL_REASON_CHARS} characters, without control characters"
                ),
            ));
        }
        Ok(CancelNote(reason.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A partner order's status: its order's (`pending_payment`, `paid`, `confirmed`,
/// `cancelled`, `refunded`) plus the seller's `preparing`, `shipped` and `delivered` in
/// between payment and confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerOrderStatus {
    PendingPayment,
    Paid,
    Preparing,
    Shipped,
    Delivered,
    Confirmed,
    Cancelled,
    Refunded,
}

impl PartnerOrderStatus {
    pub const ALL: [PartnerOrderStatus; 8] = [
        PartnerOrderStatus::PendingPayment,
        PartnerOrderStatus::Paid,
        PartnerOrderStatus::Preparing,
        PartnerOrderStatus::Shipped,
        PartnerOrderStatus::Delivered,
        PartnerOrderStatus::Confirmed,
        PartnerOrderStatus::Cancelled,
        PartnerOrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PartnerOrderStatus::PendingPayment => "pending_payment",
            PartnerOrderStatus::Paid => "paid",
            PartnerOrderStatus::Preparing => "preparing",
            PartnerOrderStatus::Shipped => "shipped",
            PartnerOrderStatus::Delivered => "delivered",
            PartnerOrderStatus::Confirmed => "confirmed",
            PartnerOrderStatus::Cancelled => "cancelled",
            PartnerOrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<PartnerOrderStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Nothing left for the seller to do before the buyer may confirm the purchase: it
    /// arrived, or it was cancelled (a cancelled part is no longer the buyer's purchase).
    pub fn settled_for_confirmation(self) -> bool {
        matches!(
            self,
            PartnerOrderStatus::Delivered | PartnerOrderStatus::Cancelled
        )
    }

    /// Whether a partner order may be in this status while its order is in `order`:
    /// before payment and after a cancellation or refund they move together; while the
    /// order is paid each part is fulfilled on its own; a confirmed order's parts were all
    /// delivered (and are confirmed with it) or cancelled, and a confirmed part may since
    /// have been returned (`refunded`, its order still confirmed). `stampede verify` checks
    /// this.
    pub fn fits(self, order: OrderStatus) -> bool {
        use PartnerOrderStatus as P;
        match order {
            OrderStatus::PendingPayment => self == P::PendingPayment,
            OrderStatus::Paid => matches!(
                self,
                P::Paid | P::Preparing | P::Shipped | P::Delivered | P::Cancelled
            ),
            OrderStatus::Confirmed => matches!(self, P::Confirmed | P::Cancelled | P::Refunded),
            OrderStatus::Cancelled => self == P::Cancelled,
            OrderStatus::Refunded => matches!(self, P::Refunded | P::Cancelled),
        }
    }
}

/// A seller's step forward, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// `paid → preparing`.
    Prepare,
    /// `preparing → shipped`, handed to a carrier.
    Ship(Shipment),
    /// `shipped → delivered`.
    Deliver,
}

impl Advance {
    /// The status the partner order must be in, and the one it enters.
    pub fn change(&self) -> (PartnerOrderStatus, PartnerOrderStatus) {
        match self {
            Advance::Prepare => (PartnerOrderStatus::Paid, PartnerOrderStatus::Preparing),
            Advance::Ship(_) => (PartnerOrderStatus::Preparing, PartnerOrderStatus::Shipped),
            Advance::Deliver => (PartnerOrderStatus::Shipped, PartnerOrderStatus::Delivered),
        }
    }

    /// `prepare`, `ship`, `deliver`: the route's last segment, and a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Advance::Prepare => "prepare",
            Advance::Ship(_) => "ship",
            Advance::Deliver => "deliver",
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Advance::Prepare => PARTNER_ORDER_PREPARING,
            Advance::Ship(_) => PARTNER_ORDER_SHIPPED,
            Advance::Deliver => PARTNER_ORDER_DELIVERED,
        }
    }

    pub fn shipment(&self) -> Option<&Shipment> {
        match self {
            Advance::Ship(shipment) => Some(shipment),
            Advance::Prepare | Advance::Deliver => None,
        }
    }
}

/// Who carries a shipped partner order, and the number the buyer tracks it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    carrier: String,
    tracking_number: String,
}

impl Shipment {
    /// `carrier`: trimmed, 1 to [`MAX_CARRIER_CHARS`] characters, no control characters.
    /// `tracking_number`: trimmed, 1 to [`MAX_TRACKING_NUMBER_CHARS`] printable ASCII
    /// characters without spaces (what carriers print and buyers type).
    pub fn new(carrier: &str, tracking_number: &str) -> Result<Shipment, DomainError> {
        let carrier = carrier.trim();
        let count = carrier.chars().count();
        if count == 0 || count > MAX_CARRIER_CHARS || carrier.chars().any(char::is_control) {
            return Err(DomainError::new(
                "carrier",
                format!("must be 1 to {MAX_CARRIER_CHARS} characters, without control characters"),
            ));
        }
        let tracking_number = tracking_number.trim();
        let printable = tracking_number.chars().all(|c| c.is_ascii_graphic());
        if tracking_number.is_empty()
            || tracking_number.len() > MAX_TRACKING_NUMBER_CHARS
            || !printable
        {
            return Err(DomainError::new(
                "tracking_number",
                format!(
                    "must be 1 to {MAX_TRACKING_NUMBER_CHARS} printable ASCII characters without spaces"
                ),
            ));
        }
        Ok(Shipment {
            carrier: carrier.to_owned(),
            tracking_number: tracking_number.to_owned(),
        })
    }

    pub fn carrier(&self) -> &str {
        &self.carrier
    }

    pub fn tracking_number(&self) -> &str {
        &self.tracking_number
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in PartnerOrderStatus::ALL {
            assert_eq!(PartnerOrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(PartnerOrderStatus::parse("lost"), None);
    }

    #[test]
    fn each_step_moves_one_status_forward() {
        let ship = Advance::Ship(Shipment::new("CJ", "123").unwrap());
        let steps = [Advance::Prepare, ship, Advance::Deliver];
        let chain: Vec<_> = steps.iter().map(Advance::change).collect();
        for pair in chain.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{pair:?}");
        }
        assert_eq!(chain[0].0, PartnerOrderStatus::Paid);
        assert_eq!(chain[2].1, PartnerOrderStatus::Delivered);
        for step in &steps {
            assert!(step.event_type().ends_with(step.change().1.as_str()));
        }
    }

    #[test]
    fn only_delivered_or_cancelled_parts_let_the_buyer_confirm() {
        let ready: Vec<_> = PartnerOrderStatus::ALL
            .into_iter()
            .filter(|s| s.settled_for_confirmation())
            .collect();
        assert_eq!(
            ready,
            [PartnerOrderStatus::Delivered, PartnerOrderStatus::Cancelled]
        );
    }

    #[test]
    fn shipped_parts_belong_to_paid_orders_only() {
        let shipped = PartnerOrderStatus::Shipped;
        assert!(shipped.fits(OrderStatus::Paid));
        for order in [
            OrderStatus::PendingPayment,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ] {
            assert!(!shipped.fits(order), "shipped under {order:?}");
        }
        assert!(PartnerOrderStatus::Confirmed.fits(OrderStatus::Confirmed));
        assert!(!PartnerOrderStatus::Delivered.fits(OrderStatus::Confirmed));
        // A returned part is refunded under its still confirmed order.
        assert!(PartnerOrderStatus::Refunded.fits(OrderStatus::Confirmed));
        assert!(!PartnerOrderStatus::Refunded.fits(OrderStatus::Paid));
    }

    #[test]
    fn shipments_are_trimmed_and_bounded() {
        let s = Shipment::new("  CJ대한통운 ", " 6865-1234-5678 ").unwrap();
        assert_eq!(
            (s.carrier(), s.tracking_number()),
            ("CJ대한통운", "6865-1234-5678")
        );
        for (carrier, tracking) in [
            ("", "1"),
            ("   ", "1"),
            ("C\nJ", "1"),
            ("C\u{7}J", "1"),
            ("CJ", ""),
            ("CJ", "12 34"),
            ("CJ", "１２３"),
            ("CJ", "12\t34"),
        ] {
            assert!(
                Shipment::new(carrier, tracking).is_err(),
                "{carrier:?} {tracking:?}"
            );
        }
        let longest = "9".repeat(MAX_TRACKING_NUMBER_CHARS);
        assert!(Shipment::new("CJ", &longest).is_ok());
        assert!(Shipment::new("CJ", &format!("{longest}9")).is_err());
        let carrier = "가".repeat(MAX_CARRIER_CHARS);
        assert!(Shipment::new(&carrier, "1").is_ok());
        assert!(Shipment::new(&format!("{carrier}가"), "1").is_err());
    }

    #[test]
    fn cancel_notes_are_trimmed_and_bounded() {
        assert_eq!(
            CancelNote::new("  out of stock\n").unwrap().as_str(),
            "out of stock"
        );
        assert_eq!(CancelNote::new("a\nb").unwrap().as_str(), "a\nb");
        for bad in ["", "   ", "a\u{7}b", "a\rb"] {
            assert!(CancelNote::new(bad).is_err(), "{bad:?}");
        }
        let longest = "가".repeat(MAX_CANCEL_REASON_CHARS);
        assert!(CancelNote::new(&longest).is_ok());
        assert!(CancelNote::new(&format!("{longest}가")).is_err());
    }

    proptest! {
        #[test]
        fn tracking_numbers_are_exactly_short_printable_ascii(raw in "\\PC{0,80}") {
            let trimmed = raw.trim();
            let valid = !trimmed.is_empty()
                && trimmed.len() <= MAX_TRACKING_NUMBER_CHARS
                && trimmed.chars().all(|c| c.is_ascii_graphic());
            prop_assert_eq!(Shipment::new("CJ", &raw).is_ok(), valid);
        }

        #[test]
        fn an_accepted_shipment_keeps_what_was_sent_minus_the_padding(
            carrier in "[A-Za-z가-힣 ]{1,50}", tracking in "[A-Z0-9-]{1,64}",
        ) {
            let padded = format!(" {carrier}\t");
            match Shipment::new(&padded, &tracking) {
                Ok(s) => {
                    prop_assert_eq!(s.carrier(), carrier.trim());
                    prop_assert_eq!(s.tracking_number(), tracking.as_str());
                }
                Err(_) => prop_assert!(carrier.trim().is_empty()),
            }
        }
    }
}
