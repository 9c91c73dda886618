//! The in-process listing cache: the embedded mode's, and every node's fallback while
//! Redis is away.

use super::{CacheKey, CatalogCache, LevelsSeen, Listed, Lookup, Ticket};
use crate::store::StockLevels;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
