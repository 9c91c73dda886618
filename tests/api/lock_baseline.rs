//! The seeds' Redis-lock-per-product strategy, kept as the benchmark baseline, must still
//! be correct: exactly the stock sold under a burst.

use crate::helpers::*;
use std::sync::Arc;

redis_tests!(
    lock_baseline_sells_exactly_the_stock,
    config = |c| {
        c.placement_strategy = stampede::config::PlacementStrategy::Lock;
        c.redis_prefix = format!("{}:", unique("locktest"));
        // 200 buyers queue on one lock; under a loaded CI machine 3 s of waiting was not
        // always enough, and a timed-out wait (503) is not what this test is about.
        c.lock_wait_ms = 30_000;
        c.request_timeout_ms = 60_000;
    },
    |app| async move {
        assert_eq!(
            app.state.config.placement_strategy,
            stampede::config::PlacementStrategy::Lock
        );
        let product = app.simple_product(1_000, 20).await;
        let buyers: Vec<Arc<String>> = app.buyers(200).await.into_iter().map(Arc::new).collect();
        let replies = all_at_once(buyers.len(), |i| {
            let (app, buyer) = (app.clone(), buyers[i].clone());
            async move { app.place_order(&buyer, &[(product, 1)]).await }
        })
        .await;
        let sold = replies.iter().filter(|r| r.0 == 201).count();
        let out = replies
            .iter()
            .filter(|r| r.0 == 409 && r.1["error"]["code"] == "out_of_stock")
            .count();
        assert_eq!((sold, out), (20, 180), "{replies:?}");
        assert_eq!(app.stock(product).await.held, 20);
        app.assert_verify_clean().await;
    }
);
