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

use super::redis::{Reconnect, RedisLink};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{Page, PageRequest, ProductRecord, StockLevels, Store, StoreResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Stock levels kept per product in process: past this many, all are dropped together with
/// every cached page (a page must never outlive the levels that correct it).
const LOCAL_LEVELS_MAX: usize = 1_000_000;

struct LocalState {
    generation: u64,
    entries: HashMap<CacheKey, (u64, Instant, Listed)>,
    levels: HashMap<i64, (i64, StockLevels)>,
}

/// The in-process cache (embedded mode, and the fallback while Redis is away).
pub struct LocalCache {
    state: Mutex<LocalState>,
    ttl: Duration,
    max_entries: usize,
}

impl LocalCache {
    pub fn new(ttl: Duration, max_entries: usize) -> LocalCache {
        LocalCache {
            state: Mutex::new(LocalState {
                generation: 0,
                entries: HashMap::new(),
                levels: HashMap::new(),
            }),
            ttl,
            max_entries,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl CatalogCache for LocalCache {
    async fn get(&self, key: CacheKey) -> Lookup {
        let state = self.lock();
        match state.entries.get(&key) {
            Some((generation, stored, listed))
                if *generation == state.generation && stored.elapsed() < self.ttl =>
            {
                Lookup::Hit(listed.clone())
            }
            _ => Lookup::Miss(Ticket(state.generation)),
        }
    }

    async fn put(&self, key: CacheKey, ticket: Ticket, listed: &Listed) {
        let mut state = self.lock();
        if ticket.0 != state.generation {
            return;
        }
        if state.entries.len() >= self.max_entries {
            // Bounded memory, simply: a full cache starts over rather than tracking recency.
            state.entries.clear();
        }
        state
            .entries
            .insert(key, (ticket.0, Instant::now(), listed.clone()));
    }

    async fn levels(&self, product_ids: &[i64]) -> Vec<Option<StockLevels>> {
        let state = self.lock();
        product_ids
            .iter()
            .map(|id| state.levels.get(id).map(|(_, l)| *l))
            .collect()
    }

    async fn observe(&self, seen: &[LevelsSeen]) {
        let mut state = self.lock();
        if state.levels.len() + seen.len() > LOCAL_LEVELS_MAX {
            state.levels.clear();
            state.entries.clear();
            state.generation += 1;
        }
        for s in seen {
            let entry = state
                .levels
                .entry(s.levels.product_id)
                .or_insert((i64::MIN, s.levels));
            if s.event_id > entry.0 {
                *entry = (s.event_id, s.levels);
            }
        }
    }

    async fn invalidate(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.clear();
    }
}

/// A product row as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Row {
    id: i64,
    partner_id: i64,
    name: String,
    price: i64,
    release_at: Timestamp,
    max_per_user: Option<i64>,
    on_hand: i64,
    held: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    items: Vec<Row>,
    total: i64,
}

impl From<&ProductRecord> for Row {
    fn from(p: &ProductRecord) -> Row {
        Row {
            id: p.id,
            partner_id: p.partner_id,
            name: p.name.clone(),
            price: p.price,
            release_at: p.release_at,
            max_per_user: p.max_per_user,
            on_hand: p.on_hand,
            held: p.held,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<Row> for ProductRecord {
    fn from(r: Row) -> ProductRecord {
        ProductRecord {
            id: r.id,
            partner_id: r.partner_id,
            name: r.name,
            price: r.price,
            release_at: r.release_at,
            max_per_user: r.max_per_user,
            on_hand: r.on_hand,
            held: r.held,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// ARGV = ttl, then (event id, on_hand, held) per key. Values are `id:on_hand:held`; one is
/// replaced only by a newer event.
const LEVELS_LUA: &str = r"
for i, key in ipairs(KEYS) do
  local id = ARGV[3 * i - 1]
  local current = redis.call('GET', key)
  local version = current and tonumber(string.match(current, '^(%-?%d+):'))
  if not version or version < tonumber(id) then
    redis.call('SET', key, id .. ':' .. ARGV[3 * i] .. ':' .. ARGV[3 * i + 1], 'EX', ARGV[1])
  end
end
return 0
";

/// The shared cache (scale-out mode). While Redis is away every read is a miss and goes to
/// the database: the in-process cache could not be invalidated by the other nodes' changes
/// until their events reach this node, and correctness comes first.
pub struct RedisCache {
    link: Arc<RedisLink>,
    ttl_secs: u64,
    levels: redis::Script,
}

impl RedisCache {
    pub fn new(link: Arc<RedisLink>, ttl_secs: u64) -> RedisCache {
        RedisCache {
            link,
            ttl_secs,
            levels: redis::Script::new(LEVELS_LUA),
        }
    }

    fn entry_key(&self, key: CacheKey) -> String {
        match key {
            CacheKey::Page { page, size } => {
                self.link.key(format_args!("cache:page:{page}:{size}"))
            }
            CacheKey::Product(id) => self.link.key(format_args!("cache:product:{id}")),
        }
    }

    fn generation_key(&self) -> String {
        self.link.key("cache:generation")
    }

    /// Random, not incremented: every node bumps it for the same event, and no value may
    /// come back. It expires after two entry lives so idle deployments leave nothing behind;
    /// a missing generation reads as 0, under which every entry stored since has expired.
    fn new_generation(&self) -> redis::Cmd {
        // Never 0 (no generation yet) nor `u64::MAX` (the ticket of a read while Redis is away).
        let generation: u64 = rand::random::<u64>() % (u64::MAX - 1) + 1;
        let mut set = redis::cmd("SET");
        set.arg(self.generation_key())
            .arg(generation)
            .arg("EX")
            .arg(self.ttl_secs.saturating_mul(2));
        set
    }
}

/// `GENERATION\nJSON` → the generation and the entry.
fn decode(raw: &str) -> Option<(u64, Listed)> {
    let (generation, json) = raw.split_once('\n')?;
    let stored: Stored = serde_json::from_str(json).ok()?;
    Some((
        generation.parse().ok()?,
        Listed {
            items: stored.items.into_iter().map(ProductRecord::from).collect(),
            total: stored.total,
        },
    ))
}

/// `id:on_hand:held` → levels.
fn parse_levels(product_id: i64, raw: &str) -> Option<StockLevels> {
    let mut parts = raw.split(':').skip(1).map(str::parse::<i64>);
    Some(StockLevels {
        product_id,
        on_hand: parts.next()?.ok()?,
        held: parts.next()?.ok()?,
    })
}

#[async_trait]
impl CatalogCache for RedisCache {
    async fn get(&self, key: CacheKey) -> Lookup {
        let keys = [self.generation_key(), self.entry_key(key)];
        let found = self
            .link
            .call("cache get", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<(Option<u64>, Option<String>)>(&mut c)
                    .await
            })
            .await;
        let Some((generation, entry)) = found else {
            // Redis is away: a ticket that can never be stored.
            return Lookup::Miss(Ticket(u64::MAX));
        };
        let generation = generation.unwrap_or(0);
        match entry.as_deref().and_then(decode) {
            Some((stored, listed)) if stored == generation => Lookup::Hit(listed),
            _ => Lookup::Miss(Ticket(generation)),
        }
    }

    async fn put(&self, key: CacheKey, ticket: Ticket, listed: &Listed) {
        if ticket.0 == u64::MAX {
            return;
        }
        let stored = Stored {
            items: listed.items.iter().map(Row::from).collect(),
            total: listed.total,
        };
        let Ok(json) = serde_json::to_string(&stored) else {
            return;
        };
        let (key, value, ttl) = (
            self.entry_key(key),
            format!("{}\n{json}", ticket.0),
            self.ttl_secs,
        );
        self.link
            .call("cache put", |mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    async fn levels(&self, product_ids: &[i64]) -> Vec<Option<StockLevels>> {
        let keys: Vec<String> = product_ids
            .iter()
            .map(|id| self.link.key(format_args!("stock:{id}")))
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        let found = self
            .link
            .call("cache levels", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Option<String>>>(&mut c)
                    .await
            })
            .await
            .unwrap_or_default();
        product_ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse_levels(*id, found.get(i)?.as_deref()?))
            .collect()
    }

    async fn observe(&self, seen: &[LevelsSeen]) {
        let mut call = self.levels.prepare_invoke();
        call.arg(self.ttl_secs.saturating_mul(2));
        for s in seen {
            call.key(self.link.key(format_args!("stock:{}", s.levels.product_id)))
                .arg(s.event_id)
                .arg(s.levels.on_hand)
                .arg(s.levels.held);
        }
        self.link
            .call("cache levels", |mut c| async move {
                call.invoke_async::<()>(&mut c).await
            })
            .await;
    }

    async fn invalidate(&self) {
        let set = self.new_generation();
        self.link
            .call("cache invalidate", |mut c| async move {
                set.query_async::<()>(&mut c).await
            })
            .await;
    }
}

#[async_trait]
impl Reconnect for RedisCache {
    /// This node may have missed product and stock events while away: start a new
    /// generation and drop the levels (rows read afterwards come from the database).
    async fn reconnected(&self, link: &RedisLink) {
        let set = self.new_generation();
        link.exec("cache invalidate", |mut c| async move {
            set.query_async::<()>(&mut c).await
        })
        .await;
        link.delete_matching("stock:*").await;
    }
}
