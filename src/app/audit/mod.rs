//! `stampede verify` (DESIGN §1): recomputes every balance from its ledger and every count
//! from its rows, and lists each difference. Clean means no problems at all. The store
//! reads what to compare in one snapshot per area (`store::AuditStore`); the rules of what
//! must add up live here: stock and orders, coupons and benefits in [`ledgers`], points in
//! [`points`], partner orders' fulfilment in [`fulfilment`], statements in [`settlement`].

mod fulfilment;
pub mod ledgers;
pub mod points;
pub mod report;
mod settlement;

pub use ledgers::check;
pub use report::Report;

use crate::cluster::coupon_gate::CouponGate;
use crate::store::Store;

pub async fn run(store: &dyn Store) -> anyhow::Result<Report> {
    let mut report = ledgers::check(&store.audit().await?);
    // A separate read from the audit's snapshot: an entry is linked after its order
    // commits, so a later read can only find more orders, never miss one.
    for b in store.waitlist_audit().await? {
        report.problems.push(format!(
            "waitlist entry {} ({}) of user {}: order {:?} is not that buyer's order of its product and quantity",
            b.entry_id, b.status, b.user_id, b.order_id
        ));
    }
    let campaigns = store.coupon_audit().await?;
    report.campaigns = campaigns.len();
    for campaign in &campaigns {
        ledgers::check_campaign(campaign, &mut report.problems);
    }
    points::check(&store.points_audit().await?, &mut report.problems);
    ledgers::check_benefits(&store.benefits_audit().await?, &mut report.problems);
    fulfilment::check(&store.fulfilment_audit().await?, &mut report.problems);
    settlement::check(&store.settlement_audit().await?, &mut report.problems);
    Ok(report)
}

/// Differences between the Redis coupon gate and the database, one line each; none
/// without Redis. The database is right: `stampede verify --repair` resets the gate.
pub async fn coupon_gate(store: &dyn Store, gate: &CouponGate) -> anyhow::Result<Vec<String>> {
    gate.differences(store).await
}

/// What `stampede verify --repair` does: resets the Redis coupon gate from the database;
/// returns one line per campaign it changed.
pub async fn repair_coupon_gate(
    store: &dyn Store,
    gate: &CouponGate,
) -> anyhow::Result<Vec<String>> {
    gate.repair(store).await
}
