//! Creating products in a batch (`insert_products`): the same rows and events as creating
//! them one by one, in one transaction, all or nothing.

use crate::fixtures::{assert_verify_clean, NOW};
use stampede::domain::events::Event;
use stampede::domain::Timestamp;
use stampede::store::{NewProduct, PageRequest, ProductRecord, Store};

fn drop_of(partner_id: i64, stock: i64, max_per_user: Option<i64>) -> NewProduct {
    NewProduct {
        partner_id,
        name: format!("drop of {stock}"),
        price: 12_000 + stock,
        stock,
        release_at: Timestamp::from_millis(NOW.millis() + stock * 1_000),
        max_per_user,
    }
}

/// What a product's creation wrote, with its own id taken out: the record, the ledger
/// (kind, quantity, memo, balances after) and the events (type, payload).
async fn written(store: &dyn Store, record: &ProductRecord, events: &[Event]) -> String {
    let page = PageRequest { page: 1, size: 10 };
    let movements = store.movements(record.id, page).await.unwrap();
    let ledger: Vec<_> = movements
        .items
        .iter()
        .map(|m| {
            (
                m.kind,
                m.quantity,
                m.memo.clone(),
                m.on_hand_after,
                m.held_after,
            )
        })
        .collect();
    let own_id = format!("\"product_id\":{}", record.id);
    let own: Vec<_> = events
        .iter()
        .filter(|e| e.aggregate_type == "product" && e.aggregate_id == record.id)
        .map(|e| {
            (
                e.event_type.clone(),
                e.payload.replace(&own_id, "\"product_id\":_"),
            )
        })
        .collect();
    let read_back = store.product(record.id).await.unwrap().unwrap();
    assert_eq!(format!("{read_back:?}"), format!("{record:?}"));
    let shown = format!("{record:?} {ledger:?} {own:?}");
    shown.replace(&format!("{{ id: {},", record.id), "{ id: _,")
}

store_tests!(
    a_batch_writes_what_single_creates_write,
    |store| async move {
        let partner = store.insert_partner("Batch", 800, NOW).await.unwrap();
        let inputs = [
            drop_of(partner.id, 5, None),
            drop_of(partner.id, 0, Some(2)),
            drop_of(partner.id, 7, Some(1)),
        ];
        let batch = store.insert_products(&inputs, NOW).await.unwrap();
        let ids: Vec<i64> = batch.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
        let single: Vec<ProductRecord> = {
            let mut out = Vec::new();
            for input in &inputs {
                out.push(store.insert_product(input, NOW).await.unwrap());
            }
            out
        };
        let events = store.events_after(0, 1_000).await.unwrap();
        for (b, s) in batch.iter().zip(&single) {
            assert_eq!(
                written(&*store, b, &events).await,
                written(&*store, s, &events).await
            );
        }
        // The batch's events come product by product, created before stocked, as singles do.
        let order: Vec<(i64, &str)> = events
            .iter()
            .filter(|e| e.aggregate_type == "product" && ids.contains(&e.aggregate_id))
            .map(|e| (e.aggregate_id, e.event_type.as_str()))
            .collect();
        let expected = [
            (ids[0], "product.created"),
            (ids[0], "stock.changed"),
            (ids[1], "product.created"),
            (ids[2], "product.created"),
            (ids[2], "stock.changed"),
        ];
        assert_eq!(order, expected);
        let listed = store.list_products(PageRequest { page: 1, size: 10 });
        assert_eq!(listed.await.unwrap().total, 6);
        assert_verify_clean(&*store).await;
    }
);

store_tests!(a_batch_is_all_or_nothing, |store| async move {
    let partner = store.insert_partner("Batch", 800, NOW).await.unwrap();
    assert!(store.insert_products(&[], NOW).await.unwrap().is_empty());
    let before = store.last_event_id().await.unwrap();
    // The last product names a partner that does not exist: the foreign key refuses it,
    // and the two before it are not created either.
    let inputs = [
        drop_of(partner.id, 1, None),
        drop_of(partner.id, 2, None),
        drop_of(partner.id + 1_000, 3, None),
    ];
    assert!(store.insert_products(&inputs, NOW).await.is_err());
    let listed = store.list_products(PageRequest { page: 1, size: 10 });
    assert_eq!(listed.await.unwrap().total, 0);
    assert_eq!(store.last_event_id().await.unwrap(), before);
    // The store is usable after the rollback, and ids carry on from there.
    let created = store.insert_products(&inputs[..2], NOW).await.unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[1].on_hand, 2);
    assert_verify_clean(&*store).await;
});
