//! A PortOne-compatible stub inside the test process: real HTTP on 127.0.0.1:0 speaking
//! the two calls of PortOne's V2 REST API that Stampede makes — `GET /payments/{id}` and
//! `POST /payments/{id}/cancel` — and refusing any call without `Authorization: PortOne
//! <secret>`. Tests set what the gateway knows about a payment, make the next calls fail
//! (500) or hang past the client's timeout, and read the cancels it received.
//! [`portone_tests!`] runs a test on both backends with a server pointed at a fresh stub.

use crate::helpers::{expect, int, Reply, TestApp};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub const STUB_SECRET: &str = "portone-test-secret";
pub const STUB_STORE_ID: &str = "store-stampede-test";
/// Base64 of "stampede-test-webhook-secret" (the webhook tests sign with it).
pub const STUB_WEBHOOK_SECRET: &str = "whsec_c3RhbXBlZGUtdGVzdC13ZWJob29rLXNlY3JldA==";
/// How long a hanging call hangs: well past the timeout `portone_tests!` configures.
const HANG: Duration = Duration::from_secs(3);
/// `payment_timeout_ms` of the servers `portone_tests!` starts.
pub const STUB_TIMEOUT_MS: u64 = 500;

/// What the stub knows about one payment.
#[derive(Debug, Clone)]
pub struct StubPayment {
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub store_id: String,
    pub cancelled: i64,
}

#[derive(Default)]
struct Stub {
    payments: Mutex<HashMap<String, StubPayment>>,
    cancels: Mutex<Vec<(String, Option<i64>)>>,
    failing: AtomicU32,
    hanging: AtomicU32,
    unauthorized: AtomicU32,
    lookups: AtomicU32,
}

/// A running stub; stopped when dropped.
pub struct PortOneStub {
    pub url: String,
    stub: Arc<Stub>,
    task: JoinHandle<()>,
}

impl Drop for PortOneStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PortOneStub {
    pub async fn start() -> PortOneStub {
        let stub = Arc::new(Stub::default());
        let router = Router::new()
            .route("/payments/{id}", get(payment))
            .route("/payments/{id}/cancel", post(cancel))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the stub");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        PortOneStub { url, stub, task }
    }

    /// The buyer paid `amount` won under `payment_id`.
    pub fn paid(&self, payment_id: &str, amount: i64) {
        self.set(payment_id, "PAID", amount, "KRW");
    }

    pub fn set(&self, payment_id: &str, status: &str, amount: i64, currency: &str) {
        self.set_payment(
            payment_id,
            StubPayment {
                status: status.into(),
                amount,
                currency: currency.into(),
                store_id: STUB_STORE_ID.into(),
                cancelled: 0,
            },
        );
    }

    pub fn set_payment(&self, payment_id: &str, payment: StubPayment) {
        let mut payments = self.stub.payments.lock().unwrap();
        payments.insert(payment_id.to_owned(), payment);
    }

    pub fn payment(&self, payment_id: &str) -> Option<StubPayment> {
        self.stub.payments.lock().unwrap().get(payment_id).cloned()
    }

    /// The next `n` calls answer 500.
    pub fn fail_next(&self, n: u32) {
        self.stub.failing.store(n, Ordering::SeqCst);
    }

    /// The next `n` calls hang past the client's timeout.
    pub fn hang_next(&self, n: u32) {
        self.stub.hanging.store(n, Ordering::SeqCst);
    }

    /// Every cancel received with a valid secret, in order: `(payment id, amount)`.
    pub fn cancels(&self) -> Vec<(String, Option<i64>)> {
        self.stub.cancels.lock().unwrap().clone()
    }

    /// Calls refused for a missing or wrong `Authorization`.
    pub fn unauthorized(&self) -> u32 {
        self.stub.unauthorized.load(Ordering::SeqCst)
    }

    /// `GET /payments/{id}` calls answered.
    pub fn lookups(&self) -> u32 {
        self.stub.lookups.load(Ordering::SeqCst)
    }
}

fn error(status: StatusCode, kind: &str) -> Response {
    (status, Json(json!({"type": kind, "message": kind}))).into_response()
}

/// Takes one from `counter` if it is above zero.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The authorization check, then any failure or hang the test asked for.
async fn gate(stub: &Stub, headers: &HeaderMap) -> Option<Response> {
    let expected = format!("PortOne {STUB_SECRET}");
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if authorization != Some(expected.as_str()) {
        stub.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Some(error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    }
    if take(&stub.hanging) {
        tokio::time::sleep(HANG).await;
    }
    if take(&stub.failing) {
        return Some(error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"));
    }
    None
}

async fn payment(
    State(stub): State<Arc<Stub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&stub, &headers).await {
        return refused;
    }
    stub.lookups.fetch_add(1, Ordering::SeqCst);
    let Some(p) = stub.payments.lock().unwrap().get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND");
    };
    let body = json!({
        "status": p.status,
        "id": id,
        "storeId": p.store_id,
        "orderName": "an order",
        "amount": {"total": p.amount, "paid": p.amount, "cancelled": p.cancelled},
        "currency": p.currency,
    });
    Json(body).into_response()
}

async fn cancel(
    State(stub): State<Arc<Stub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = gate(&stub, &headers).await {
        return refused;
    }
    if body["reason"].as_str().is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    }
    let amount = body["amount"].as_i64();
    let mut payments = stub.payments.lock().unwrap();
    let Some(p) = payments.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND");
    };
    match p.status.as_str() {
        "CANCELLED" => return error(StatusCode::CONFLICT, "PAYMENT_ALREADY_CANCELLED"),
        "PAID" | "PARTIAL_CANCELLED" => {}
        _ => return error(StatusCode::CONFLICT, "PAYMENT_NOT_PAID"),
    }
    let left = p.amount - p.cancelled;
    let cancelling = amount.unwrap_or(left);
    if cancelling <= 0 || cancelling > left {
        return error(
            StatusCode::CONFLICT,
            "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT",
        );
    }
    p.cancelled += cancelling;
    p.status = if p.cancelled == p.amount {
        "CANCELLED".into()
    } else {
        "PARTIAL_CANCELLED".into()
    };
    stub.cancels.lock().unwrap().push((id, amount));
    Json(json!({"cancellation": {"status": "SUCCEEDED", "totalAmount": cancelling}}))
        .into_response()
}

/// Points a server's configuration at `stub`: the PortOne gateway with its secrets, a
/// short timeout, and a reconciler that only runs at start (tests that need it set
/// `payment_reconcile_interval_secs`).
pub fn use_stub(config: &mut stampede::config::Config, stub_url: &str) {
    config.payment_gateway = stampede::config::PaymentGateway::Portone;
    config.portone_api_url = stub_url.to_owned();
    config.portone_api_secret = Some(STUB_SECRET.into());
    config.portone_store_id = Some(STUB_STORE_ID.into());
    config.portone_webhook_secret = Some(STUB_WEBHOOK_SECRET.into());
    config.payment_timeout_ms = STUB_TIMEOUT_MS;
    config.payment_reconcile_interval_secs = 3600;
}

impl TestApp {
    /// `POST /orders/{id}/checkout`.
    pub async fn checkout(&self, token: &str, order_id: i64) -> Reply {
        self.post_empty(&format!("/orders/{order_id}/checkout"), Some(token))
            .await
    }

    /// `POST /orders/{id}/pay` with this payment id and the order's payable amount.
    pub async fn pay_with(&self, token: &str, order: &Value, payment_id: &str) -> Reply {
        let body = json!({"payment_key": payment_id, "amount": int(order, "payable")});
        self.post(
            &format!("/orders/{}/pay", int(order, "id")),
            Some(token),
            &body,
        )
        .await
    }

    /// Checks out, pays the payable amount at the stub, and tells the server: the buyer's
    /// whole journey. Returns the payment id and the server's reply.
    pub async fn pay_at(&self, stub: &PortOneStub, token: &str, order: &Value) -> (String, Reply) {
        let checkout = expect(&self.checkout(token, int(order, "id")).await, 200).clone();
        let payment_id = checkout["payment_id"].as_str().unwrap().to_owned();
        stub.paid(&payment_id, int(order, "payable"));
        let reply = self.pay_with(token, order, &payment_id).await;
        (payment_id, reply)
    }
}

/// `backend_tests!` with a PortOne stub: each variant starts a fresh stub, points the
/// server at it ([`use_stub`]), lets `config` adjust the rest, and hands the body the app
/// and the stub.
///
/// ```ignore
/// portone_tests!(pays, config = |_c| {}, |app, stub| async move { … });
/// ```
macro_rules! portone_tests {
    ($name:ident, config = |$cfg:ident| $tweak:expr, |$app:ident, $stub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(backend: $crate::helpers::Backend) {
                let $stub = ::std::sync::Arc::new($crate::helpers::PortOneStub::start().await);
                let url = $stub.url.clone();
                let stub_for_body = $stub.clone();
                $crate::helpers::run_on(
                    backend,
                    &[],
                    |$cfg: &mut ::stampede::config::Config,
                     _services: &$crate::helpers::Available| {
                        $crate::helpers::use_stub($cfg, &url);
                        $tweak;
                    },
                    |$app: $crate::helpers::TestApp| {
                        let $stub = stub_for_body;
                        $body
                    },
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
