//! What every handler shares: the use cases, and the few parts of the node the transport
//! itself needs (token checks, rate limits, live streams, rendered bodies, metrics).

use super::rendered::RenderedCache;
use super::streams::StreamLimits;
use crate::app::App;
use crate::auth::AuthService;
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::events::{EventSync, Hub};
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;

/// Axum clones the state for each request (and each middleware that reads it), so it is a
/// single `Arc`: one atomic increment per clone, not a dozen.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// The use cases: handlers translate to and from them.
    pub app: App,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// Readiness pings the database; tests read it behind the API's back.
    pub store: Arc<dyn Store>,
    /// Verifies access tokens (the `AuthUser` extractor, the rate limiter).
    pub auth: Arc<AuthService>,
    pub metrics: Arc<Metrics>,
    /// What nodes share: the rate limiter, the gates and caches (read by tests).
    pub cluster: Cluster,
    /// The dispatcher's progress, which keys the rendered bodies.
    pub events: EventSync,
    /// Live updates for the SSE streams.
    pub hub: Arc<Hub>,
    /// How many live streams each user may hold open, and for how long.
    pub streams: StreamLimits,
    /// Rendered bodies of the hottest public reads (see `http::rendered`).
    pub rendered: RenderedCache,
    /// Flips to `true` when the server shuts down; live streams end on it.
    pub shutdown: watch::Receiver<bool>,
}
