//! The catalog: partners, products, inbound stock, patches, listings and their events.

use crate::fixtures::{event_types, product, NOW};
use stampede::domain::events;
use stampede::store::{PageRequest, ProductPatch};

store_tests!(catalog_products_and_stock, |store| async move {
    let partner = store.insert_partner("Acme", 500, NOW).await.unwrap();
    let stored = store.partner(partner.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "Acme");
    let id = product(&*store, partner.id, 0, None, NOW).await;
    let levels = store.inbound(id, 3, Some("truck"), NOW).await.unwrap();
    let levels = levels.unwrap();
    assert_eq!((levels.on_hand, levels.held), (3, 0));
    let missing = store.inbound(999_999, 1, None, NOW).await.unwrap();
    assert!(missing.is_none());

    let patch = ProductPatch {
        name: Some("renamed".into()),
        max_per_user: Some(Some(2)),
        ..Default::default()
    };
    let updated = store.update_product(id, &patch, NOW).await.unwrap();
    let updated = updated.unwrap();
    assert_eq!((updated.max_per_user, updated.on_hand), (Some(2), 3));
    let clear = ProductPatch {
        max_per_user: Some(None),
        ..Default::default()
    };
    let updated = store.update_product(id, &clear, NOW).await.unwrap();
    let updated = updated.unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.max_per_user),
        ("renamed", None)
    );

    let page = PageRequest { page: 1, size: 10 };
    let movements = store.movements(id, page).await.unwrap();
    assert_eq!(movements.total, 1);
    assert_eq!(movements.items[0].memo.as_deref(), Some("truck"));
    let list = store.list_products(page).await.unwrap();
    assert_eq!((list.total, list.items.len()), (1, 1));
    // A product created empty announces its stock only with its first inbound.
    let types = event_types(&*store).await;
    let expected = [
        events::PARTNER_CREATED,
        events::PRODUCT_CREATED,
        events::STOCK_CHANGED,
        events::PRODUCT_UPDATED,
        events::PRODUCT_UPDATED,
    ];
    assert_eq!(types, expected);
});
