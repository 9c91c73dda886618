//! First-come coupon claims: the order of checks in front of the database.
//!
//! 1. The node's sold-out flag (no I/O).
//! 2. The campaign's terms, from a per-node copy: terms never change after creation, so
//!    the copy is read from the database once per campaign.
//! 3. The issue window, against those terms.
//! 4. The coupon gate (one Redis round trip when configured; `cluster::coupon_gate`).
//! 5. The database, which decides in one transaction (`store::CouponStore::issue_coupon`).
//!
//! Steps 1–4 may only refuse what the database would refuse too, or — when Redis has
//! drifted — what `stampede verify` reports; the database is never bypassed to issue.

use crate::cluster::coupon_gate::{CouponAdmit, CouponGate};
use crate::domain::coupon::expires_at;
use crate::domain::Timestamp;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{
    CampaignRecord, IssueOutcome, NewCampaign, NewUserCoupon, Store, StoreError, StoreResult,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Campaign terms kept per node; beyond this the copy is dropped and refilled on demand.
const MAX_CACHED_CAMPAIGNS: usize = 10_000;

pub struct Coupons {
    store: Arc<dyn Store>,
    gate: Arc<CouponGate>,
    metrics: Arc<Metrics>,
    terms: RwLock<HashMap<i64, Arc<CampaignRecord>>>,
}

impl Coupons {
    pub fn new(store: Arc<dyn Store>, gate: Arc<CouponGate>, metrics: Arc<Metrics>) -> Coupons {
        Coupons {
            store,
            gate,
            metrics,
            terms: RwLock::new(HashMap::new()),
        }
    }

    pub fn gate(&self) -> &Arc<CouponGate> {
        &self.gate
    }

    pub async fn create(&self, campaign: &NewCampaign) -> StoreResult<CampaignRecord> {
        let created = self
            .store
            .insert_campaign(campaign, Timestamp::now())
            .await?;
        self.remember(&created);
        Ok(created)
    }

    /// The campaign as it is now (with its current `issued`), read from the database.
    pub async fn campaign(&self, id: i64) -> StoreResult<Option<CampaignRecord>> {
        let campaign = self.store.campaign(id).await?;
        if let Some(c) = &campaign {
            self.remember(c);
        }
        Ok(campaign)
    }

    fn remember(&self, campaign: &CampaignRecord) {
        if let Ok(mut terms) = self.terms.write() {
            if terms.len() >= MAX_CACHED_CAMPAIGNS {
                terms.clear();
            }
            terms.insert(campaign.id, Arc::new(campaign.clone()));
        }
    }

    /// The campaign's terms (its `issued` may be stale: only the database counts).
    async fn terms(&self, id: i64) -> StoreResult<Option<Arc<CampaignRecord>>> {
        let cached = self.terms.read().ok().and_then(|t| t.get(&id).cloned());
        if cached.is_some() {
            return Ok(cached);
        }
        Ok(self.campaign(id).await?.map(Arc::new))
    }

    /// Claims one coupon of `campaign_id` for `user_id`. The claim runs in a task of its
    /// own, so a client that hangs up (or a request timeout) cannot stop it between the
    /// gate counting it and the database answering: a pass is always settled.
    #[tracing::instrument(skip(self))]
    pub async fn claim(
        self: &Arc<Self>,
        campaign_id: i64,
        user_id: i64,
    ) -> StoreResult<IssueOutcome> {
        let this = self.clone();
        let outcome = tokio::spawn(async move { this.decide(campaign_id, user_id).await })
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("claim task failed: {e}"))));
        match &outcome {
            Ok(IssueOutcome::Issued { .. }) => {
                self.metrics.coupons_issued.inc();
            }
            Ok(refused) => {
                let reason = match refused {
                    IssueOutcome::UnknownCampaign => "unknown_campaign",
                    IssueOutcome::NotIssuable => "not_issuable",
                    IssueOutcome::SoldOut => "sold_out",
                    IssueOutcome::AlreadyIssued => "already_issued",
                    IssueOutcome::Issued { .. } => "issued",
                };
                self.metrics
                    .coupons_refused
                    .get_or_create(&ReasonLabels {
                        reason: reason.to_owned(),
                    })
                    .inc();
            }
            Err(_) => {}
        }
        outcome
    }

    async fn decide(&self, campaign_id: i64, user_id: i64) -> StoreResult<IssueOutcome> {
        if self.gate.is_sold_out(campaign_id) {
            return Ok(IssueOutcome::SoldOut);
        }
        let Some(campaign) = self.terms(campaign_id).await? else {
            return Ok(IssueOutcome::UnknownCampaign);
        };
        let now = Timestamp::now();
        if !campaign.window().contains(now) {
            return Ok(IssueOutcome::NotIssuable);
        }
        let admit = self
            .gate
            .admit(campaign_id, user_id, campaign.total_quantity)
            .await;
        match admit {
            CouponAdmit::SoldOut => return Ok(IssueOutcome::SoldOut),
            CouponAdmit::AlreadyIssued => return Ok(IssueOutcome::AlreadyIssued),
            CouponAdmit::Pass | CouponAdmit::Ungated => {}
        }
        let coupon = NewUserCoupon {
            campaign_id,
            user_id,
            expires_at: expires_at(now, campaign.valid_days, campaign.issue_ends_at),
        };
        let outcome = self.store.issue_coupon(&coupon, now).await;
        self.gate
            .settle(admit, campaign_id, user_id, &outcome)
            .await;
        outcome
    }
}
