//! The outbox horizon (`src/store/postgres/outbox.rs`): a writer that drew a lower event id
//! but commits later must not be skipped by a reader that already sees a higher id.

use crate::fixtures::NOW;
use sqlx::{Connection, PgConnection};
use stampede::domain::events;
use stampede::domain::Role;
use stampede::store::NewUser;
use std::time::Duration;

/// The advisory lock the test holds to park a writer inside its transaction.
const STALL_KEY: i64 = 4242;

// PostgreSQL only: the horizon exists because PostgreSQL hands out outbox ids to many
// writers at once and makes them visible in commit order. SQLite has one writer at a time,
// so a second writer cannot start while the first is open, and there is no gap to close.
//
// The slow writer is a real store write (`insert_partner`), parked by a trigger the test
// installs right after its outbox row is inserted: its id is drawn and it holds the
// horizon, but it has not committed. Then a fast writer (`insert_user`) draws the next id
// and commits.
store_tests!(
    outbox_reader_waits_for_open_writers,
    postgres_only,
    |store, url| async move {
        let mut control = PgConnection::connect(&url)
            .await
            .expect("control connection");
        let stall = format!(
            "CREATE FUNCTION test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_advisory_xact_lock_shared({STALL_KEY}); RETURN NULL; END $$; \
             CREATE TRIGGER test_stall AFTER INSERT ON outbox FOR EACH ROW \
             WHEN (NEW.event_type = '{}') EXECUTE FUNCTION test_stall();",
            events::PARTNER_CREATED
        );
        run(&mut control, &stall).await;
        run(
            &mut control,
            &format!("SELECT pg_advisory_lock({STALL_KEY})"),
        )
        .await;

        let slow = tokio::spawn({
            let store = store.clone();
            async move { store.insert_partner("Slow", 0, NOW).await.unwrap() }
        });
        parked(&mut control).await;
        let user = NewUser {
            email: "fast@example.com".into(),
            password_hash: "hash".into(),
            role: Role::Buyer,
            partner_id: None,
        };
        let fast = store.insert_user(&user, NOW).await.unwrap();

        let reader = tokio::spawn({
            let store = store.clone();
            async move { store.events_after(0, 10).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !reader.is_finished(),
            "the reader must wait for the open writer"
        );
        run(
            &mut control,
            &format!("SELECT pg_advisory_unlock({STALL_KEY})"),
        )
        .await;
        let partner = slow.await.unwrap();
        let seen: Vec<(String, i64)> = reader
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_type, e.aggregate_id))
            .collect();
        let expected = vec![
            (events::PARTNER_CREATED.to_owned(), partner.id),
            (events::USER_CREATED.to_owned(), fast.id),
        ];
        assert_eq!(seen, expected);
        let _ = control.close().await;
    }
);

/// Runs `sql` on the test's own connection. Through `Executor::execute`, whose future is
/// `Send` for the concrete connection lifetime (the generic `RawSql::execute` future trips
/// rustc's higher-ranked `Send` check inside the test's spawned task).
async fn run(control: &mut PgConnection, sql: &str) {
    sqlx::Executor::execute(&mut *control, sqlx::raw_sql(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits until the slow writer is parked on [`STALL_KEY`], its outbox row inserted.
async fn parked(control: &mut PgConnection) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND NOT granted AND objid::bigint = $1 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .bind(STALL_KEY)
        .fetch_one(&mut *control)
        .await
        .unwrap();
        if waiting {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow writer never reached its outbox insert"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
