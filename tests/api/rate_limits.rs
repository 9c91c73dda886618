//! Rate limits per signed-in user and per client address: 429 `rate_limited` with
//! `Retry-After`, per key, and — through Redis — across nodes.

use crate::helpers::*;

/// Status and `Retry-After` of `GET /api/v1{path}`.
async fn status(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Option<u64>) {
    let mut request = app.client.get(app.api(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let code = response.status().as_u16();
    if code == 429 {
        let reply = read_reply(response).await;
        expect_error(&reply, 429, "rate_limited");
    }
    (code, retry_after)
}

backend_tests!(
    a_user_over_the_limit_gets_429_with_retry_after,
    config = |c| {
        c.rate_limit_user_per_sec = 1;
        c.rate_limit_user_burst = 3;
    },
    |app| async move {
        let (greedy, patient) = (app.buyer().await, app.buyer().await);
        for _ in 0..3 {
            assert_eq!(status(&app, "/me", Some(&greedy)).await.0, 200);
        }
        let (code, retry_after) = status(&app, "/me", Some(&greedy)).await;
        assert_eq!(code, 429);
        assert_eq!(retry_after, Some(1), "Retry-After of a 1/s limit");
        assert_eq!(
            status(&app, "/me", Some(&patient)).await.0,
            200,
            "limits are per user"
        );
        assert_eq!(
            status(&app, "/products", None).await.0,
            200,
            "anonymous is not that user"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        assert_eq!(
            status(&app, "/me", Some(&greedy)).await.0,
            200,
            "the bucket refills"
        );
        assert!(
            app.state
                .metrics
                .rate_limited
                .get_or_create(&user_label())
                .get()
                >= 1
        );
    }
);

fn user_label() -> stampede::metrics::ReasonLabels {
    stampede::metrics::ReasonLabels {
        reason: "user".into(),
    }
}

backend_tests!(
    an_address_over_the_limit_gets_429,
    config = |c| {
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 5;
    },
    |app| async move {
        for _ in 0..5 {
            assert_eq!(status(&app, "/products", None).await.0, 200);
        }
        let (code, retry_after) = status(&app, "/products", None).await;
        assert_eq!((code, retry_after), (429, Some(1)));
        assert_eq!(status(&app, "/me", Some(&app.buyer().await)).await.0, 429);
        // Operations endpoints are outside the API and never limited.
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
    }
);

redis_tests!(
    limits_hold_across_nodes_through_redis,
    config = |c| {
        c.rate_limit_user_per_sec = 1;
        c.rate_limit_user_burst = 4;
    },
    |app| async move {
        let (other, node) = app.another_node(|_| {}).await;
        let buyer = app.buyer().await;
        for node in [&app, &other, &app, &other] {
            assert_eq!(status(node, "/me", Some(&buyer)).await.0, 200);
        }
        assert_eq!(status(&other, "/me", Some(&buyer)).await.0, 429);
        assert_eq!(
            status(&app, "/me", Some(&buyer)).await.0,
            429,
            "one budget for both"
        );
        node.stop().await;
    }
);
