//! The waitlist's reads the offer job leans on.

use crate::fixtures::{buyer, product, NOW};
use stampede::store::JoinOutcome;

store_tests!(
    products_with_line_names_only_those_with_someone_waiting,
    |store| async move {
        let partner = store.insert_partner("Acme", 500, NOW).await.unwrap();
        let a = buyer(&*store, "a@example.com").await;
        let b = buyer(&*store, "b@example.com").await;
        let [first, second, third] = [
            product(&*store, partner.id, 0, None, NOW).await,
            product(&*store, partner.id, 0, None, NOW).await,
            product(&*store, partner.id, 0, None, NOW).await,
        ];
        for (product_id, user_id) in [(third, a), (first, a), (third, b)] {
            let joined = store
                .join_waitlist(product_id, user_id, 1, NOW)
                .await
                .unwrap();
            assert!(matches!(joined, JoinOutcome::Joined(_)));
        }
        let asked = [third, 999_999, second, first, third];
        let lined = store.products_with_line(&asked).await.unwrap();
        assert_eq!(
            lined,
            [first, third],
            "ascending, each once, unknown ids ignored"
        );

        // Leaving empties the first line; the third still has a buyer waiting.
        store.leave_waitlist(first, a, NOW).await.unwrap().unwrap();
        store.leave_waitlist(third, a, NOW).await.unwrap().unwrap();
        let lined = store.products_with_line(&asked).await.unwrap();
        assert_eq!(lined, [third]);
        assert!(store.products_with_line(&[]).await.unwrap().is_empty());
    }
);
