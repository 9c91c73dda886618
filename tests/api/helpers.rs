//! The test harness: every test gets its own server on port 0 against its own fresh
//! database, talks to it over HTTP only, and tears both down afterwards, even when the
//! test panics. `backend_tests!` runs each test once on SQLite and once on PostgreSQL.

use futures_util::FutureExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stampede::clock::OffsetClock;
use stampede::config::Config;
use stampede::domain::Role;
use stampede::http::AppState;
use stampede::wiring::Server;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, OnceCell};
use tokio::task::JoinHandle;

/// Defines a module `$name` with two tests, `sqlite` and `postgres`, each running the body
/// against a fresh server. An optional `config = |c| …` adjusts the `Config` first.
///
/// ```ignore
/// backend_tests!(pays, |app| async move { … });
/// backend_tests!(expires, config = |c| { c.hold_ttl_secs = 1 }, |app| async move { … });
/// ```
macro_rules! backend_tests {
    ($name:ident, |$app:ident| $body:expr) => {
        backend_tests!($name, config = |_config| {}, |$app| $body);
    };
    ($name:ident, config = |$cfg:ident| $tweak:expr, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::helpers::run_on(
                    $crate::helpers::Backend::Sqlite,
                    |$cfg: &mut ::stampede::config::Config| {
                        $tweak;
                    },
                    |$app: $crate::helpers::TestApp| $body,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::helpers::run_on(
                    $crate::helpers::Backend::Postgres,
                    |$cfg: &mut ::stampede::config::Config| {
                        $tweak;
                    },
                    |$app: $crate::helpers::TestApp| $body,
                )
                .await;
            }
        }
    };
}

/// A status and a parsed body (`Null` when empty, a JSON string when not JSON).
pub type Reply = (StatusCode, Value);

/// How long a server gets to stop after its shutdown signal before the test fails.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Generous: the 500-buyer drop on two shared cores must not trip it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const TOKEN_TTL_SECS: u64 = 3600;
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

// ---------------------------------------------------------------------------------------
// Unique names
// ---------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unique across tests, processes and runs: pid + counter + clock.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos()
        % 1_000_000_000_000;
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

pub fn unique_email(prefix: &str) -> String {
    format!("{}@example.test", unique(prefix))
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

enum TestDb {
    Sqlite {
        path: PathBuf,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    /// `None` when the backend is not available and skipping is allowed.
    async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique("stampede_test")));
                let url = format!("sqlite://{}", path.display());
                Some(TestDb::Sqlite { path, url })
            }
            Backend::Postgres => {
                let admin_url = match std::env::var("STAMPEDE_TEST_PG_URL") {
                    Ok(url) if !url.trim().is_empty() => url,
                    _ => {
                        if std::env::var("STAMPEDE_TEST_REQUIRE_PG").as_deref() == Ok("1") {
                            panic!(
                                "STAMPEDE_TEST_REQUIRE_PG=1 but STAMPEDE_TEST_PG_URL is not set: \
                                 the PostgreSQL half of the suite must not be skipped"
                            );
                        }
                        eprintln!(
                            "skipped: PostgreSQL variant (set STAMPEDE_TEST_PG_URL to run it)"
                        );
                        return None;
                    }
                };
                let name = unique("stampede_test");
                pg_execute(&admin_url, &format!("CREATE DATABASE \"{name}\"")).await;
                let mut url =
                    reqwest::Url::parse(&admin_url).expect("STAMPEDE_TEST_PG_URL is not a URL");
                url.set_path(&format!("/{name}"));
                Some(TestDb::Postgres {
                    admin_url,
                    name,
                    url: url.to_string(),
                })
            }
        }
    }

    fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    /// Best effort: a leftover database is not a test failure, but it is reported.
    async fn destroy(self) {
        match self {
            TestDb::Sqlite { path, .. } => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(&file);
                }
            }
            TestDb::Postgres {
                admin_url, name, ..
            } => {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let dropped = AssertUnwindSafe(pg_execute(&admin_url, &sql))
                    .catch_unwind()
                    .await;
                if dropped.is_err() {
                    eprintln!("warning: could not drop test database {name}");
                }
            }
        }
    }
}

async fn pg_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at STAMPEDE_TEST_PG_URL: {e}"));
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Runs SQL straight against the test database, behind the server's back (used only to
/// prove that `verify` notices tampering).
pub async fn execute_sql(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    match app.backend {
        Backend::Postgres => pg_execute(&app.database_url, sql).await,
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", app.database_url));
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running a test
// ---------------------------------------------------------------------------------------

fn init_tracing() {
    // Server logs only on request (`TEST_LOG=stampede=debug`): they drown test output.
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Creates the database, starts the server, runs `body`, then stops the server and drops
/// the database whatever happened, and only then re-raises a panic of the body.
pub async fn run_on<C, F, Fut>(backend: Backend, configure: C, body: F)
where
    C: FnOnce(&mut Config),
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    init_tracing();
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let mut config = Config {
        database_url: db.url().into(),
        http_addr: "127.0.0.1:0".parse().expect("socket address"),
        // A test drives one account far faster than a person would (an admin creating 50
        // products in a blink); tests/api/rate_limits.rs sets the limits it checks.
        rate_limit_user_per_sec: 0,
        ..Config::default()
    };
    configure(&mut config);

    let clock = OffsetClock::new();
    let started = AssertUnwindSafe(start(config, backend, db.url().to_owned(), clock))
        .catch_unwind()
        .await;
    let (app, running) = match started {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            db.destroy().await;
            panic!("Server::bind failed on {backend:?}: {e:#}");
        }
        Err(panic) => {
            db.destroy().await;
            std::panic::resume_unwind(panic);
        }
    };

    let outcome = AssertUnwindSafe(body(app)).catch_unwind().await;
    let stopped = running.stop().await;
    db.destroy().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    if let Err(problem) = stopped {
        panic!("{problem}");
    }
}

struct Running {
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) -> Result<(), String> {
        let _ = self.shutdown.send(());
        let abort = self.handle.abort_handle();
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.handle).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("Server::run returned an error: {e:#}")),
            Ok(Err(join)) => Err(format!("Server::run panicked: {join}")),
            Err(_) => {
                abort.abort();
                Err(format!(
                    "server did not shut down within {SHUTDOWN_TIMEOUT:?}"
                ))
            }
        }
    }
}

async fn start(
    config: Config,
    backend: Backend,
    database_url: String,
    clock: Arc<OffsetClock>,
) -> anyhow::Result<(TestApp, Running)> {
    let limits = Limits {
        hold_ttl_secs: config.hold_ttl_secs,
        access_token_ttl_secs: config.access_token_ttl_secs,
        body_limit_bytes: config.body_limit_bytes,
    };
    let server = Server::bind_with_clock(config, clock.clone()).await?;
    let addr = server.local_addr();
    let state = server.state();
    let (shutdown, signal) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = signal.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let app = TestApp {
        root: format!("http://{addr}"),
        client,
        state,
        backend,
        database_url,
        limits,
        clock,
        admin: Arc::new(OnceCell::new()),
    };
    Ok((app, Running { shutdown, handle }))
}

/// A further server of the same deployment, started by a test (see [`TestApp::another_node`]).
pub struct Node {
    running: Running,
}

impl Node {
    pub async fn stop(self) {
        if let Err(problem) = self.running.stop().await {
            panic!("second node: {problem}");
        }
    }
}

impl TestApp {
    /// Another node on the same database, with this node's configuration (so the same Redis
    /// and key prefix, if any) adjusted by `configure`. Stop it before the test ends.
    pub async fn another_node(&self, configure: impl FnOnce(&mut Config)) -> (TestApp, Node) {
        let mut config = (*self.state.config).clone();
        config.http_addr = "127.0.0.1:0".parse().expect("socket address");
        configure(&mut config);
        // One deployment, one time: the nodes share the test's clock.
        let clock = self.clock.clone();
        let (app, running) = start(config, self.backend, self.database_url.clone(), clock)
            .await
            .unwrap_or_else(|e| panic!("second node failed to start: {e:#}"));
        let app = TestApp {
            admin: self.admin.clone(),
            ..app
        };
        (app, Node { running })
    }
}

// ---------------------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------------------

/// The configuration values tests reason about.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hold_ttl_secs: u64,
    pub access_token_ttl_secs: u64,
    pub body_limit_bytes: usize,
}

/// A handle on one running server. Cheap to clone into spawned tasks.
#[derive(Clone)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    pub database_url: String,
    pub limits: Limits,
    /// The servers' clock: a test skips past a deadline with `app.clock.advance(…)` instead
    /// of sleeping until it.
    pub clock: Arc<OffsetClock>,
    admin: Arc<OnceCell<String>>,
}

/// Stock levels as the API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

impl TestApp {
    /// `/orders` → `http://…/api/v1/orders`
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.root)
    }

    /// For paths outside `/api/v1` (ops endpoints).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.api(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        read_reply(response).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::POST, path, token, None, Some(body)).await
    }

    /// A POST without a body (logout, cancel).
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::POST, path, token, None, None).await
    }

    pub async fn post_idem(
        &self,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: &Value,
    ) -> Reply {
        self.send(Method::POST, path, token, Some(key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(Method::PATCH, path, token, None, Some(body))
            .await
    }

    // --- accounts ------------------------------------------------------------------------

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let reply = self
            .post(
                "/auth/login",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        expect(&reply, 200).clone()
    }

    /// An admin's access token, created on first use.
    pub async fn admin_token(&self) -> String {
        self.admin
            .get_or_init(|| async {
                let email = unique_email("admin");
                stampede::app::accounts::create_user(
                    &*self.state.store,
                    self.state.clock.now(),
                    &email,
                    PASSWORD.to_owned(),
                    Role::Admin,
                    None,
                )
                .await
                .expect("accounts::create_user");
                str_of(&self.login(&email, PASSWORD).await, "access_token").to_owned()
            })
            .await
            .clone()
    }

    pub async fn create_partner(&self, name: &str, commission_rate_bps: i64) -> i64 {
        let admin = self.admin_token().await;
        let body = json!({"name": name, "commission_rate_bps": commission_rate_bps});
        let reply = self.post("/partners", Some(&admin), &body).await;
        int(expect(&reply, 201), "id")
    }

    /// A new seller of `partner_id`, signed in; returns its access token.
    pub async fn create_seller(&self, partner_id: i64) -> String {
        let admin = self.admin_token().await;
        let email = unique_email("seller");
        let body = json!({"email": email, "password": PASSWORD});
        let reply = self
            .post(
                &format!("/partners/{partner_id}/sellers"),
                Some(&admin),
                &body,
            )
            .await;
        expect(&reply, 201);
        str_of(&self.login(&email, PASSWORD).await, "access_token").to_owned()
    }

    /// `n` distinct buyers' access tokens, bulk-provisioned.
    pub async fn buyers(&self, n: usize) -> Vec<String> {
        let state = &self.state;
        let now = state.clock.now();
        let tokens = stampede::app::accounts::provision_buyers(
            &*state.store,
            &state.auth,
            now,
            n,
            TOKEN_TTL_SECS,
        )
        .await
        .expect("accounts::provision_buyers");
        assert_eq!(
            tokens.len(),
            n,
            "provision_buyers returned the wrong number of tokens"
        );
        tokens
    }

    pub async fn buyer(&self) -> String {
        self.buyers(1).await.remove(0)
    }

    pub async fn user_id(&self, token: &str) -> i64 {
        int(expect(&self.get("/me", Some(token)).await, 200), "id")
    }

    // --- catalog -------------------------------------------------------------------------

    /// POSTs `/products` and insists on 201; returns the product.
    pub async fn create_product(&self, token: &str, body: &Value) -> Value {
        expect(&self.post("/products", Some(token), body).await, 201).clone()
    }

    /// A product of `partner_id`, created by the admin; returns its id.
    pub async fn product_of(
        &self,
        partner_id: i64,
        price: i64,
        stock: i64,
        max_per_user: Option<i64>,
    ) -> i64 {
        let admin = self.admin_token().await;
        let mut body = json!({
            "name": unique("product"),
            "price": price,
            "stock": stock,
            "partner_id": partner_id,
        });
        if let Some(limit) = max_per_user {
            body["max_per_user"] = json!(limit);
        }
        int(&self.create_product(&admin, &body).await, "id")
    }

    /// A product of a new partner; returns its id.
    pub async fn simple_product(&self, price: i64, stock: i64) -> i64 {
        let partner = self.create_partner(&unique("partner"), 1000).await;
        self.product_of(partner, price, stock, None).await
    }

    pub async fn stock(&self, product_id: i64) -> Stock {
        let admin = self.admin_token().await;
        let reply = self
            .get(&format!("/products/{product_id}/stock"), Some(&admin))
            .await;
        let body = expect(&reply, 200);
        assert_eq!(
            int(body, "product_id"),
            product_id,
            "stock of the wrong product: {body}"
        );
        let stock = Stock {
            on_hand: int(body, "on_hand"),
            held: int(body, "held"),
            available: int(body, "available"),
        };
        assert_eq!(
            stock.available,
            stock.on_hand - stock.held,
            "available != on_hand - held: {body}"
        );
        stock
    }

    /// Every movement of the product, newest first, across all pages.
    pub async fn movements(&self, product_id: i64) -> Vec<Value> {
        let admin = self.admin_token().await;
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("/products/{product_id}/movements?page={page}&size=100");
            let reply = self.get(&path, Some(&admin)).await;
            let body = expect(&reply, 200);
            let items = array(body, "items");
            let total = int(body, "total") as usize;
            all.extend(items.iter().cloned());
            if items.is_empty() || all.len() >= total {
                assert_eq!(
                    all.len(),
                    total,
                    "movement pages do not add up to total: {body}"
                );
                break;
            }
        }
        all
    }

    pub async fn movements_of_kind(&self, product_id: i64, kind: &str) -> Vec<Value> {
        self.movements(product_id)
            .await
            .into_iter()
            .filter(|m| m["kind"] == kind)
            .collect()
    }

    // --- orders --------------------------------------------------------------------------

    pub async fn place_order(&self, token: &str, items: &[(i64, i64)]) -> Reply {
        self.place_order_keyed(token, &unique("key"), items).await
    }

    pub async fn place_order_keyed(&self, token: &str, key: &str, items: &[(i64, i64)]) -> Reply {
        self.post_idem("/orders", Some(token), key, &order_body(items))
            .await
    }

    /// Places an order and insists on 201; returns the order.
    pub async fn order_ok(&self, token: &str, items: &[(i64, i64)]) -> Value {
        expect(&self.place_order(token, items).await, 201).clone()
    }

    pub async fn order(&self, token: &str, order_id: i64) -> Value {
        expect(
            &self.get(&format!("/orders/{order_id}"), Some(token)).await,
            200,
        )
        .clone()
    }

    /// Pays the exact payable amount with an approving payment key.
    pub async fn pay(&self, token: &str, order: &Value) -> Reply {
        let body = json!({"payment_key": unique("pk_ok"), "amount": int(order, "payable")});
        self.post(
            &format!("/orders/{}/pay", int(order, "id")),
            Some(token),
            &body,
        )
        .await
    }

    pub async fn cancel(&self, token: &str, order_id: i64) -> Reply {
        self.post_empty(&format!("/orders/{order_id}/cancel"), Some(token))
            .await
    }

    /// `total` of the caller's `GET /orders`.
    pub async fn order_count(&self, token: &str) -> i64 {
        int(
            expect(&self.get("/orders?page=1&size=100", Some(token)).await, 200),
            "total",
        )
    }

    // --- ledger check --------------------------------------------------------------------

    pub async fn assert_verify_clean(&self) {
        let report = stampede::app::audit::run(&*self.state.store)
            .await
            .expect("verify::run");
        assert!(
            report.is_clean(),
            "verify found problems: {:#?}",
            report.problems
        );
    }

    // --- live updates --------------------------------------------------------------------

    /// Opens `GET /orders/{id}/events`; returns the raw response so callers can check the
    /// status before reading events.
    pub async fn subscribe(&self, token: &str, order_id: i64) -> reqwest::Response {
        self.client
            .get(self.api(&format!("/orders/{order_id}/events")))
            .bearer_auth(token)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .expect("subscribe to order events")
    }
}

pub fn order_body(items: &[(i64, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
        .collect();
    json!({ "items": items })
}

pub async fn read_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let bytes = response.bytes().await.expect("read response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}

// ---------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------

/// Insists on `status`; returns the body.
#[track_caller]
pub fn expect(reply: &Reply, status: u16) -> &Value {
    assert_eq!(
        reply.0.as_u16(),
        status,
        "expected HTTP {status}, got {} with body {}",
        reply.0,
        reply.1
    );
    &reply.1
}

/// Insists on `status` and the documented error body `{"error":{"code","message"}}`.
#[track_caller]
pub fn expect_error(reply: &Reply, status: u16, code: &str) {
    let body = expect(reply, status);
    assert_eq!(
        body["error"]["code"], code,
        "wrong error code (HTTP {status}): {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

#[track_caller]
pub fn int(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .unwrap_or_else(|| panic!("`{key}` is not an integer in {value}"))
}

#[track_caller]
pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}

#[track_caller]
pub fn array<'a>(value: &'a Value, key: &str) -> &'a Vec<Value> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array in {value}"))
}

#[track_caller]
pub fn parse_time(value: &Value, key: &str) -> time::OffsetDateTime {
    let raw = str_of(value, key);
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("`{key}` = {raw:?} is not RFC 3339 ({e}) in {value}"))
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fires every request at once: each task waits on a barrier before sending, so the
/// server sees them together rather than in the order they were spawned.
pub async fn all_at_once<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<JoinHandle<T>> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let request = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                request.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.expect("request task panicked"));
    }
    results
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------

/// Reads `data:` payloads of an event stream, skipping comments and keep-alives.
pub struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event's data as JSON, or a failure after `within`.
    pub async fn next_event(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.take_event() {
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {within:?}"))
                .expect("reading the event stream")
                .expect("the event stream ended");
            // CR is only ever part of a CRLF line ending here; dropping it leaves LF lines.
            self.buffer
                .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        }
    }

    fn take_event(&mut self) -> Option<Value> {
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("SSE is UTF-8");
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let joined = data.join("\n");
            return Some(
                serde_json::from_str(&joined)
                    .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {joined}")),
            );
        }
        None
    }
}
