//! Group commit for coupon claims. Every claim that gets past the checks in front of the
//! database queues here; one task takes what has queued and hands it to the database as one
//! transaction (`store::CouponStore::issue_coupons`). Idle, a claim goes alone at once; in a
//! burst, the claims that arrive while a batch commits share the next one, so issuing a
//! campaign's first thousand coupons costs a few durable writes instead of a thousand.

use crate::clock::SharedClock;
use crate::domain::coupon::expires_at;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{CampaignRecord, IssueOutcome, NewUserCoupon, Store, StoreError, StoreResult};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Claims in one transaction at most.
const CLAIM_BATCH_MAX: usize = 256;
/// Claims waiting for the writer; beyond it, callers wait to queue.
const CLAIM_QUEUE_DEPTH: usize = 4096;

struct Claim {
    campaign_id: i64,
    user_id: i64,
    /// The campaign's terms that date the coupon's expiry from its issue.
    valid_days: Option<i64>,
    issue_ends_at: Option<Timestamp>,
    reply: oneshot::Sender<StoreResult<IssueOutcome>>,
}

/// The queue in front of the claim writer task, which runs while a `Claims` is alive.
pub(super) struct Claims {
    queue: mpsc::Sender<Claim>,
}

impl Claims {
    pub(super) fn start(
        store: Arc<dyn Store>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Claims {
        let (queue, rx) = mpsc::channel(CLAIM_QUEUE_DEPTH);
        tokio::spawn(write(store, clock, metrics, rx));
        Claims { queue }
    }

    /// The database's decision on `user_id`'s claim of `campaign`, taken in the next batch.
    pub(super) async fn issue(
        &self,
        campaign: &CampaignRecord,
        user_id: i64,
    ) -> StoreResult<IssueOutcome> {
        let (reply, answer) = oneshot::channel();
        let claim = Claim {
            campaign_id: campaign.id,
            user_id,
            valid_days: campaign.valid_days,
            issue_ends_at: campaign.issue_ends_at,
            reply,
        };
        self.queue.send(claim).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("coupon claim writer stopped".into())
}

async fn write(
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Claim>,
) {
    let mut batch = Vec::with_capacity(CLAIM_BATCH_MAX);
    while rx.recv_many(&mut batch, CLAIM_BATCH_MAX).await > 0 {
        metrics.coupon_claim_batch_size.observe(batch.len() as f64);
        // Issued now: each coupon's expiry counts from the batch's time.
        let now = clock.now();
        let (coupons, replies): (Vec<NewUserCoupon>, Vec<_>) = batch
            .drain(..)
            .map(|c| {
                let coupon = NewUserCoupon {
                    campaign_id: c.campaign_id,
                    user_id: c.user_id,
                    expires_at: expires_at(now, c.valid_days, c.issue_ends_at),
                };
                (coupon, c.reply)
            })
            .unzip();
        match store.issue_coupons(&coupons, now).await {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) if coupons.len() > 1 => {
                // One claim's failure (a lost connection, a deadlock with another node)
                // must not fail the others: each is tried alone.
                tracing::warn!(error = %e, size = coupons.len(), "coupon claim batch failed; retrying its claims one by one");
                for (coupon, reply) in coupons.into_iter().zip(replies) {
                    let outcome = store
                        .issue_coupons(std::slice::from_ref(&coupon), now)
                        .await
                        .and_then(|mut one| {
                            one.pop()
                                .ok_or_else(|| StoreError::Corrupt("no outcome for a claim".into()))
                        });
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // A batch of one: its claim's error.
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}
