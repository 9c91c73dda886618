//! Request timeouts and graceful shutdown.

use crate::helpers::*;
use serde_json::json;
use stampede::config::Config;
use stampede::wiring::Server;
use std::time::Duration;

// Login hashes with Argon2id (tens of milliseconds), far beyond a 1 ms budget.
backend_tests!(
    slow_requests_get_408,
    config = |c| { c.request_timeout_ms = 1 },
    |app| async move {
        let reply = app
            .post(
                "/auth/login",
                None,
                &json!({"email": "nobody@example.com", "password": "whatever-1"}),
            )
            .await;
        expect_error(&reply, 408, "request_timeout");
    }
);

/// Shutdown lets an in-flight request finish, ends live streams, and then returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_is_graceful() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("stampede-shutdown")));
    let config = Config {
        database_url: format!("sqlite://{}", path.display()).into(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let root = format!("http://{}", server.local_addr());
    let state = server.state();
    let admin = stampede::app::accounts::create_user(
        state.store.as_ref(),
        state.clock.now(),
        "ops@example.com",
        "ops-password-1".to_owned(),
        stampede::domain::Role::Admin,
        None,
    )
    .await
    .unwrap();
    assert!(admin > 0);
    let (stop, signal) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = signal.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let login = |client: reqwest::Client, root: String| async move {
        client
            .post(format!("{root}/api/v1/auth/login"))
            .json(&json!({"email": "ops@example.com", "password": "ops-password-1"}))
            .send()
            .await
    };
    let token: serde_json::Value = login(client.clone(), root.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    // A live stream on an order would otherwise hold shutdown open forever: use a buyer.
    let now = state.clock.now();
    let buyers =
        stampede::app::accounts::provision_buyers(state.store.as_ref(), &state.auth, now, 1, 600)
            .await
            .unwrap();
    let partner = client
        .post(format!("{root}/api/v1/partners"))
        .bearer_auth(&token)
        .json(&json!({"name": "P", "commission_rate_bps": 0}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let product = client
        .post(format!("{root}/api/v1/products"))
        .bearer_auth(&token)
        .json(&json!({"name": "X", "price": 100, "stock": 1, "partner_id": partner["id"]}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let order = client
        .post(format!("{root}/api/v1/orders"))
        .bearer_auth(&buyers[0])
        .header("idempotency-key", "shutdown-1")
        .json(&json!({"items": [{"product_id": product["id"], "quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let mut stream = client
        .get(format!("{root}/api/v1/orders/{}/events", order["id"]))
        .bearer_auth(&buyers[0])
        .send()
        .await
        .unwrap();
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream opens with the current status"
    );

    let in_flight = tokio::spawn(login(client.clone(), root.clone()));
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.send(()).unwrap();

    let finished = in_flight
        .await
        .unwrap()
        .expect("the in-flight login completes");
    assert_eq!(finished.status().as_u16(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream ends on shutdown");
    let served = tokio::time::timeout(Duration::from_secs(10), running).await;
    served
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        login(client, root).await.is_err(),
        "no new connections after shutdown"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
