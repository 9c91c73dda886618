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
use crate::store::{Page, PageRequest, ProductRecord, StockLevels, Store, StoreError, StoreResult};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The reads in flight, by key and generation: requests that miss together share the
    /// first one's read instead of each reading (a drop's opening, or every new generation
    /// under a thousand browsers).
    reading: Arc<Reads>,
}

impl Listing {
    pub fn new(cache: Arc<dyn CatalogCache>, metrics: Arc<Metrics>) -> Listing {
        Listing {
            cache,
            metrics,
            reading: Arc::default(),
        }
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
    /// gets the live stock levels laid over its rows. Misses of one key under one generation
    /// on this node share one read: a request that missed after a change sees a later
    /// generation, so it never joins a read that may predate the change.
    async fn read_through<F, Fut>(&self, key: CacheKey, read: F) -> StoreResult<Option<Listed>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StoreResult<Option<Listed>>>,
    {
        let ticket = match self.cache.get(key).await {
            Lookup::Hit(listed) => return Ok(Some(self.overlaid(listed).await)),
            Lookup::Miss(ticket) => ticket,
        };
        let shared = SharedRead::join(&self.reading, (key, ticket));
        let mut reader = false;
        let listed = shared
            .result
            .get_or_try_init(|| async {
                reader = true;
                self.metrics.cache_misses.inc();
                let listed = read().await?;
                if let Some(listed) = &listed {
                    self.cache.put(key, ticket, listed).await;
                }
                Ok::<_, StoreError>(listed)
            })
            .await?;
        if !reader {
            self.metrics.cache_hits.inc();
        }
        Ok(listed.clone())
    }

    /// A cached entry with the live stock levels laid over its rows.
    async fn overlaid(&self, mut listed: Listed) -> Listed {
        self.metrics.cache_hits.inc();
        let ids: Vec<i64> = listed.items.iter().map(|p| p.id).collect();
        let levels = self.cache.levels(&ids).await;
        for (row, level) in listed.items.iter_mut().zip(levels) {
            if let Some(level) = level {
                row.on_hand = level.on_hand;
                row.held = level.held;
            }
        }
        listed
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

type ReadKey = (CacheKey, Ticket);
type Reads = Mutex<HashMap<ReadKey, Arc<OnceCell<Option<Listed>>>>>;

/// One database read shared by the requests that missed the same key under the same
/// generation. If it fails, the next waiter reads in its place. The last request to let go
/// removes it, so the map holds only reads in flight.
struct SharedRead<'a> {
    reads: &'a Reads,
    key: ReadKey,
    result: Arc<OnceCell<Option<Listed>>>,
}

impl<'a> SharedRead<'a> {
    fn join(reads: &'a Reads, key: ReadKey) -> SharedRead<'a> {
        let result = lock(reads).entry(key).or_default().clone();
        SharedRead { reads, key, result }
    }
}

impl Drop for SharedRead<'_> {
    fn drop(&mut self) {
        let mut reads = lock(self.reads);
        // Clones are made only under this lock: two owners (the map and this request) means
        // nobody else is waiting.
        let last = Arc::strong_count(&self.result) == 2;
        if last
            && reads
                .get(&self.key)
                .is_some_and(|r| Arc::ptr_eq(r, &self.result))
        {
            reads.remove(&self.key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn listing() -> Listing {
        let cache = Arc::new(LocalCache::new(Duration::from_secs(60), 100));
        Listing::new(cache, Arc::new(Metrics::default()))
    }

    const PAGE: CacheKey = CacheKey::Page { page: 1, size: 40 };

    /// A read of the database that takes a while and counts itself.
    async fn slow_read(reads: &AtomicUsize, total: i64) -> StoreResult<Option<Listed>> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(Some(Listed {
            items: Vec::new(),
            total,
        }))
    }

    #[tokio::test]
    async fn misses_together_share_one_read() {
        let listing = listing();
        let reads = AtomicUsize::new(0);
        let misses = (0..20).map(|_| listing.read_through(PAGE, || slow_read(&reads, 7)));
        let answers = futures_util::future::join_all(misses).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Ok(Some(l)) if l.total == 7)));
        assert_eq!(listing.metrics.cache_misses.get(), 1);
        assert_eq!(listing.metrics.cache_hits.get(), 19);
        assert!(lock(&listing.reading).is_empty(), "nothing left in flight");
    }

    #[tokio::test]
    async fn a_miss_after_a_change_reads_again() {
        let listing = listing();
        let reads = AtomicUsize::new(0);
        let before = listing.read_through(PAGE, || slow_read(&reads, 1));
        let after = async {
            // Starts while the first read is in flight, after a product changed.
            tokio::time::sleep(Duration::from_millis(5)).await;
            listing.invalidate().await;
            listing.read_through(PAGE, || slow_read(&reads, 2)).await
        };
        let (before, after) = tokio::join!(before, after);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(before.unwrap().unwrap().total, 1);
        assert_eq!(
            after.unwrap().unwrap().total,
            2,
            "not the read from before the change"
        );
    }

    #[tokio::test]
    async fn a_failed_read_is_tried_again_by_the_next_in_line() {
        let listing = listing();
        let reads = AtomicUsize::new(0);
        let failing = listing.read_through(PAGE, || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(StoreError::Unavailable("down".into()))
        });
        let next = listing.read_through(PAGE, || slow_read(&reads, 3));
        let (failed, next) = tokio::join!(failing, next);
        assert!(failed.is_err());
        assert_eq!(next.unwrap().unwrap().total, 3);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
