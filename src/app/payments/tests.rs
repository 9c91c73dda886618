//! Refunds that fail at the gateway: recorded as `payment.refund_failed`, retried by the
//! refund retrier until the gateway gives the money back, and recorded as refunded once per
//! event however often the retry is delivered. Against a real SQLite store and a gateway of
//! the test's own whose refunds fail until it is told to recover.

use super::*;
use crate::clock::ManualClock;
use crate::domain::events::{self, RefundDue};
use crate::domain::Timestamp;
use crate::payment::{GatewayError, GatewayPayment};
use crate::store::open::TempSqlite;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

/// Refunds fail while `down`; every refund asked for is counted.
#[derive(Default)]
struct FlakyGateway {
    down: AtomicBool,
    refunds_asked: AtomicU32,
    cancels: std::sync::Mutex<Vec<(String, Option<i64>)>>,
}

#[async_trait]
impl PaymentGateway for FlakyGateway {
    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn payment(
        &self,
        _payment_id: &str,
        expected_amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        Ok(GatewayPayment::Paid {
            amount: expected_amount,
            currency: crate::payment::CURRENCY.into(),
        })
    }

    async fn cancel(
        &self,
        payment_id: &str,
        amount: Option<i64>,
        _reason: &str,
    ) -> Result<(), GatewayError> {
        self.refunds_asked.fetch_add(1, Ordering::SeqCst);
        self.cancels
            .lock()
            .unwrap()
            .push((payment_id.to_owned(), amount));
        if self.down.load(Ordering::SeqCst) {
            return Err(GatewayError::Unavailable("connection reset".into()));
        }
        Ok(())
    }
}

async fn payments(gateway: Arc<FlakyGateway>) -> (Payments, TempSqlite) {
    let db = TempSqlite::open(NOW).await;
    let (events, _progress) = EventSync::new(db.store.clone());
    let payments = Payments {
        store: db.store.clone(),
        gateway,
        clock: ManualClock::at(NOW),
        metrics: Arc::new(Metrics::default()),
        events,
        settings: PaymentSettings {
            store_id: "test".into(),
            simulated: false,
            webhook_secret: None,
        },
    };
    (payments, db)
}

fn refunds_of(payments: &Payments, outcome: &str) -> u64 {
    payments
        .metrics
        .payments
        .get_or_create(&ReasonLabels {
            reason: outcome.into(),
        })
        .get()
}

#[tokio::test]
async fn a_failed_refund_is_recorded_retried_and_refunded_once() {
    let gateway = Arc::new(FlakyGateway::default());
    gateway.down.store(true, Ordering::SeqCst);
    let (payments, db) = payments(gateway.clone()).await;

    assert!(
        !payments
            .give_back(7, "pay_7", Some(5_000), 5_000, "a refund")
            .await
    );
    let failed = payments.store.events_after(0, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    let event = &failed[0];
    assert_eq!(event.event_type, events::PAYMENT_REFUND_FAILED);
    assert_eq!(
        (event.aggregate_type.as_str(), event.aggregate_id),
        ("order", 7)
    );
    let due: RefundDue = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(
        (due.order_id, due.payment_id.as_deref(), due.amount),
        (7, Some("pay_7"), 5_000)
    );
    assert!(due.error.unwrap().contains("connection reset"));
    assert_eq!(refunds_of(&payments, "refund_failed"), 1);

    // The gateway still down: the retry fails and records nothing.
    assert!(payments
        .retry_refund("refund-retrier", event)
        .await
        .is_err());
    assert_eq!(
        payments
            .store
            .events_after(event.id, 10)
            .await
            .unwrap()
            .len(),
        0
    );

    // Back: the money goes back, and that is recorded.
    gateway.down.store(false, Ordering::SeqCst);
    payments
        .retry_refund("refund-retrier", event)
        .await
        .unwrap();
    let done = payments.store.events_after(event.id, 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].event_type, events::PAYMENT_REFUNDED);
    let refunded: RefundDue = serde_json::from_str(&done[0].payload).unwrap();
    assert_eq!(
        (refunded.order_id, refunded.amount, refunded.error),
        (7, 5_000, None)
    );
    assert_eq!(refunded.payment_id.as_deref(), Some("pay_7"));

    // Delivered again: nothing more is recorded.
    payments
        .retry_refund("refund-retrier", event)
        .await
        .unwrap();
    assert_eq!(
        payments
            .store
            .events_after(event.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(gateway.refunds_asked.load(Ordering::SeqCst), 4);
    // Every attempt cancelled that payment by its id, with the amount.
    let cancels = gateway.cancels.lock().unwrap().clone();
    assert!(
        cancels
            .iter()
            .all(|c| *c == ("pay_7".to_owned(), Some(5_000))),
        "{cancels:?}"
    );
    db.close().await;
}

#[tokio::test]
async fn a_refund_that_goes_through_writes_no_event() {
    let gateway = Arc::new(FlakyGateway::default());
    let (payments, db) = payments(gateway.clone()).await;
    assert!(
        payments
            .give_back(7, "pay_7", Some(5_000), 5_000, "a refund")
            .await
    );
    assert!(payments.store.events_after(0, 10).await.unwrap().is_empty());
    assert_eq!(refunds_of(&payments, "refund_failed"), 0);
    db.close().await;
}
