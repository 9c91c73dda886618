//! The checks of fulfilment: every partner order is in a status its order allows (none
//! shipped on an unpaid order, every part of a confirmed order delivered and confirmed,
//! cancelled, or returned since), a paid order's `delivered_at` — where the automatic
//! confirmation counts from — agrees with its parts, and every returned part is on the
//! seller's books as exactly one `refund` entry negating its sale (and only returned parts
//! are). The money booked back for returned parts is checked with the order's other refunds
//! (`ledgers`). The database's CHECKs keep each partner order's own columns consistent (a
//! shipped part has its shipment, a confirmed one its delivery, a returned one its reason).

use crate::store::FulfilmentAudit;

pub(super) fn check(audit: &FulfilmentAudit, problems: &mut Vec<String>) {
    for s in audit
        .states
        .iter()
        .filter(|s| !s.status.fits(s.order_status))
    {
        problems.push(format!(
            "{} partner order(s) are {} while their order is {} (e.g. partner order {})",
            s.partner_orders,
            s.status.as_str(),
            s.order_status.as_str(),
            s.first_id
        ));
    }
    for order_id in &audit.delivery_mismatches {
        problems.push(format!(
            "order {order_id}: delivered_at disagrees with its partner orders' deliveries"
        ));
    }
    for id in &audit.unbooked_returns {
        problems.push(format!(
            "partner order {id} was returned but has no single refund settlement entry negating its sale"
        ));
    }
    for id in &audit.stray_refund_entries {
        problems.push(format!(
            "partner order {id} has a refund settlement entry but was never returned"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fulfilment::PartnerOrderStatus;
    use crate::domain::OrderStatus;
    use crate::store::PartnerOrderStates;

    fn states(order_status: OrderStatus, status: PartnerOrderStatus) -> PartnerOrderStates {
        PartnerOrderStates {
            order_status,
            status,
            partner_orders: 2,
            first_id: 7,
        }
    }

    #[test]
    fn parts_must_fit_their_order() {
        let clean = FulfilmentAudit {
            states: vec![
                states(OrderStatus::Paid, PartnerOrderStatus::Shipped),
                states(OrderStatus::Confirmed, PartnerOrderStatus::Confirmed),
                states(OrderStatus::Confirmed, PartnerOrderStatus::Refunded),
                states(
                    OrderStatus::PendingPayment,
                    PartnerOrderStatus::PendingPayment,
                ),
            ],
            ..Default::default()
        };
        let mut problems = Vec::new();
        check(&clean, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let broken = FulfilmentAudit {
            states: vec![
                states(OrderStatus::PendingPayment, PartnerOrderStatus::Shipped),
                states(OrderStatus::Confirmed, PartnerOrderStatus::Preparing),
            ],
            delivery_mismatches: vec![12],
            unbooked_returns: vec![31],
            stray_refund_entries: vec![32],
        };
        check(&broken, &mut problems);
        assert_eq!(
            problems,
            [
                "2 partner order(s) are shipped while their order is pending_payment (e.g. partner order 7)",
                "2 partner order(s) are preparing while their order is confirmed (e.g. partner order 7)",
                "order 12: delivered_at disagrees with its partner orders' deliveries",
                "partner order 31 was returned but has no single refund settlement entry negating its sale",
                "partner order 32 has a refund settlement entry but was never returned",
            ]
        );
    }
}
