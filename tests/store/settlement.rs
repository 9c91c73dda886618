//! Settlement on the store: each confirmation writes its sale entries, a day's statements
//! come from one set-based transaction over the entries recorded in the day's bounds, their
//! lines are those entries read back, and the unique keys make any second run — after the
//! first, or at the same time on another connection — change nothing. Verify finds an entry
//! that lands in a day after it was settled.

use crate::fixtures::{
    assert_verify_clean, buyer, done, payment, placed, product, request, NOW, NOW_MS,
};
use stampede::domain::fulfilment::{Advance, Shipment};
use stampede::domain::settlement::BusinessDate;
use stampede::domain::Timestamp;
use stampede::store::{
    FulfilmentOutcome, PageRequest, PaymentOutcome, SettlementAudit, SettlementDay,
    SettlementRecord, Store,
};
use std::sync::Arc;

const HOUR_MS: i64 = 3_600_000;

/// Hours after [`NOW`].
fn at(hours: i64) -> Timestamp {
    Timestamp::from_millis(NOW_MS + hours * HOUR_MS)
}

/// The day `[at(hours), at(hours + 24))`, named `date`.
fn day(date: &str, hours: i64) -> SettlementDay {
    SettlementDay {
        date: BusinessDate::parse("date", date).unwrap(),
        from: at(hours),
        to: at(hours + 24),
    }
}

/// Two partners (10% and 5%) with a product each.
async fn partners(store: &dyn Store) -> ([i64; 2], [i64; 2]) {
    let north = store.insert_partner("North", 1000, NOW).await.unwrap().id;
    let south = store.insert_partner("South", 500, NOW).await.unwrap().id;
    let boots = product(store, north, 100, None, NOW).await;
    let coats = product(store, south, 100, None, NOW).await;
    ([north, south], [boots, coats])
}

/// A buyer's order of `lines` (1,000 won a unit), paid, every part delivered, and the
/// purchase confirmed at `confirmed_at`; returns the order id.
async fn confirmed(
    store: &dyn Store,
    key: &str,
    lines: &[(i64, i64)],
    confirmed_at: Timestamp,
) -> i64 {
    let user = buyer(store, &format!("{key}@example.com")).await;
    let batch = [request(user, key, lines)];
    let result = store.place_batch(&batch, at(1), NOW).await.unwrap();
    let order = placed(&result.outcomes[0]).clone();
    let approved = payment(&order, PaymentOutcome::Approved);
    let order = done(store.mark_paid(order.id, &approved, NOW).await.unwrap());
    for part in &order.partner_orders {
        let shipment = Shipment::new("CJ Logistics", &format!("T-{}", part.id)).unwrap();
        for step in [Advance::Prepare, Advance::Ship(shipment), Advance::Deliver] {
            let moved = store
                .advance_partner_order(part.id, &step, NOW)
                .await
                .unwrap();
            assert!(matches!(moved, FulfilmentOutcome::Done(_)), "{moved:?}");
        }
    }
    done(store.confirm_order(order.id, confirmed_at).await.unwrap());
    order.id
}

/// Nothing for `stampede verify` to report of settlement.
fn clean(audit: &SettlementAudit) -> bool {
    audit.mismatches.is_empty()
        && audit.settled_twice.is_empty()
        && audit.unsettled_entries.is_empty()
        && audit.sale_entry_mismatches.is_empty()
}

async fn of_partner(store: &dyn Store, partner: i64) -> Vec<SettlementRecord> {
    let page = PageRequest { page: 1, size: 100 };
    store.settlements(partner, page).await.unwrap().items
}

store_tests!(
    a_day_is_settled_once_from_its_confirmations,
    |store| async move {
        let store = &*store;
        let ([north, south], [boots, coats]) = partners(store).await;
        assert_eq!(store.first_entry().await.unwrap(), None);
        let both = confirmed(store, "both", &[(boots, 1), (coats, 2)], at(2)).await;
        let more = confirmed(store, "more", &[(boots, 3)], at(23)).await;
        // On the day's end bound: the next day's.
        confirmed(store, "later", &[(boots, 1)], at(24)).await;
        assert_eq!(store.first_entry().await.unwrap(), Some(at(2)));
        assert_eq!(store.last_settled_day().await.unwrap(), None);

        let first = day("2023-11-15", 0);
        let made = store.settle_day(&first, at(30)).await.unwrap();
        assert_eq!(made.len(), 2, "{made:?}");
        let n = made.iter().find(|s| s.partner_id == north).unwrap();
        // 1,000 + 3,000 at 10%; 2,000 at 5%.
        assert_eq!(
            (n.gross, n.commission, n.net, n.line_count),
            (4_000, 400, 3_600, 2)
        );
        let s = made.iter().find(|s| s.partner_id == south).unwrap();
        assert_eq!(
            (s.gross, s.commission, s.net, s.line_count),
            (2_000, 100, 1_900, 1)
        );
        assert_eq!(s.created_at, at(30));
        assert_eq!(store.last_settled_day().await.unwrap(), Some(first.date));

        let lines = store.all_settlement_lines(n.id).await.unwrap();
        let orders: Vec<(i64, i64, i64, i64)> = lines
            .iter()
            .map(|l| {
                (
                    l.order_id,
                    l.subtotal,
                    l.commission,
                    l.confirmed_at.millis(),
                )
            })
            .collect();
        assert_eq!(
            orders,
            [
                (both, 1_000, 100, at(2).millis()),
                (more, 3_000, 300, at(23).millis())
            ]
        );
        let page = store
            .settlement_lines(n.id, PageRequest { page: 2, size: 1 })
            .await
            .unwrap();
        assert_eq!((page.total, page.items.len()), (2, 1));
        assert_eq!(page.items[0].order_id, more);
        assert_eq!(store.settlement(n.id).await.unwrap().as_ref(), Some(n));

        // Again: nothing new, not even an event.
        assert!(store.settle_day(&first, at(31)).await.unwrap().is_empty());
        let events = store.events_after(0, 10_000).await.unwrap();
        let created: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == "settlement.created")
            .collect();
        assert_eq!(created.len(), 2);
        assert!(created.iter().all(|e| e.aggregate_type == "settlement"));

        // A day without confirmations is settled all the same, with no statement.
        let empty = day("2023-11-17", 48);
        assert!(store.settle_day(&empty, at(80)).await.unwrap().is_empty());
        assert_eq!(store.last_settled_day().await.unwrap(), Some(empty.date));
        assert_eq!(of_partner(store, north).await.len(), 1);

        let audit = store.settlement_audit().await.unwrap();
        assert!(clean(&audit), "{audit:?}");
        assert_verify_clean(store).await;
    }
);

store_tests!(
    two_runs_of_one_day_at_once_make_it_once,
    |store| async move {
        let ([north, south], [boots, coats]) = partners(&*store).await;
        for i in 0..20 {
            confirmed(&*store, &format!("b{i}"), &[(boots, 1), (coats, 1)], at(1)).await;
        }
        let the_day = day("2023-11-15", 0);
        let runs = (0..4).map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.settle_day(&the_day, at(30)).await.unwrap() })
        });
        let mut made = 0;
        for run in runs {
            made += run.await.unwrap().len();
        }
        assert_eq!(made, 2, "one statement per partner in all");
        for partner in [north, south] {
            let statements = of_partner(&*store, partner).await;
            assert_eq!(statements.len(), 1);
            assert_eq!(statements[0].line_count, 20);
        }
        let audit = store.settlement_audit().await.unwrap();
        assert!(clean(&audit), "{audit:?}");
    }
);

store_tests!(
    the_benchmark_fill_settles_to_the_bare_aggregate,
    |store| async move {
        let the_day = day("2023-11-15", 0);
        store
            .fill_confirmed_lines("fill", 7, 1_000, &the_day, NOW)
            .await
            .unwrap();
        assert_eq!(store.first_entry().await.unwrap(), Some(at(0)));
        assert_eq!(store.bare_settlement_aggregate(&the_day).await.unwrap(), 7);
        // The scratch table is gone: a second run makes it again.
        assert_eq!(store.bare_settlement_aggregate(&the_day).await.unwrap(), 7);
        let made = store.settle_day(&the_day, at(30)).await.unwrap();
        assert_eq!(made.len(), 7);
        assert_eq!(made.iter().map(|s| s.line_count).sum::<i64>(), 1_000);
        for s in &made {
            let lines = store.all_settlement_lines(s.id).await.unwrap();
            let commission: i64 = lines
                .iter()
                .map(|l| {
                    stampede::domain::settlement::commission(l.subtotal, l.commission_rate_bps)
                })
                .sum();
            assert_eq!(s.commission, commission);
            assert!(lines
                .iter()
                .all(|l| l.confirmed_at >= at(0) && l.confirmed_at < at(24)));
        }
        let audit = store.settlement_audit().await.unwrap();
        assert!(clean(&audit), "{audit:?}");
    }
);

store_tests!(
    an_entry_written_into_a_settled_day_is_reported,
    |store| async move {
        let store = &*store;
        let ([north, south], [boots, coats]) = partners(store).await;
        confirmed(store, "first", &[(boots, 1)], at(2)).await;
        let the_day = day("2023-11-15", 0);
        assert_eq!(store.settle_day(&the_day, at(30)).await.unwrap().len(), 1);
        assert!(clean(&store.settlement_audit().await.unwrap()));

        // A node whose clock is hours behind confirms two purchases "during" the settled
        // day: one of a partner with a statement that day, one of a partner without.
        let late_north = confirmed(store, "late-n", &[(boots, 2)], at(20)).await;
        let late_south = confirmed(store, "late-s", &[(coats, 1)], at(21)).await;
        let audit = store.settlement_audit().await.unwrap();
        let statement = &of_partner(store, north).await[0];
        assert_eq!(audit.mismatches.len(), 1, "{audit:?}");
        assert_eq!(audit.mismatches[0].settlement_id, statement.id);
        assert_eq!(audit.mismatches[0].stated, (1_000, 100, 900, 1));
        assert_eq!(audit.mismatches[0].summed, (3_000, 300, 2_700, 2));
        assert_eq!(audit.unsettled_entries.len(), 1, "{audit:?}");
        assert!(of_partner(store, south).await.is_empty());
        assert!(audit.sale_entry_mismatches.is_empty() && audit.settled_twice.is_empty());
        // The statement itself is never edited: it still says what was paid.
        assert_eq!(
            store.settlement(statement.id).await.unwrap().unwrap().gross,
            1_000
        );
        assert_ne!(late_north, late_south);
    }
);
