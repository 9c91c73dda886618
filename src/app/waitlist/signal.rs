//! How the dispatcher wakes this node's waitlist job: which products got units back, and
//! whether some order left `pending_payment`. Pokes coalesce until the job takes them.

use crate::domain::events::{self, Event, StockChanged};
use crate::events::Subscriber;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How the dispatcher wakes this node's worker: which products got units back, and whether
/// some order left `pending_payment`. Pokes coalesce until the worker takes them.
#[derive(Default)]
pub struct Signal {
    products: Mutex<BTreeSet<i64>>,
    orders: AtomicBool,
    wake: Arc<Notify>,
}

impl Signal {
    /// Units of `product_id` are available (a `stock.changed` with `available > 0`).
    pub fn stock_available(&self, product_id: i64) {
        self.products
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(product_id);
        self.wake.notify_one();
    }

    /// An order was paid, cancelled, expired or refunded: an offer may have ended.
    pub fn order_settled(&self) {
        self.orders.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// What the pokes since the last call asked for: the products, and whether an order
    /// settled.
    pub fn take(&self) -> (BTreeSet<i64>, bool) {
        let products =
            std::mem::take(&mut *self.products.lock().unwrap_or_else(|p| p.into_inner()));
        (products, self.orders.swap(false, Ordering::AcqRel))
    }
}

impl Signal {
    /// What the job waits on between its timer's ticks.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

impl Subscriber for Signal {
    fn deliver(&self, event: &Event) {
        match event.event_type.as_str() {
            events::STOCK_CHANGED => {
                // The dispatcher logs a malformed payload; nothing to offer from one.
                if let Ok(s) = serde_json::from_str::<StockChanged>(&event.payload) {
                    if s.available > 0 {
                        self.stock_available(s.product_id);
                    }
                }
            }
            events::ORDER_PAID
            | events::ORDER_CANCELLED
            | events::ORDER_EXPIRED
            | events::ORDER_REFUNDED => self.order_settled(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pokes_coalesce_until_taken() {
        let signal = Signal::default();
        signal.stock_available(5);
        signal.stock_available(5);
        signal.stock_available(2);
        signal.order_settled();
        let (products, orders) = signal.take();
        assert_eq!(products.into_iter().collect::<Vec<_>>(), [2, 5]);
        assert!(orders);
        let (products, orders) = signal.take();
        assert!(products.is_empty() && !orders);
    }

    fn event(event_type: &str, payload: &str) -> Event {
        Event {
            id: 1,
            aggregate_type: "x".into(),
            aggregate_id: 1,
            event_type: event_type.into(),
            payload: payload.into(),
            created_at: crate::domain::Timestamp::from_millis(0),
        }
    }

    #[test]
    fn units_coming_back_and_settled_orders_wake_the_job() {
        let signal = Signal::default();
        let back = r#"{"product_id":4,"on_hand":3,"held":1,"available":2}"#;
        let gone = r#"{"product_id":5,"on_hand":1,"held":1,"available":0}"#;
        signal.deliver(&event(events::STOCK_CHANGED, back));
        signal.deliver(&event(events::STOCK_CHANGED, gone));
        signal.deliver(&event(events::ORDER_PLACED, "{}"));
        assert_eq!(signal.take(), ([4].into(), false));
        signal.deliver(&event(events::ORDER_EXPIRED, "{}"));
        assert_eq!(signal.take(), (BTreeSet::new(), true));
    }
}
