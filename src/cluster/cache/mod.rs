//! The product listing cache (`GET /products`, `GET /products/{id}`): cached, and correct
//! after every change once its event is dispatched.
//!
//! During a drop stock changes constantly while the catalog facts (name, price, release
//! date, order of the listing) do not, so the two are kept apart:
//! - rows and pages are cached under a *generation*; `product.created`/`product.updated`
//!   start a new one, so nothing cached before the change is returned after it. A reader
//!   takes its ticket (the generation) *before* reading the database, so a page read just
//!   before a change is stored under the old generation and never served;
//! - `on_hand`/`held` of a cached row are overlaid from the live stock levels, set from
//!   `stock.changed` events and versioned by event id.
//!
//! Entries also expire after `cache_ttl_secs`, a safety net only. Redis keeps stock levels
//! twice as long as pages: a level can then only vanish once every page that may hold an
//! older copy of that row has expired too.

mod local;
mod redis;

pub use local::LocalCache;
pub use redis::RedisCache;

use crate::metrics::Metrics;
use crate::store::{Page, PageRequest, ProductRecord, StockLevels, Store, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKey {
    Page { page: i64, size: i64 },
    Product(i64),
}

/// Rows and the listing's total, as read from the database.
#[derive(Debug, Clone)]
pub struct Listed {
    pub items: Vec<ProductRecord>,
    pub total: i64,
}

/// The generation a lookup saw; an entry may only be stored under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

pub enum Lookup {
    Hit(Listed),
    Miss(Ticket),
}

/// Stock levels as of one outbox event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelsSeen {
    pub event_id: i64,
    pub levels: StockLevels,
}

/// One implementation per mode, chosen once in `Cluster::build`.
#[async_trait]
pub trait CatalogCache: Send + Sync {
    async fn get(&self, key: CacheKey) -> Lookup;
    async fn put(&self, key: CacheKey, ticket: Ticket, listed: &Listed);
    /// Live levels of these products, where known.
    async fn levels(&self, product_ids: &[i64]) -> Vec<Option<StockLevels>>;
    async fn observe(&self, seen: &[LevelsSeen]);
    /// A product was created or changed: start a new generation.
    async fn invalidate(&self);
}

/// What handlers and the dispatcher hold: the chosen cache plus read-through and metrics.
#[derive(Clone)]
pub struct Listing {
    cache: Arc<dyn CatalogCache>,
    metrics: Arc<Metrics>,
}

impl Listing {
    pub fn new(cache: Arc<dyn CatalogCache>, metrics: Arc<Metrics>) -> Listing {
        Listing { cache, metrics }
    }

    /// A page of products by `release_at`, then id.
    pub async fn page(
        &self,
        store: &dyn Store,
        page: PageRequest,
    ) -> StoreResult<Page<ProductRecord>> {
        let key = CacheKey::Page {
            page: page.page,
            size: page.size,
        };
        let listed = self
            .read_through(key, || async {
                let read = store.list_products(page).await?;
                Ok(Some(Listed {
                    items: read.items,
                    total: read.total,
                }))
            })
            .await?
            .unwrap_or(Listed {
                items: Vec::new(),
                total: 0,
            });
        Ok(Page {
            items: listed.items,
            page: page.page,
            size: page.size,
            total: listed.total,
        })
    }

    pub async fn product(&self, store: &dyn Store, id: i64) -> StoreResult<Option<ProductRecord>> {
        let listed = self
            .read_through(CacheKey::Product(id), || async {
                Ok(store.product(id).await?.map(|p| Listed {
                    items: vec![p],
                    total: 1,
                }))
            })
            .await?;
        Ok(listed.and_then(|l| l.items.into_iter().next()))
    }

    /// A miss reads the database and is returned as read (fresher than any overlay); a hit
    /// gets the live stock levels laid over its rows.
    async fn read_through<F, Fut>(&self, key: CacheKey, read: F) -> StoreResult<Option<Listed>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StoreResult<Option<Listed>>>,
    {
        match self.cache.get(key).await {
            Lookup::Hit(mut listed) => {
                self.metrics.cache_hits.inc();
                let ids: Vec<i64> = listed.items.iter().map(|p| p.id).collect();
                let levels = self.cache.levels(&ids).await;
                for (row, level) in listed.items.iter_mut().zip(levels) {
                    if let Some(level) = level {
                        row.on_hand = level.on_hand;
                        row.held = level.held;
                    }
                }
                Ok(Some(listed))
            }
            Lookup::Miss(ticket) => {
                self.metrics.cache_misses.inc();
                let listed = read().await?;
                if let Some(listed) = &listed {
                    self.cache.put(key, ticket, listed).await;
                }
                Ok(listed)
            }
        }
    }

    pub async fn observe(&self, seen: &[LevelsSeen]) {
        if !seen.is_empty() {
            self.cache.observe(seen).await;
        }
    }

    pub async fn invalidate(&self) {
        self.cache.invalidate().await;
    }
}
