//! Placement under concurrency: many batches at once never oversell or deadlock, a reader
//! tailing the outbox meanwhile misses nothing, and one idempotency key sent to two nodes
//! at once makes one order.

use crate::fixtures::{assert_books_balance, buyer, product, request, NOW};
use stampede::domain::allocation::{OrderRequest, Rejection};
use stampede::domain::Role;
use stampede::store::{NewUser, PageRequest, PlaceOutcome, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

// Many batches from many tasks on a few hot products, lines in both orders: no deadlock,
// no oversell, the books balance, and a reader tailing the outbox meanwhile misses nothing.
store_tests!(concurrent_batches_never_oversell, |store| async move {
    let partner = store.insert_partner("Acme", 0, NOW).await.unwrap().id;
    let mut products = Vec::new();
    for _ in 0..3 {
        products.push(product(&*store, partner, 40, Some(3), NOW).await);
    }
    let users: Vec<NewUser> = (0..40)
        .map(|i| NewUser {
            email: format!("c{i}@example.com"),
            password_hash: "x".into(),
            role: Role::Buyer,
            partner_id: None,
        })
        .collect();
    let users = store.insert_users_bulk(&users, NOW).await.unwrap();
    let tail = tokio::spawn(tail_outbox(store.clone()));
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let (store, products, users) = (store.clone(), products.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            let mut placed_units = 0;
            for round in 0..12usize {
                let batch: Vec<OrderRequest> = (0..10usize)
                    .map(|i| {
                        let user = users[(task * 7 + round * 3 + i) % users.len()];
                        let a = products[(task + i) % 3];
                        let b = products[(task + i + 1) % 3];
                        request(user, &format!("t{task}r{round}i{i}"), &[(a, 1), (b, 1)])
                    })
                    .collect();
                let result = store.place_batch(&batch, NOW, NOW).await.expect("batch");
                placed_units += result
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o, PlaceOutcome::Placed(_)))
                    .count()
                    * 2;
            }
            placed_units
        }));
    }
    let mut units = 0;
    for task in tasks {
        units += task.await.unwrap();
    }
    assert!(units <= 120, "sold {units} units of 120");
    let mut held = 0;
    for id in &products {
        let p = store.product(*id).await.unwrap().unwrap();
        assert!(p.held <= p.on_hand);
        held += p.held as usize;
    }
    assert_eq!(held, units, "every placed unit is held, and nothing else");
    let seen = tail.await.unwrap();
    let events = store.events_after(0, 100_000).await.unwrap();
    let all: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(seen, all, "the tailing reader skipped or repeated an event");
    assert_books_balance(&*store).await;
});

/// Tails the outbox like the dispatcher until it has seen 1,000 quiet milliseconds.
async fn tail_outbox(store: Arc<dyn Store>) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut quiet = 0;
    while quiet < 100 {
        let events = store.events_after(cursor, 50).await.unwrap();
        if events.is_empty() {
            quiet += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        quiet = 0;
        for event in events {
            cursor = event.id;
            seen.push(event.id);
        }
    }
    seen
}

// Two nodes placing the same key for different products at the same moment: one wins,
// the other either sees the stored order (a mismatch, since the body differs) or loses
// the race and is told to retry alone. Never two orders.
store_tests!(idempotency_race_across_nodes, |store| async move {
    let partner = store.insert_partner("Acme", 0, NOW).await.unwrap().id;
    let a = product(&*store, partner, 100, None, NOW).await;
    let b = product(&*store, partner, 100, None, NOW).await;
    let user = buyer(&*store, "race@example.com").await;
    let (mut mismatches, mut races) = (0, 0);
    for round in 0..20 {
        let key = format!("race-{round}");
        let (first, second) = (
            [request(user, &key, &[(a, 1)])],
            [request(user, &key, &[(b, 1)])],
        );
        let one = store.place_batch(&first, NOW, NOW);
        let two = store.place_batch(&second, NOW, NOW);
        let (one, two) = tokio::join!(one, two);
        let mut placed = 0;
        for result in [one, two] {
            match result {
                Ok(r) => match &r.outcomes[0] {
                    PlaceOutcome::Placed(_) => placed += 1,
                    PlaceOutcome::Rejected(Rejection::IdempotencyMismatch) => mismatches += 1,
                    other => panic!("unexpected outcome {other:?}"),
                },
                Err(StoreError::Conflict("idempotency_race")) => races += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(placed, 1, "round {round}");
    }
    eprintln!("same key on two nodes: {mismatches} saw the stored order, {races} lost the race");
    let orders = store
        .list_orders(Some(user), PageRequest { page: 1, size: 100 })
        .await
        .unwrap();
    assert_eq!(orders.total, 20);
    assert_books_balance(&*store).await;
});
