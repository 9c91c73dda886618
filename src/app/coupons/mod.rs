//! First-come coupon claims: the order of checks in front of the database.
//!
//! 1. The node's sold-out flag (no I/O).
//! 2. The campaign's terms, from a per-node copy: terms never change after creation, so
//!    the copy is read from the database once per campaign.
//! 3. The issue window, against those terms.
//! 4. The coupon gate (one Redis round trip when configured; `cluster::coupon_gate`).
//! 5. The database, which decides each claim as if alone, a burst of them in one
//!    transaction ([`claims`], `store::CouponStore::issue_coupons`).
//!
//! Steps 1–4 may only refuse what the database would refuse too, or — when Redis has
//! drifted — what `stampede verify` reports; the database is never bypassed to issue.

mod claims;

use super::error::{require, AppError, AppResult};
use crate::clock::SharedClock;
use crate::cluster::coupon_gate::{CouponAdmit, CouponGate};
use crate::domain::{Actor, Role, Timestamp};
use crate::events::EventSync;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{
    CampaignRecord, IssueOutcome, NewCampaign, Page, PageRequest, Store, StoreError, StoreResult,
    UserCouponRecord,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Campaign terms kept per node; beyond this the copy is dropped and refilled on demand.
const MAX_CACHED_CAMPAIGNS: usize = 10_000;

pub struct Coupons {
    store: Arc<dyn Store>,
    gate: Arc<CouponGate>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    events: EventSync,
    terms: RwLock<HashMap<i64, Arc<CampaignRecord>>>,
    claims: claims::Claims,
}

impl Coupons {
    pub fn new(
        store: Arc<dyn Store>,
        gate: Arc<CouponGate>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        events: EventSync,
    ) -> Coupons {
        Coupons {
            claims: claims::Claims::start(store.clone(), clock.clone(), metrics.clone()),
            store,
            gate,
            clock,
            metrics,
            events,
            terms: RwLock::new(HashMap::new()),
        }
    }

    pub fn gate(&self) -> &Arc<CouponGate> {
        &self.gate
    }

    /// The application's time: when a coupon is read, its `expired` state is derived from it.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// An admin's new campaign. `build` makes it from the validated request at `now` (its
    /// issue window opens now unless it says otherwise).
    pub async fn create(
        &self,
        actor: &Actor,
        build: impl FnOnce(Timestamp) -> Result<NewCampaign, crate::domain::DomainError>,
    ) -> AppResult<CampaignRecord> {
        require(actor, &[Role::Admin])?;
        let now = self.clock.now();
        let campaign = build(now)?;
        let created = self.store.insert_campaign(&campaign, now).await?;
        self.remember(&created);
        self.events.wake();
        Ok(created)
    }

    /// The buyer's coupons, newest first.
    pub async fn of_buyer(
        &self,
        actor: &Actor,
        page: PageRequest,
    ) -> AppResult<Page<UserCouponRecord>> {
        require(actor, &[Role::Buyer])?;
        Ok(self.store.user_coupons(actor.id, page).await?)
    }

    /// Claims one coupon of the campaign for the buyer: their new coupon, or why not.
    pub async fn issue(
        self: &Arc<Self>,
        actor: &Actor,
        campaign_id: i64,
    ) -> AppResult<UserCouponRecord> {
        require(actor, &[Role::Buyer])?;
        match self.claim(campaign_id, actor.id).await? {
            IssueOutcome::Issued { coupon, .. } => {
                self.events.wake();
                Ok(coupon)
            }
            IssueOutcome::UnknownCampaign => Err(AppError::not_found("coupon campaign")),
            IssueOutcome::NotIssuable => Err(AppError::CouponNotIssuable),
            IssueOutcome::SoldOut => Err(AppError::CouponSoldOut),
            IssueOutcome::AlreadyIssued => Err(AppError::CouponAlreadyIssued),
        }
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
        let now = self.clock.now();
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
        let outcome = self.claims.issue(&campaign, user_id).await;
        self.gate
            .settle(admit, campaign_id, user_id, &outcome)
            .await;
        outcome
    }
}
