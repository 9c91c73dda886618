//! Scale-out with Redis (`STAMPEDE_REDIS_URL`): several nodes on one database share the
//! availability gate, wake each other for live updates, share the deny-list, and keep
//! selling correctly when Redis goes away. Uses the run's Redis
//! (`STAMPEDE_TEST_REDIS_URL`, through `redis_tests!`), each test under its own key prefix,
//! or a private `redis-server` that the test kills.

use crate::helpers::*;
use serde_json::json;
use stampede::cluster::gate::{Admit, StockSeen};
use std::time::{Duration, Instant};

/// Long enough that a test passing within a fraction of it was not helped by polling.
const SLOW_POLL_MS: u64 = 30_000;
/// How fast a cross-node notice must arrive to count as "at once".
const AT_ONCE: Duration = Duration::from_secs(3);

/// A `redis-server` of the test's own, on a free port, killed when dropped.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    port: u16,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis { child: None, port };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services.sh redis)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(
            Duration::from_secs(10),
            "private redis-server to listen",
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
            },
        )
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

redis_tests!(
    status_change_on_one_node_reaches_a_stream_on_another_at_once,
    config = |c| {
        c.outbox_poll_ms = SLOW_POLL_MS;
    },
    |app| async move {
        let (other, node) = app.another_node(|_| {}).await;
        let product = app.simple_product(10_000, 5).await;
        let buyer = app.buyer().await;
        let order = app.order_ok(&buyer, &[(product, 1)]).await;
        let mut stream = SseReader::new(app.subscribe(&buyer, int(&order, "id")).await);
        assert_eq!(
            stream.next_event(AT_ONCE).await["status"],
            "pending_payment"
        );

        let started = Instant::now();
        expect(&other.pay(&buyer, &order).await, 200);
        let event = stream.next_event(AT_ONCE).await;
        assert_eq!(event["status"], "paid", "{event}");
        assert!(
            started.elapsed() < AT_ONCE,
            "took {:?} with polling every {SLOW_POLL_MS} ms",
            started.elapsed()
        );
        node.stop().await;
    }
);

redis_tests!(the_gate_counts_units_across_nodes, |app| async move {
    let (other, node) = app.another_node(|_| {}).await;
    let (a, b) = (&app.state.cluster.gate, &other.state.cluster.gate);
    let product = app.simple_product(1_000, 3).await;
    assert_eq!(a.admit("buyer-1:key-1", &[(product, 2)]).await, Admit::Pass);
    // A retry of that attempt on the other node replays instead of counting again.
    assert_eq!(
        b.admit("buyer-1:key-1", &[(product, 2)]).await,
        Admit::Again
    );
    assert_eq!(
        b.admit(&unique("attempt"), &[(product, 1)]).await,
        Admit::Pass
    );
    assert_eq!(
        b.admit(&unique("attempt"), &[(product, 1)]).await,
        Admit::SoldOut {
            product_id: product
        },
        "three units admitted between two nodes: the fourth must be refused"
    );
    // An attempt the database did not place gives its units back.
    a.settle(Admit::Pass, &[(product, 1)], None).await;
    assert_eq!(
        b.admit(&unique("attempt"), &[(product, 1)]).await,
        Admit::Pass
    );
    assert!(matches!(
        a.admit(&unique("attempt"), &[(product, 1)]).await,
        Admit::SoldOut { .. }
    ));

    // Stock coming back reaches the gate before the inbound call answers (nothing was
    // placed: the database has 3 + 4 available).
    let admin = app.admin_token().await;
    let inbound = app
        .post(
            &format!("/products/{product}/inbound"),
            Some(&admin),
            &json!({"quantity": 4}),
        )
        .await;
    expect(&inbound, 200);
    assert_eq!(
        b.admit(&unique("attempt"), &[(product, 4)]).await,
        Admit::Pass
    );
    assert!(matches!(
        a.admit(&unique("attempt"), &[(product, 4)]).await,
        Admit::SoldOut { .. }
    ));

    // An older event never overwrites a newer one; a newer one resets the counter.
    let newest = app.state.store.last_event_id().await.unwrap();
    let seen = |event_id, available| StockSeen {
        event_id,
        product_id: product,
        available,
    };
    b.observe(&[seen(newest - 1, 100)]).await;
    assert!(matches!(
        a.admit(&unique("attempt"), &[(product, 4)]).await,
        Admit::SoldOut { .. }
    ));
    b.observe(&[seen(newest + 1_000, 10)]).await;
    assert_eq!(
        a.admit(&unique("attempt"), &[(product, 10)]).await,
        Admit::Pass
    );
    node.stop().await;
});

redis_tests!(
    a_logout_announced_through_redis_is_refused_everywhere_at_once,
    config = |c| {
        c.outbox_poll_ms = SLOW_POLL_MS;
    },
    |app| async move {
        let mut redis = raw_redis(&app).await;
        let prefix = app.state.config.redis_prefix.clone();
        let (first, second) = (app.buyer().await, app.buyer().await);
        let jti = |token: &str| app.state.auth.verify_access(token).unwrap().jti;
        let (first_jti, second_jti) = (jti(&first), jti(&second));

        // A node that logs out writes the key with the token's remaining life.
        expect(&app.post_empty("/auth/logout", Some(&first)).await, 204);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}revoked:{first_jti}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 0, "revocation key missing or without expiry: {ttl}");

        // A revocation that exists only in Redis (no outbox event): published, it is
        // refused at once; stored, a node starting later loads it.
        let (other, node) = app.another_node(|_| {}).await;
        expect(&other.get("/me", Some(&second)).await, 200);
        let expires = stampede::clock::Clock::now(&stampede::clock::SystemClock)
            .plus_secs(600)
            .millis();
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(format!("{prefix}revoked:{second_jti}"))
            .arg(expires)
            .arg("EX")
            .arg(600)
            .cmd("PUBLISH")
            .arg(format!("{prefix}revoked"))
            .arg(format!("{second_jti} {expires}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        eventually(AT_ONCE, "the published revocation", || async {
            (other.get("/me", Some(&second)).await.0 == 401).then_some(())
        })
        .await;
        let (third, late) = app.another_node(|_| {}).await;
        expect_error(&third.get("/me", Some(&second)).await, 401, "invalid_token");
        late.stop().await;
        node.stop().await;
    }
);

/// Places one order per token, all at once; returns the HTTP statuses.
async fn drop_wave(app: &TestApp, tokens: &[String], product: i64) -> Vec<u16> {
    let app = app.clone();
    let tokens = tokens.to_vec();
    all_at_once(tokens.len(), move |i| {
        let (app, token) = (app.clone(), tokens[i].clone());
        async move { app.place_order(&token, &[(product, 1)]).await.0.as_u16() }
    })
    .await
}

// The first node runs without Redis and the second on a private `redis-server` this test
// kills and restarts; it needs Redis in the run for the `redis-server` binary that
// `scripts/services.sh redis` installs.
backend_tests!(
    redis_dying_mid_drop_never_oversells,
    needs = [Redis],
    |app| async move {
        const BUYERS: usize = 300;
        const UNITS: i64 = 50;
        let mut redis = PrivateRedis::start().await;
        let (node, handle) = app
            .another_node(|c| {
                c.redis_url = Some(redis.url().into());
                c.redis_probe_ms = 100;
                c.redis_timeout_ms = 200;
            })
            .await;
        assert_eq!(metric(&node, "redis_up").await, 1.0, "node did not connect");
        let product = app.simple_product(20_000, UNITS).await;
        let buyers = app.buyers(BUYERS).await;
        expect(&node.get(&format!("/products/{product}"), None).await, 200);

        let mut statuses = drop_wave(&node, &buyers[..BUYERS / 2], product).await;
        redis.kill();
        statuses.extend(drop_wave(&node, &buyers[BUYERS / 2..], product).await);

        let sold = statuses.iter().filter(|s| **s == 201).count() as i64;
        let refused = statuses.iter().filter(|s| **s == 409).count();
        assert_eq!(sold, UNITS, "sold {sold} of {UNITS}: {statuses:?}");
        assert_eq!(refused, BUYERS - UNITS as usize, "{statuses:?}");
        let stock = app.stock(product).await;
        assert_eq!(
            (stock.on_hand, stock.held, stock.available),
            (UNITS, UNITS, 0)
        );
        app.assert_verify_clean().await;

        // The node works on without Redis: reads, the gate, logout.
        assert_eq!(metric(&node, "redis_up").await, 0.0);
        assert!(metric(&node, "redis_errors_total").await >= 1.0);
        let listed = node.get(&format!("/products/{product}"), None).await;
        assert_eq!(int(expect(&listed, 200), "available"), 0);
        node.state.events.caught_up().await;
        let gate = node.state.cluster.gate.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            gate.admit(&unique("attempt"), &[(product, 1)]),
        )
        .await;
        // Sold out, as far as this node's own memory goes: it has not seen the attempts
        // Redis admitted, so placement asks the database before refusing a retry.
        assert_eq!(
            answer.expect("gate answers without Redis"),
            Admit::Unsure {
                product_id: product
            }
        );
        expect(
            &node.post_empty("/auth/logout", Some(&buyers[0])).await,
            204,
        );

        // And finds Redis again when it comes back.
        redis.restart().await;
        eventually(
            Duration::from_secs(10),
            "redis_up after restart",
            || async { (metric(&node, "redis_up").await == 1.0).then_some(()) },
        )
        .await;
        handle.stop().await;
    }
);
