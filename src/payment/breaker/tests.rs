//! The breaker as a gateway decorator uses it: real futures, a timeout, metrics, and a
//! manual clock for the open period.

use super::*;
use crate::clock::ManualClock;
use crate::metrics::{Metrics, OutcomeLabels};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, PartialEq, Eq)]
enum FakeError {
    /// A 5xx or a dropped connection.
    Down,
    /// The gateway answered: no such payment.
    NotFound,
}

impl CountsAsFailure for FakeError {
    fn is_failure(&self) -> bool {
        matches!(self, FakeError::Down)
    }
}

struct Fixture {
    breaker: CircuitBreaker,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
}

fn fixture(settings: BreakerSettings) -> Fixture {
    let clock = ManualClock::starting_now();
    let metrics = Arc::new(Metrics::default());
    let breaker = CircuitBreaker::new(settings, clock.clone(), metrics.clone());
    Fixture {
        breaker,
        clock,
        metrics,
    }
}

impl Fixture {
    async fn answer(&self, answer: Result<u32, FakeError>) -> Result<u32, BreakerError<FakeError>> {
        self.breaker.call(|| async { answer }).await
    }

    async fn answers(&self, n: usize, answer: fn() -> Result<u32, FakeError>) {
        for _ in 0..n {
            let _ = self.answer(answer()).await;
        }
    }

    fn count(&self, outcome: CallOutcome) -> u64 {
        self.metrics
            .payment_gateway_calls
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .get()
    }

    fn gauge(&self) -> i64 {
        self.metrics.payment_gateway_breaker_state.get()
    }

    async fn open(&self) {
        self.answers(5, || Err(FakeError::Down)).await;
        assert_eq!(self.breaker.state(), BreakerState::Open);
    }
}

#[tokio::test]
async fn opens_on_failures_and_then_refuses_without_calling() {
    let f = fixture(BreakerSettings::default());
    assert_eq!(f.answer(Ok(7)).await.expect("closed"), 7);
    f.answers(4, || Ok(1)).await;
    f.answers(4, || Err(FakeError::Down)).await;
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    assert_eq!(f.gauge(), 0);
    let last = f.answer(Err(FakeError::Down)).await;
    assert!(matches!(last, Err(BreakerError::Inner(FakeError::Down))));
    assert_eq!(f.breaker.state(), BreakerState::Open);
    assert_eq!(f.gauge(), 2);

    let called = AtomicBool::new(false);
    let refused = f
        .breaker
        .call(|| async {
            called.store(true, Ordering::SeqCst);
            Ok::<_, FakeError>(())
        })
        .await;
    assert!(
        !called.load(Ordering::SeqCst),
        "an open breaker makes no call"
    );
    match refused {
        Err(BreakerError::Open { retry_after }) => assert_eq!(retry_after, Duration::from_secs(30)),
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(f.count(CallOutcome::Ok), 5);
    assert_eq!(f.count(CallOutcome::Failure), 5);
    assert_eq!(f.count(CallOutcome::ShortCircuited), 1);
}

#[tokio::test]
async fn rejections_by_a_working_gateway_do_not_count() {
    let f = fixture(BreakerSettings::default());
    f.answers(20, || Err(FakeError::NotFound)).await;
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    assert_eq!(f.count(CallOutcome::Rejected), 20);
    assert_eq!(f.count(CallOutcome::Failure), 0);
    // A closure can judge the same errors otherwise.
    for _ in 0..5 {
        let _ = f
            .breaker
            .call_classified(
                |_: &FakeError| true,
                || async { Err::<(), _>(FakeError::NotFound) },
            )
            .await;
    }
    assert_eq!(f.breaker.state(), BreakerState::Open);
}

#[tokio::test]
async fn a_slow_call_times_out_and_counts_as_a_failure() {
    let f = fixture(BreakerSettings {
        call_timeout_ms: 20,
        ..BreakerSettings::default()
    });
    for _ in 0..5 {
        let slow = f
            .breaker
            .call(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, FakeError>(())
            })
            .await;
        assert!(matches!(slow, Err(BreakerError::Timeout)), "{slow:?}");
    }
    assert_eq!(f.breaker.state(), BreakerState::Open);
    assert_eq!(f.count(CallOutcome::Timeout), 5);
    let text = f.metrics.encode();
    assert!(
        text.contains("payment_gateway_latency_seconds_count 5"),
        "{text}"
    );
    assert!(
        text.contains(r#"payment_gateway_calls_total{outcome="timeout"} 5"#),
        "{text}"
    );
    assert!(text.contains("payment_gateway_breaker_state 2"), "{text}");
}

#[tokio::test]
async fn half_open_probes_close_it_and_a_failed_probe_reopens_it() {
    let f = fixture(BreakerSettings::default());
    f.open().await;
    f.clock.advance(Duration::from_millis(29_999));
    assert!(matches!(
        f.answer(Ok(1)).await,
        Err(BreakerError::Open { retry_after }) if retry_after == Duration::from_millis(1)
    ));
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
    assert_eq!(f.gauge(), 1);
    f.answers(2, || Ok(1)).await;
    assert!(matches!(
        f.answer(Err(FakeError::Down)).await,
        Err(BreakerError::Inner(FakeError::Down))
    ));
    assert_eq!(
        f.breaker.state(),
        BreakerState::Open,
        "a failed probe reopens"
    );
    assert_eq!(f.gauge(), 2);

    f.clock.advance(Duration::from_secs(30));
    // A rejection is a working gateway's answer: it counts as a successful probe.
    f.answers(2, || Ok(1)).await;
    assert!(f.answer(Err(FakeError::NotFound)).await.is_err());
    assert_eq!(f.breaker.state(), BreakerState::Closed);
    assert_eq!(f.gauge(), 0);
}

#[tokio::test]
async fn while_a_probe_runs_other_calls_wait_for_it() {
    let f = fixture(BreakerSettings::default());
    f.open().await;
    f.clock.advance(Duration::from_secs(30));
    let probe = f.breaker.call(|| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, FakeError>(1)
    });
    let other = f.breaker.call(|| async { Ok::<_, FakeError>(2) });
    // `join!` polls the probe first: it takes the only slot before the other call asks.
    let (probe, other) = tokio::join!(probe, other);
    assert_eq!(probe.expect("the probe"), 1);
    match other {
        Err(BreakerError::Open { retry_after }) => assert_eq!(retry_after, Duration::from_secs(5)),
        other => panic!("expected Open, got {other:?}"),
    }
}

#[tokio::test]
async fn a_probe_dropped_mid_call_gives_its_slot_back() {
    let f = fixture(BreakerSettings::default());
    f.open().await;
    f.clock.advance(Duration::from_secs(30));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        f.breaker
            .call(std::future::pending::<Result<(), FakeError>>),
    )
    .await;
    assert!(cancelled.is_err(), "the caller gave up first");
    assert_eq!(f.breaker.state(), BreakerState::HalfOpen);
    f.answers(3, || Ok(1)).await;
    assert_eq!(f.breaker.state(), BreakerState::Closed);
}

/// A gateway decorator behind `async_trait` needs the call's future to be `Send`.
#[test]
fn a_call_is_send_when_its_future_is() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture(BreakerSettings::default());
    let call = f.breaker.call(|| async { Ok::<_, FakeError>(()) });
    assert_send(&call);
}

#[test]
fn the_defaults_are_seed_002s_and_valid() {
    let settings = BreakerSettings::default();
    assert_eq!(
        (
            settings.window_calls,
            settings.min_calls,
            settings.failure_rate_percent,
            settings.open_ms
        ),
        (10, 5, 50, 30_000)
    );
    assert_eq!(settings.validate(), Ok(()));
    let bad = BreakerSettings {
        min_calls: 11,
        ..settings
    };
    assert_eq!(
        bad.validate(),
        Err("min_calls must be 1 to window_calls".to_owned())
    );
    let bad = BreakerSettings {
        failure_rate_percent: 0,
        ..settings
    };
    assert!(bad.validate().is_err());
}
