//! Sign-up, sign-in, refresh rotation with reuse detection, logout, and every way an
//! access token can stop being good.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

async fn signup(app: &TestApp, email: &str, password: &str) -> Reply {
    app.post(
        "/auth/signup",
        None,
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Reply {
    app.post(
        "/auth/refresh",
        None,
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

/// Signs up a new buyer and signs in; returns (email, login body).
async fn signed_in_buyer(app: &TestApp) -> (String, serde_json::Value) {
    let email = unique_email("buyer");
    expect(&signup(app, &email, PASSWORD).await, 201);
    let login = app.login(&email, PASSWORD).await;
    (email, login)
}

backend_tests!(signup_login_and_me, |app| async move {
    let email = unique_email("alice");
    let created = signup(&app, &email, PASSWORD).await;
    let user = expect(&created, 201);
    let id = int(user, "id");
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["role"], "buyer");
    assert!(user["partner_id"].is_null(), "{user}");
    assert!(
        user.get("password").is_none() && user.get("password_hash").is_none(),
        "{user}"
    );

    let login = app.login(&email, PASSWORD).await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(
        int(&login, "expires_in"),
        app.limits.access_token_ttl_secs as i64
    );
    let access = str_of(&login, "access_token");
    assert!(!str_of(&login, "refresh_token").is_empty());

    let me = app.get("/me", Some(access)).await;
    let me = expect(&me, 200);
    assert_eq!(int(me, "id"), id);
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["role"], "buyer");
    assert!(me["partner_id"].is_null());

    // Emails are one account each, however they are capitalised.
    expect_error(
        &signup(&app, &email, "another password").await,
        409,
        "email_taken",
    );
    expect_error(
        &signup(&app, &email.to_uppercase(), PASSWORD).await,
        409,
        "email_taken",
    );

    let wrong = app
        .post(
            "/auth/login",
            None,
            &json!({"email": email, "password": "not the password"}),
        )
        .await;
    expect_error(&wrong, 401, "invalid_credentials");
    let nobody = app
        .post(
            "/auth/login",
            None,
            &json!({"email": unique_email("nobody"), "password": PASSWORD}),
        )
        .await;
    expect_error(&nobody, 401, "invalid_credentials");
});

backend_tests!(password_length_is_8_to_128_bytes, |app| async move {
    for (password, accepted) in [
        ("a".repeat(7), false),
        ("a".repeat(8), true),
        ("a".repeat(128), true),
        ("a".repeat(129), false),
        ("é".repeat(64), true),  // 128 bytes
        ("é".repeat(65), false), // 130 bytes
        (String::new(), false),
    ] {
        let email = unique_email("pw");
        let reply = signup(&app, &email, &password).await;
        if accepted {
            expect(&reply, 201);
            app.login(&email, &password).await;
        } else {
            expect_error(&reply, 422, "validation_failed");
            // Nothing was created: the email is still free.
            expect(&signup(&app, &email, PASSWORD).await, 201);
        }
    }
});

backend_tests!(
    refresh_rotates_and_reuse_revokes_the_session,
    |app| async move {
        let (_, first) = signed_in_buyer(&app).await;
        let old_refresh = str_of(&first, "refresh_token").to_owned();

        let rotated = refresh(&app, &old_refresh).await;
        let second = expect(&rotated, 200).clone();
        let new_refresh = str_of(&second, "refresh_token").to_owned();
        assert_ne!(new_refresh, old_refresh, "refresh must rotate the token");
        assert_eq!(second["token_type"], "Bearer");
        expect(
            &app.get("/me", Some(str_of(&second, "access_token"))).await,
            200,
        );

        // The old token is spent; presenting it again is treated as theft and also kills
        // the token that replaced it.
        expect_error(&refresh(&app, &old_refresh).await, 401, "invalid_token");
        expect_error(&refresh(&app, &new_refresh).await, 401, "invalid_token");

        expect_error(
            &refresh(&app, "not-a-refresh-token").await,
            401,
            "invalid_token",
        );
    }
);

backend_tests!(logout_ends_the_session, |app| async move {
    let (_, login) = signed_in_buyer(&app).await;
    let access = str_of(&login, "access_token");
    let refresh_token = str_of(&login, "refresh_token");
    expect(&app.get("/me", Some(access)).await, 200);

    let out = app.post_empty("/auth/logout", Some(access)).await;
    assert_eq!(out.0.as_u16(), 204, "logout: {out:?}");

    expect_error(&app.get("/me", Some(access)).await, 401, "invalid_token");
    let reply = refresh(&app, refresh_token).await;
    assert_eq!(reply.0.as_u16(), 401, "refresh after logout: {reply:?}");
    expect_error(
        &app.post_empty("/auth/logout", None).await,
        401,
        "unauthorized",
    );
});

/// Replaces one character in the middle of the given JWT segment (0 header, 1 claims,
/// 2 signature); the middle avoids base64 padding bits that decode to the same bytes.
fn tamper(token: &str, segment: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let target = &mut parts[segment];
    let mid = target.len() / 2;
    let old = target.as_bytes()[mid];
    let new = if old == b'A' { 'B' } else { 'A' };
    target.replace_range(mid..mid + 1, &new.to_string());
    parts.join(".")
}

backend_tests!(tampered_and_garbage_tokens_are_rejected, |app| async move {
    let (_, login) = signed_in_buyer(&app).await;
    let access = str_of(&login, "access_token");
    expect(&app.get("/me", Some(access)).await, 200);

    expect_error(
        &app.get("/me", Some(&tamper(access, 2))).await,
        401,
        "invalid_token",
    );
    expect_error(
        &app.get("/me", Some(&tamper(access, 1))).await,
        401,
        "invalid_token",
    );
    expect_error(&app.get("/me", Some("garbage")).await, 401, "invalid_token");
    expect_error(&app.get("/me", None).await, 401, "unauthorized");

    // A token with `alg: none` and an admin role must not be taken at its word.
    let claims = access.split('.').nth(1).unwrap();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let unsigned = format!("{none_header}.{claims}.");
    expect_error(&app.get("/me", Some(&unsigned)).await, 401, "invalid_token");
});

backend_tests!(
    access_tokens_expire,
    config = |c| c.access_token_ttl_secs = 1,
    |app| async move {
        let (_, login) = signed_in_buyer(&app).await;
        assert_eq!(int(&login, "expires_in"), 1);
        let access = str_of(&login, "access_token");
        expect(&app.get("/me", Some(access)).await, 200);
        // Past its expiry by the servers' clock, without waiting for it.
        app.clock.advance(Duration::from_secs(2));
        expect_error(&app.get("/me", Some(access)).await, 401, "invalid_token");

        // The refresh token outlives it and yields a working access token.
        let renewed = refresh(&app, str_of(&login, "refresh_token")).await;
        let fresh = str_of(expect(&renewed, 200), "access_token");
        expect(&app.get("/me", Some(fresh)).await, 200);
    }
);

/// Logs in, then rotates the refresh token once; returns the two pairs.
async fn rotated_session(app: &TestApp) -> (String, serde_json::Value, serde_json::Value) {
    let (email, first) = signed_in_buyer(app).await;
    let rotated = refresh(app, str_of(&first, "refresh_token")).await;
    let second = expect(&rotated, 200).clone();
    (email, first, second)
}

backend_tests!(
    reusing_a_refresh_token_kills_the_access_tokens_of_its_session,
    |app| async move {
        let (email, first, second) = rotated_session(&app).await;
        let other = app.login(&email, PASSWORD).await;
        let session_tokens = [
            str_of(&first, "access_token"),
            str_of(&second, "access_token"),
        ];
        let other_session = str_of(&other, "access_token");
        for token in session_tokens.iter().chain([&other_session]) {
            expect(&app.get("/me", Some(token)).await, 200);
        }

        // The spent refresh token again: the session dies, and every access token it
        // issued with it, long before they would expire.
        let old_refresh = str_of(&first, "refresh_token");
        expect_error(&refresh(&app, old_refresh).await, 401, "invalid_token");
        for token in session_tokens {
            expect_error(&app.get("/me", Some(token)).await, 401, "invalid_token");
        }
        // The buyer's other session is not the stolen one.
        expect(&app.get("/me", Some(other_session)).await, 200);
    }
);

backend_tests!(
    a_session_revoked_for_reuse_is_refused_on_every_node,
    |app| async move {
        let (_, first, second) = rotated_session(&app).await;
        let access = str_of(&second, "access_token");
        let (running, node) = app.another_node(|_| {}).await;
        expect(&running.get("/me", Some(access)).await, 200);

        let old_refresh = str_of(&first, "refresh_token");
        expect_error(&refresh(&app, old_refresh).await, 401, "invalid_token");
        // A running node learns it from the `session.revoked` event…
        eventually(
            Duration::from_secs(10),
            "the other node to refuse the session's token",
            || async { (running.get("/me", Some(access)).await.0 == 401).then_some(()) },
        )
        .await;
        // …and a node that starts later from the database.
        let (late, late_node) = app.another_node(|_| {}).await;
        expect_error(&late.get("/me", Some(access)).await, 401, "invalid_token");
        late_node.stop().await;
        node.stop().await;
    }
);
