//! Accounts: users one by one and in bulk, sessions (rotation, reuse detection,
//! revocation), the token deny-list and settings, and their events.

use crate::fixtures::{buyer, event_types, HOUR_MS, NOW};
use stampede::domain::events;
use stampede::domain::{Role, Timestamp};
use stampede::store::{NewUser, RotateOutcome, Store, StoreError};

store_tests!(auth_users_sessions_and_settings, |store| async move {
    let user = buyer(&*store, "a@example.com").await;
    let again = NewUser {
        email: "a@example.com".into(),
        password_hash: "x".into(),
        role: Role::Buyer,
        partner_id: None,
    };
    let taken = store.insert_user(&again, NOW).await;
    assert!(matches!(taken, Err(StoreError::Conflict("email_taken"))));
    let bulk: Vec<NewUser> = (0..3)
        .map(|i| NewUser {
            email: format!("bulk{i}@example.com"),
            ..again.clone()
        })
        .collect();
    let ids = store.insert_users_bulk(&bulk, NOW).await.unwrap();
    let found = store.user_by_email("bulk2@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(ids[2]));
    let by_id = store.user_by_id(user).await.unwrap().unwrap();
    assert_eq!(
        (by_id.email.as_str(), by_id.role),
        ("a@example.com", Role::Buyer)
    );
    let clash = store.insert_users_bulk(&bulk[..1], NOW).await;
    assert!(matches!(clash, Err(StoreError::Conflict("email_taken"))));

    sessions(&*store, user).await;
    let first = store.setting_or_insert("jwt", "first").await.unwrap();
    let second = store.setting_or_insert("jwt", "second").await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("first", "first"));
    // Every change is an event (the refused inserts wrote none): four users
    // (one single, three bulk), then login, refresh, replay (revokes), login, logout.
    let expected = [
        events::USER_CREATED,
        events::USER_CREATED,
        events::USER_CREATED,
        events::USER_CREATED,
        events::SESSION_STARTED,
        events::SESSION_ROTATED,
        events::SESSION_REVOKED,
        events::SESSION_STARTED,
        events::SESSION_REVOKED,
    ];
    assert_eq!(event_types(&*store).await, expected);
});

/// Rotation, reuse detection and revocation, alike on both backends.
async fn sessions(store: &dyn Store, user: i64) {
    let later = Timestamp::from_millis(NOW.millis() + HOUR_MS);
    let rotate = |old: &'static str, new: &'static str| async move {
        store.rotate_refresh(old, new, later, NOW).await.unwrap()
    };
    let session = store.create_session(user, "h1", later, NOW).await.unwrap();
    let rotated = RotateOutcome::Rotated {
        user_id: user,
        session_id: session,
    };
    assert_eq!(rotate("h1", "h2").await, rotated);
    assert_eq!(
        rotate("h1", "h3").await,
        RotateOutcome::Reused {
            session_id: session
        }
    );
    assert_eq!(rotate("h2", "h4").await, RotateOutcome::Invalid, "revoked");
    assert_eq!(
        rotate("h1", "h5").await,
        RotateOutcome::Invalid,
        "revoked once"
    );
    // What a starting node deny-lists: the sessions revoked since a point in time.
    let just_before = Timestamp::from_millis(NOW.millis() - 1);
    assert_eq!(
        store.revoked_sessions(just_before).await.unwrap(),
        [(session, NOW)]
    );
    assert!(store.revoked_sessions(NOW).await.unwrap().is_empty());
    assert_eq!(rotate("nope", "h6").await, RotateOutcome::Invalid);
    store.create_session(user, "s1", NOW, NOW).await.unwrap();
    assert_eq!(rotate("s1", "s2").await, RotateOutcome::Invalid, "expired");

    store
        .revoke_session(user, session, "jti-1", later, NOW)
        .await
        .unwrap();
    assert_eq!(store.revoked_tokens(NOW).await.unwrap(), ["jti-1"]);
    assert!(store.revoked_tokens(later).await.unwrap().is_empty());
}
