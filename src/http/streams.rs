//! A bound on live streams (Server-Sent Events): at most `streams_per_user_max` open per
//! user on this node, each ended by the server at `stream_max_age_secs`.
//!
//! A stream holds a connection, a task's worth of memory and a subscription to the event
//! hub for as long as the client keeps it; without a bound, one account could open
//! thousands. The count is per node, like the streams themselves (a user's streams on
//! another node hold that node's resources, not this one's). A slot is taken before the
//! stream starts and given back when the stream is dropped, however it ends: the client
//! goes away, the stream finishes, the server shuts down or the stream reaches its age.
//! The age bound means a slot is never held forever by a client that went quiet without
//! closing; clients reconnect (`EventSource` does so by itself).

use super::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics::{AbuseLabels, Metrics};
use futures_util::Stream;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

#[derive(Clone)]
pub struct StreamLimits {
    inner: Arc<Inner>,
}

struct Inner {
    /// Open streams per user; a user with none has no entry.
    open: Mutex<HashMap<i64, usize>>,
    max_per_user: usize,
    max_age: Duration,
    metrics: Arc<Metrics>,
}

impl StreamLimits {
    pub fn new(max_per_user: usize, max_age: Duration, metrics: Arc<Metrics>) -> StreamLimits {
        StreamLimits {
            inner: Arc::new(Inner {
                open: Mutex::new(HashMap::new()),
                max_per_user,
                max_age,
                metrics,
            }),
        }
    }

    /// A slot for one more stream of `user`, or 429 `too_many_streams`.
    pub fn open(&self, user: i64) -> ApiResult<StreamSlot> {
        let inner = &self.inner;
        let mut open = inner.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user).or_insert(0);
        if *count >= inner.max_per_user {
            let reason = "streams_per_user";
            inner
                .metrics
                .abuse_refused
                .get_or_create(&AbuseLabels { reason })
                .inc();
            let message = format!(
                "at most {} live streams per user; close one first",
                inner.max_per_user
            );
            return Err(ApiError::new(ErrorCode::TooManyStreams, message));
        }
        *count += 1;
        inner.metrics.live_streams.inc();
        Ok(StreamSlot {
            inner: self.inner.clone(),
            user,
        })
    }

    /// `stream` in a slot of `user`'s, ended at the maximum age.
    pub fn bounded<S: Stream>(&self, user: i64, stream: S) -> ApiResult<Bounded<S>> {
        Ok(self.open(user)?.bound(stream))
    }

    /// Streams `user` has open on this node.
    pub fn open_for(&self, user: i64) -> usize {
        let open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&user).copied().unwrap_or(0)
    }
}

/// One open stream's place in its user's count, given back on drop.
pub struct StreamSlot {
    inner: Arc<Inner>,
    user: i64,
}

impl StreamSlot {
    /// The stream that holds this slot for as long as it lives, ended at the maximum age.
    pub fn bound<S: Stream>(self, stream: S) -> Bounded<S> {
        Bounded {
            deadline: Box::pin(tokio::time::sleep(self.inner.max_age)),
            stream: Box::pin(stream),
            _slot: self,
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
        self.inner.metrics.live_streams.dec();
    }
}

/// A stream that ends at its deadline, holding its slot until dropped.
pub struct Bounded<S> {
    stream: Pin<Box<S>>,
    deadline: Pin<Box<Sleep>>,
    _slot: StreamSlot,
}

impl<S: Stream> Stream for Bounded<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        self.stream.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn limits(max: usize, age: Duration) -> StreamLimits {
        StreamLimits::new(max, age, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn a_user_holds_at_most_max_and_a_dropped_stream_frees_its_slot() {
        let limits = limits(2, Duration::from_secs(60));
        let first = limits
            .bounded(1, futures_util::stream::pending::<()>())
            .unwrap();
        let _second = limits.open(1).unwrap();
        let refused = limits.open(1).err().expect("third refused");
        assert_eq!(refused.code, ErrorCode::TooManyStreams);
        assert!(limits.open(2).is_ok(), "per user");
        drop(first);
        assert_eq!(limits.open_for(1), 1);
        assert!(limits.open(1).is_ok());
    }

    #[tokio::test]
    async fn a_stream_ends_at_its_age() {
        let limits = limits(1, Duration::from_millis(50));
        let mut stream = limits
            .bounded(7, futures_util::stream::pending::<()>())
            .unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert_eq!(ended, Ok(None));
        drop(stream);
        assert_eq!(limits.open_for(7), 0);
    }
}
