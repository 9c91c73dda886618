//! Abuse limits (issue 12): failed logins per account and per address, the bound on
//! password hashes in progress, sign-ups per address, live streams per user, the client
//! address taken from `X-Forwarded-For` only behind a trusted proxy, and bounded metric
//! labels.

use crate::helpers::*;
use crate::waitlist::my_events;
use reqwest::Method;
use serde_json::json;
use stampede::config::TrustedProxies;
use std::time::Duration;

/// A reply and its `Retry-After`, in seconds.
type Answer = (Reply, Option<u64>);

/// POSTs `body` to `/api/v1{path}`, claiming to come from `forwarded_for` when given.
async fn post_from(
    app: &TestApp,
    path: &str,
    forwarded_for: Option<&str>,
    body: &serde_json::Value,
) -> Answer {
    let mut request = app.client.post(app.api(path)).json(body);
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    let response = request.send().await.expect("request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (read_reply(response).await, retry_after)
}

async fn login_from(app: &TestApp, email: &str, password: &str, from: Option<&str>) -> Answer {
    let body = json!({"email": email, "password": password});
    post_from(app, "/auth/login", from, &body).await
}

async fn signup_from(app: &TestApp, email: &str, from: Option<&str>) -> Answer {
    let body = json!({"email": email, "password": PASSWORD});
    post_from(app, "/auth/signup", from, &body).await
}

/// A buyer signed up through the API (from `from`); returns the email.
async fn buyer_email(app: &TestApp, from: &str) -> String {
    let email = unique_email("buyer");
    expect(&signup_from(app, &email, Some(from)).await.0, 201);
    email
}

fn trusting(text: &str) -> TrustedProxies {
    TrustedProxies::parse(text).expect("proxies")
}

fn refused(app: &TestApp, reason: &'static str) -> u64 {
    let labels = stampede::metrics::AbuseLabels { reason };
    app.state.metrics.abuse_refused.get_or_create(&labels).get()
}

backend_tests!(
    failed_logins_lock_an_account_from_any_address_before_any_hash,
    config = |c| {
        c.login_failures_max = 3;
        c.password_hash_concurrency = 1;
        c.trusted_proxies = trusting("127.0.0.1");
    },
    |app| async move {
        let email = buyer_email(&app, "198.51.100.1").await;
        // Three guesses, each from another address: the account's budget is spent.
        for n in 1..=3 {
            let from = format!("203.0.113.{n}");
            let (reply, _) = login_from(&app, &email, "wrong password", Some(&from)).await;
            expect_error(&reply, 401, "invalid_credentials");
        }
        let (locked, retry_after) = login_from(&app, &email, PASSWORD, Some("203.0.113.50")).await;
        expect_error(&locked, 429, "too_many_attempts");
        let retry_after = retry_after.expect("Retry-After");
        assert!((890..=900).contains(&retry_after), "{retry_after}");

        // The same for an email nobody registered: the answers do not tell them apart.
        let nobody = unique_email("nobody");
        for n in 1..=3 {
            let from = format!("203.0.113.{}", 10 + n);
            let (reply, _) = login_from(&app, &nobody, PASSWORD, Some(&from)).await;
            expect_error(&reply, 401, "invalid_credentials");
        }
        let (unknown, _) = login_from(&app, &nobody, PASSWORD, Some("203.0.113.50")).await;
        assert_eq!(unknown, locked, "same status and body");

        // Refused before Argon2: with the one hash permit taken, a locked-out login is still
        // 429, where a login that would be checked is 503.
        let held = app
            .state
            .auth
            .hashing
            .try_permit()
            .expect("the only permit");
        let (still, _) = login_from(&app, &email, PASSWORD, Some("203.0.113.51")).await;
        expect_error(&still, 429, "too_many_attempts");
        let other = buyer_email_unhashed(&app).await;
        let (busy, _) = login_from(&app, &other, PASSWORD, Some("203.0.113.51")).await;
        expect_error(&busy, 503, "overloaded");
        drop(held);

        // Other accounts, from the same addresses, are not locked.
        let (fine, _) = login_from(&app, &other, PASSWORD, Some("203.0.113.50")).await;
        expect(&fine, 200);
        assert!(refused(&app, "login_account") >= 3);
    }
);

/// A buyer created behind the API's back, so that no hash permit is needed to make it.
async fn buyer_email_unhashed(app: &TestApp) -> String {
    let email = unique_email("other");
    let role = stampede::domain::Role::Buyer;
    let now = app.state.clock.now();
    stampede::app::accounts::create_user(
        &*app.state.store,
        now,
        &email,
        PASSWORD.into(),
        role,
        None,
    )
    .await
    .expect("create_user");
    email
}

backend_tests!(
    a_good_login_forgets_the_accounts_failures,
    config = |c| {
        c.login_failures_max = 3;
        c.trusted_proxies = trusting("127.0.0.1");
    },
    |app| async move {
        let email = buyer_email(&app, "198.51.100.1").await;
        for round in 0..2 {
            for n in 1..=2 {
                let from = format!("203.0.113.{}", round * 10 + n);
                let (reply, _) = login_from(&app, &email, "wrong password", Some(&from)).await;
                expect_error(&reply, 401, "invalid_credentials");
            }
            let from = format!("203.0.113.{}", round * 10 + 9);
            expect(
                &login_from(&app, &email, PASSWORD, Some(&from)).await.0,
                200,
            );
        }
    }
);

backend_tests!(
    failed_logins_from_one_address_lock_it_whatever_x_forwarded_for_says,
    config = |c| c.login_failures_max = 3,
    |app| async move {
        // No trusted proxy: the header is the client's own say, and changes nothing.
        for n in 1..=3 {
            let from = format!("203.0.113.{n}");
            let (reply, _) = login_from(&app, &unique_email("guess"), PASSWORD, Some(&from)).await;
            expect_error(&reply, 401, "invalid_credentials");
        }
        let fresh = unique_email("guess");
        let (reply, retry_after) = login_from(&app, &fresh, PASSWORD, Some("192.0.2.200")).await;
        expect_error(&reply, 429, "too_many_attempts");
        assert!(retry_after.is_some_and(|s| s > 0));
        assert!(refused(&app, "login_ip") >= 1);
    }
);

/// Status of `GET /api/v1/products` claiming to come from `from`.
async fn products_from(app: &TestApp, from: &str) -> u16 {
    let request = app.client.get(app.api("/products"));
    let response = request
        .header("x-forwarded-for", from)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

backend_tests!(
    a_spoofed_x_forwarded_for_does_not_escape_the_per_ip_rate_limit,
    config = |c| {
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 2;
    },
    |app| async move {
        let statuses = [
            products_from(&app, "198.51.100.1").await,
            products_from(&app, "198.51.100.2").await,
            products_from(&app, "198.51.100.3").await,
        ];
        assert_eq!(statuses, [200, 200, 429]);
    }
);

backend_tests!(
    behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget,
    config = |c| {
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 2;
        c.trusted_proxies = trusting("127.0.0.0/8");
    },
    |app| async move {
        assert_eq!(products_from(&app, "198.51.100.1").await, 200);
        // The left-most entry is the client's own claim; the right-most is what our proxy
        // saw, and that is who it is.
        assert_eq!(products_from(&app, "10.9.9.9, 198.51.100.1").await, 200);
        assert_eq!(products_from(&app, "198.51.100.1").await, 429);
        assert_eq!(products_from(&app, "198.51.100.2").await, 200);
        assert_eq!(products_from(&app, "198.51.100.2").await, 200);
        assert_eq!(products_from(&app, "10.8.8.8, 198.51.100.2").await, 429);
    }
);

backend_tests!(
    password_hashes_beyond_the_bound_are_refused_at_once,
    config = |c| c.password_hash_concurrency = 1,
    |app| async move {
        let email = buyer_email(&app, "198.51.100.1").await;
        // One hash in flight (its permit held here): the next login and sign-up are refused
        // without waiting for it, and change nothing.
        let held = app
            .state
            .auth
            .hashing
            .try_permit()
            .expect("the only permit");
        let started = std::time::Instant::now();
        let (busy, retry_after) = login_from(&app, &email, PASSWORD, None).await;
        expect_error(&busy, 503, "overloaded");
        assert_eq!(retry_after, Some(1));
        let newcomer = unique_email("newcomer");
        let (busy, retry_after) = signup_from(&app, &newcomer, None).await;
        expect_error(&busy, 503, "overloaded");
        assert_eq!(retry_after, Some(1));
        assert!(started.elapsed() < Duration::from_secs(5), "not queued");
        assert!(refused(&app, "password_hash_busy") >= 2);

        drop(held);
        expect(&login_from(&app, &email, PASSWORD, None).await.0, 200);
        expect(&signup_from(&app, &newcomer, None).await.0, 201);
    }
);

backend_tests!(
    signups_per_address_are_limited,
    config = |c| {
        c.signups_per_ip_max = 3;
        c.trusted_proxies = trusting("127.0.0.1");
    },
    |app| async move {
        // Bad input is refused before it is counted.
        let bad = json!({"email": "not-an-email", "password": PASSWORD});
        let (invalid, _) = post_from(&app, "/auth/signup", Some("198.51.100.7"), &bad).await;
        expect_error(&invalid, 422, "validation_failed");
        for _ in 0..3 {
            buyer_email(&app, "198.51.100.7").await;
        }
        let email = unique_email("fourth");
        let (reply, retry_after) = signup_from(&app, &email, Some("198.51.100.7")).await;
        expect_error(&reply, 429, "too_many_attempts");
        let retry_after = retry_after.expect("Retry-After");
        assert!((3590..=3600).contains(&retry_after), "{retry_after}");
        // Nothing was created, and another address has its own budget.
        expect(
            &signup_from(&app, &email, Some("198.51.100.8")).await.0,
            201,
        );
        assert!(refused(&app, "signup_ip") >= 1);
    }
);

redis_tests!(
    failed_logins_and_sign_ups_are_counted_across_nodes,
    config = |c| {
        c.login_failures_max = 3;
        c.signups_per_ip_max = 2;
        c.trusted_proxies = trusting("127.0.0.1");
    },
    |app| async move {
        let (other, node) = app.another_node(|_| {}).await;
        let email = buyer_email(&app, "198.51.100.1").await;
        for (n, node) in [&app, &other, &app].into_iter().enumerate() {
            let from = format!("203.0.113.{n}");
            let (reply, _) = login_from(node, &email, "wrong password", Some(&from)).await;
            expect_error(&reply, 401, "invalid_credentials");
        }
        let (locked, _) = login_from(&other, &email, PASSWORD, Some("203.0.113.9")).await;
        expect_error(&locked, 429, "too_many_attempts");

        // One sign-up was spent by `buyer_email` on the first node.
        expect(
            &signup_from(&other, &unique_email("b"), Some("198.51.100.1"))
                .await
                .0,
            201,
        );
        let (reply, _) = signup_from(&app, &unique_email("c"), Some("198.51.100.1")).await;
        expect_error(&reply, 429, "too_many_attempts");
        node.stop().await;
    }
);

/// Opens `GET /api/v1{path}` as a stream; the raw response.
async fn open_stream(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.api(path))
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("open a stream")
}

backend_tests!(a_user_holds_at_most_five_live_streams, |app| async move {
    let buyer = app.buyer().await;
    let user = app.user_id(&buyer).await;
    let product = app.simple_product(1000, 5).await;
    let order = int(&app.order_ok(&buyer, &[(product, 1)]).await, "id");
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(my_events(&app, &buyer).await);
    }
    let order_stream = app.subscribe(&buyer, order).await;
    assert_eq!(order_stream.status().as_u16(), 200);
    assert_eq!(app.state.streams.open_for(user), 5);

    for path in ["/me/events".to_owned(), format!("/orders/{order}/events")] {
        let sixth = open_stream(&app, &buyer, &path).await;
        let reply = read_reply(sixth).await;
        expect_error(&reply, 429, "too_many_streams");
    }
    assert!(refused(&app, "streams_per_user") >= 2);
    let someone_else = app.buyer().await;
    drop(my_events(&app, &someone_else).await);

    // A stream the client closes gives its slot back.
    drop(order_stream);
    eventually(
        Duration::from_secs(20),
        "the closed stream's slot",
        || async { (app.state.streams.open_for(user) == 4).then_some(()) },
    )
    .await;
    streams.push(my_events(&app, &buyer).await);
});

/// Reads a stream until the server ends it; fails after `within`.
async fn until_ended(mut response: reqwest::Response, within: Duration) {
    tokio::time::timeout(within, async {
        while response
            .chunk()
            .await
            .expect("reading the stream")
            .is_some()
        {}
    })
    .await
    .expect("the server ended the stream");
}

backend_tests!(
    the_server_ends_a_stream_at_its_maximum_age,
    config = |c| c.stream_max_age_secs = 1,
    |app| async move {
        let buyer = app.buyer().await;
        let user = app.user_id(&buyer).await;
        let product = app.simple_product(1000, 5).await;
        let order = int(&app.order_ok(&buyer, &[(product, 1)]).await, "id");
        let mine = open_stream(&app, &buyer, "/me/events").await;
        let order_stream = app.subscribe(&buyer, order).await;
        assert_eq!(
            (mine.status().as_u16(), order_stream.status().as_u16()),
            (200, 200)
        );
        until_ended(mine, Duration::from_secs(10)).await;
        until_ended(order_stream, Duration::from_secs(10)).await;
        eventually(Duration::from_secs(5), "the slots given back", || async {
            (app.state.streams.open_for(user) == 0).then_some(())
        })
        .await;
    }
);

backend_tests!(
    metric_labels_stay_bounded_whatever_the_client_sends,
    |app| async move {
        let method = Method::from_bytes(b"FOO").unwrap();
        let odd = app
            .client
            .request(method, app.api("/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(odd.status().as_u16(), 405);
        let path = format!("/{}", unique("nowhere"));
        let lost = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(lost.status().as_u16(), 404);
        let api_path = format!("/api/v1/{}", unique("nowhere"));
        let lost = app.client.get(app.url(&api_path)).send().await.unwrap();
        assert_eq!(lost.status().as_u16(), 404);

        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .collect();
        assert!(
            requests.iter().any(|l| l.contains("method=\"OTHER\"")),
            "{requests:#?}"
        );
        assert!(!text.contains("FOO"), "{requests:#?}");
        assert!(!text.contains("nowhere"), "{requests:#?}");
    }
);
