//! The listing cache in Redis, shared by every node: rows and pages under a generation, and
//! stock levels versioned by event id (see the module above).

use super::{CacheKey, CatalogCache, LevelsSeen, Listed, Lookup, Ticket};
use crate::cluster::redis::{Reconnect, RedisLink};
use crate::domain::Timestamp;
use crate::store::{ProductRecord, StockLevels};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
