//! Ready-to-send JSON bodies of the hottest public reads (`GET /products` pages and
//! `GET /products/{id}`), the seeds' listing-page case. During a drop thousands of buyers
//! refresh the same page: rendering it once per change instead of once per request is what
//! keeps the listing near the trivial endpoint's ceiling.
//!
//! A body is valid while this node's dispatcher cursor has not moved since it was rendered:
//! the dispatcher applies an event to the listing cache and stock overlay *before* it moves
//! the cursor, and every change writes an event. So a body rendered after reading cursor
//! `c` reflects every change up to `c`, and any later change retires it.
//!
//! Only with the embedded setup: with Redis, another node's change is visible through the
//! shared cache before this node's dispatcher has seen it, and a body keyed by this node's
//! cursor would trail it for a moment. There the Redis cache answers without the database.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bodies kept at most; beyond it new renderings are simply not kept (deep pages are rare).
const MAX_RENDERED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenderKey {
    Page { page: i64, size: i64 },
    Product(i64),
}

#[derive(Default)]
pub struct RenderedCache {
    enabled: bool,
    bodies: Mutex<HashMap<RenderKey, (i64, Bytes)>>,
}

impl RenderedCache {
    pub fn new(enabled: bool) -> RenderedCache {
        RenderedCache {
            enabled,
            bodies: Mutex::default(),
        }
    }

    /// The body rendered at `cursor`, if nothing has been dispatched since.
    pub fn get(&self, key: RenderKey, cursor: i64) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies
            .get(&key)
            .filter(|(at, _)| *at == cursor)
            .map(|(_, body)| body.clone())
    }

    pub fn put(&self, key: RenderKey, cursor: i64, body: Bytes) {
        if !self.enabled {
            return;
        }
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        if bodies.len() >= MAX_RENDERED && !bodies.contains_key(&key) {
            bodies.retain(|_, (at, _)| *at == cursor);
            if bodies.len() >= MAX_RENDERED {
                return;
            }
        }
        bodies.insert(key, (cursor, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_served_only_at_the_cursor_it_was_rendered_at() {
        let cache = RenderedCache::new(true);
        let key = RenderKey::Page { page: 1, size: 40 };
        cache.put(key, 7, Bytes::from_static(b"[1]"));
        assert_eq!(cache.get(key, 7).as_deref(), Some(&b"[1]"[..]));
        assert!(cache.get(key, 8).is_none(), "an event since retires it");
        assert!(cache.get(RenderKey::Product(1), 7).is_none());
        let off = RenderedCache::new(false);
        off.put(key, 7, Bytes::from_static(b"[1]"));
        assert!(off.get(key, 7).is_none());
    }
}
