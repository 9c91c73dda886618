//! The coupon gate: what absorbs a first-come burst before the database.
//!
//! Per node, a "sold out" flag per campaign, set only when a database said so (a claim
//! refused as sold out, or the claim that took the last coupon — on this node, or on
//! another that left the marker in Redis). Campaign totals never change and coupons never
//! return to a campaign, so the flag is never cleared, and later claims are refused without
//! touching the database or Redis.
//!
//! With Redis (`STAMPEDE_REDIS_URL`), one Lua script per claim does what seed 002's script
//! does, plus the duplicate check, in one round trip: a claim of a buyer already in the
//! campaign's issued-users set, or beyond the counter's `total`, is refused; otherwise the
//! counter is incremented and the buyer added, and the claim passes to the database, which
//! still decides. When the database refuses a pass, [`CouponGate::settle`] undoes it.
//!
//! The database wins every disagreement. Errors are only allowed in the safe direction:
//! missing keys (never written, expired, Redis restarted) count from zero, so more claims
//! reach the database, which refuses the extra ones. The unsafe direction — a counter above
//! the database's `issued`, or a member without a coupon — needs an undo that was lost
//! (Redis away at that moment, a node dying mid-claim); `stampede verify` reports it and
//! `stampede verify --repair` resets the gate from the database ([`CouponGate::repair`]).
//! While Redis is away, claims take the database path (the sold-out flag still applies).
//!
//! One struct rather than a trait with two implementations (unlike `gate`): the in-process
//! part (the flags) is the same in both modes, and the Redis part is optional on top.

use super::redis::RedisLink;
use crate::config::Config;
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::{IssueOutcome, Store, StoreResult};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long the gate's keys live after the last claim that touched them. Expiry is safe
/// (the gate starts again from zero, see the module comment); it bounds Redis memory.
const KEY_TTL_SECS: u64 = 7 * 86_400;
/// Members written per command when the gate is reset from the database.
const REPAIR_CHUNK: usize = 10_000;

/// The gate's answer to one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponAdmit {
    /// Counted in Redis: call [`CouponGate::settle`] with the database's answer.
    Pass,
    /// Not counted anywhere (no Redis, or Redis away): the database decides alone.
    Ungated,
    /// The campaign is known to be sold out: refuse without a database write.
    SoldOut,
    /// The gate knows this buyer holds a coupon of the campaign.
    AlreadyIssued,
}

/// KEYS: counter, issued-users set, sold-out marker. ARGV: user id, total, ttl.
/// Returns 0 pass (counted and added), 1 sold out by the counter, 2 already issued, 3 sold
/// out by the marker (a database said so: the node may remember it).
const ADMIT_LUA: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 3
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 2
end
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[2]) then
  return 1
end
redis.call('INCR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 0
";

/// KEYS: counter, issued-users set. ARGV: user id, 1 to remove the member too.
/// Never takes the counter below zero.
const UNDO_LUA: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
end
if ARGV[2] == '1' then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 0
";

/// One campaign's state in Redis, as `verify` compares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateState {
    pub count: Option<i64>,
    pub members: HashSet<i64>,
    pub sold_out: bool,
}

impl GateState {
    /// No key at all: nothing to compare (claims count from zero; see the module comment).
    pub fn is_empty(&self) -> bool {
        self.count.is_none() && self.members.is_empty() && !self.sold_out
    }
}

pub struct CouponGate {
    sold_out: RwLock<HashSet<i64>>,
    redis: Option<RedisCoupons>,
    metrics: Arc<Metrics>,
}

struct RedisCoupons {
    link: Arc<RedisLink>,
    admit: redis::Script,
    undo: redis::Script,
}

impl CouponGate {
    /// `link` is the node's Redis link, when Redis is configured.
    pub fn new(link: Option<Arc<RedisLink>>, metrics: Arc<Metrics>) -> CouponGate {
        CouponGate {
            sold_out: RwLock::new(HashSet::new()),
            redis: link.map(|link| RedisCoupons {
                link,
                admit: redis::Script::new(ADMIT_LUA),
                undo: redis::Script::new(UNDO_LUA),
            }),
            metrics,
        }
    }

    /// A gate of its own for a command (`stampede verify`): `None` without Redis in the
    /// configuration; an error when Redis is configured but cannot be reached.
    pub async fn connect(config: &Config) -> anyhow::Result<Option<CouponGate>> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        let metrics = Arc::new(Metrics::default());
        let link = Arc::new(RedisLink::new(
            url.expose(),
            &config.redis_prefix,
            Duration::from_millis(config.redis_timeout_ms),
            Duration::from_millis(config.redis_probe_ms),
            metrics.clone(),
        )?);
        anyhow::ensure!(
            link.connect_once(&[]).await,
            "redis_url is set but Redis cannot be reached"
        );
        Ok(Some(CouponGate::new(Some(link), metrics)))
    }

    fn keys(link: &RedisLink, campaign_id: i64) -> [String; 3] {
        [
            link.key(format_args!("coupon:{campaign_id}:n")),
            link.key(format_args!("coupon:{campaign_id}:users")),
            link.key(format_args!("coupon:{campaign_id}:sold_out")),
        ]
    }

    /// Known sold out on this node (the database said so).
    pub fn is_sold_out(&self, campaign_id: i64) -> bool {
        self.sold_out
            .read()
            .map(|s| s.contains(&campaign_id))
            .unwrap_or(false)
    }

    /// One round trip at most. Call after the campaign's window was checked; unless the
    /// answer is a refusal, call [`Self::settle`] once the database has answered.
    pub async fn admit(&self, campaign_id: i64, user_id: i64, total: i64) -> CouponAdmit {
        let admit = self.check(campaign_id, user_id, total).await;
        let refused = |reason: &str| {
            self.metrics
                .coupon_gate_refused
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        };
        match admit {
            CouponAdmit::Pass | CouponAdmit::Ungated => {
                self.metrics.coupon_gate_passes.inc();
            }
            CouponAdmit::SoldOut => refused("sold_out"),
            CouponAdmit::AlreadyIssued => refused("already_issued"),
        }
        admit
    }

    async fn check(&self, campaign_id: i64, user_id: i64, total: i64) -> CouponAdmit {
        if self.is_sold_out(campaign_id) {
            return CouponAdmit::SoldOut;
        }
        let Some(redis) = &self.redis else {
            return CouponAdmit::Ungated;
        };
        let [count, users, sold_out] = Self::keys(&redis.link, campaign_id);
        let mut call = redis.admit.prepare_invoke();
        call.key(count)
            .key(users)
            .key(sold_out)
            .arg(user_id)
            .arg(total)
            .arg(KEY_TTL_SECS);
        let reply = redis
            .link
            .call("coupon gate admit", |mut c| async move {
                call.invoke_async::<i64>(&mut c).await
            })
            .await;
        match reply {
            Some(0) => CouponAdmit::Pass,
            Some(1) => CouponAdmit::SoldOut,
            Some(2) => CouponAdmit::AlreadyIssued,
            Some(3) => {
                // The marker is written only after a database answer: as good as our own.
                self.remember_sold_out(campaign_id);
                CouponAdmit::SoldOut
            }
            // Redis away (or an answer this code does not know): the database decides.
            _ => CouponAdmit::Ungated,
        }
    }

    /// After the database answered a claim: remembers a sold-out campaign, and undoes a
    /// pass the database refused. A duplicate keeps its member (the buyer does hold a
    /// coupon) but gives back the count; anything else gives back both. `outcome` is
    /// `Err` when the claim never reached a decision.
    pub async fn settle(
        &self,
        admit: CouponAdmit,
        campaign_id: i64,
        user_id: i64,
        outcome: &StoreResult<IssueOutcome>,
    ) {
        let sold_out = matches!(
            outcome,
            Ok(IssueOutcome::SoldOut) | Ok(IssueOutcome::Issued { remaining: 0, .. })
        );
        if sold_out {
            self.mark_sold_out(campaign_id).await;
        }
        if admit != CouponAdmit::Pass {
            return; // nothing was counted
        }
        let remove_member = match outcome {
            Ok(IssueOutcome::Issued { .. }) => return,
            Ok(IssueOutcome::AlreadyIssued) => false,
            _ => true,
        };
        let Some(redis) = &self.redis else { return };
        let [count, users, _] = Self::keys(&redis.link, campaign_id);
        let mut call = redis.undo.prepare_invoke();
        call.key(count)
            .key(users)
            .arg(user_id)
            .arg(u8::from(remove_member));
        let undone = redis
            .link
            .call("coupon gate undo", |mut c| async move {
                call.invoke_async::<()>(&mut c).await
            })
            .await;
        if undone.is_none() {
            // Left too high: `stampede verify` reports it, `--repair` resets it.
            tracing::warn!(
                campaign_id,
                user_id,
                "could not undo a coupon gate pass; run `stampede verify --repair`"
            );
        }
    }

    /// Sets this node's flag; `true` when it was not set before.
    fn remember_sold_out(&self, campaign_id: i64) -> bool {
        self.sold_out
            .write()
            .map(|mut s| s.insert(campaign_id))
            .unwrap_or(false)
    }

    /// Sets the flag on this node and the marker in Redis (for the other nodes).
    async fn mark_sold_out(&self, campaign_id: i64) {
        let newly = self.remember_sold_out(campaign_id);
        let Some(redis) = &self.redis else { return };
        if !newly {
            return; // this node wrote the marker already
        }
        let [_, _, marker] = Self::keys(&redis.link, campaign_id);
        redis
            .link
            .call("coupon gate sold out", |mut c| async move {
                redis::cmd("SET")
                    .arg(marker)
                    .arg(1)
                    .arg("EX")
                    .arg(KEY_TTL_SECS)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// The campaign's state in Redis; `None` without Redis or when it cannot be read.
    pub async fn state(&self, campaign_id: i64) -> Option<GateState> {
        let redis = self.redis.as_ref()?;
        let [count, users, sold_out] = Self::keys(&redis.link, campaign_id);
        let (count, members, sold_out) = redis
            .link
            .call("coupon gate read", |mut c| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(count)
                    .cmd("SMEMBERS")
                    .arg(users)
                    .cmd("EXISTS")
                    .arg(sold_out)
                    .query_async::<(Option<i64>, Vec<i64>, bool)>(&mut c)
                    .await
            })
            .await?;
        Some(GateState {
            count,
            members: members.into_iter().collect(),
            sold_out,
        })
    }

    /// Resets every campaign's Redis state from the database: the counter to `issued`, the
    /// set to the holders, the marker to whether it is sold out. Returns one line per
    /// campaign whose state changed. Run it while no claims arrive: a claim counted
    /// between the read and the write is lost from the gate (the safe direction).
    pub async fn repair(&self, store: &dyn Store) -> anyhow::Result<Vec<String>> {
        let Some(redis) = &self.redis else {
            return Ok(Vec::new());
        };
        let mut changed = Vec::new();
        for audit in store.coupon_audit().await? {
            let id = audit.campaign_id;
            let before = self.state(id).await.unwrap_or_default();
            let holders = store.coupon_holders(id).await?;
            let sold_out = audit.issued >= audit.total_quantity;
            let after = GateState {
                count: Some(audit.issued),
                members: holders.iter().copied().collect(),
                sold_out,
            };
            if before == after {
                continue;
            }
            anyhow::ensure!(
                self.write_state(redis, id, &holders, audit.issued, sold_out)
                    .await,
                "could not write the coupon gate of campaign {id} to Redis"
            );
            changed.push(format!(
                "campaign {id}: gate reset to count {} (was {}), {} members (was {}), sold out {sold_out} (was {})",
                audit.issued,
                before.count.map_or_else(|| "none".into(), |c| c.to_string()),
                holders.len(),
                before.members.len(),
                before.sold_out
            ));
        }
        Ok(changed)
    }

    async fn write_state(
        &self,
        redis: &RedisCoupons,
        campaign_id: i64,
        holders: &[i64],
        issued: i64,
        sold_out: bool,
    ) -> bool {
        let [count, users, marker] = Self::keys(&redis.link, campaign_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&count)
            .arg(&users)
            .arg(&marker)
            .ignore();
        for chunk in holders.chunks(REPAIR_CHUNK) {
            pipe.cmd("SADD").arg(&users).arg(chunk.to_vec()).ignore();
        }
        pipe.cmd("EXPIRE")
            .arg(&users)
            .arg(KEY_TTL_SECS)
            .ignore()
            .cmd("SET")
            .arg(&count)
            .arg(issued)
            .arg("EX")
            .arg(KEY_TTL_SECS)
            .ignore();
        if sold_out {
            pipe.cmd("SET")
                .arg(&marker)
                .arg(1)
                .arg("EX")
                .arg(KEY_TTL_SECS)
                .ignore();
        }
        redis
            .link
            .call("coupon gate repair", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
            .is_some()
    }

    /// Differences between the gate and the database, one line each (for `verify`).
    /// Campaigns without any Redis key are skipped: the gate then counts from zero.
    pub async fn differences(&self, store: &dyn Store) -> anyhow::Result<Vec<String>> {
        if self.redis.is_none() {
            return Ok(Vec::new());
        }
        let mut problems = Vec::new();
        for audit in store.coupon_audit().await? {
            let id = audit.campaign_id;
            let Some(state) = self.state(id).await else {
                anyhow::bail!("could not read the coupon gate of campaign {id} from Redis");
            };
            if state.is_empty() {
                continue;
            }
            let holders: HashSet<i64> = store.coupon_holders(id).await?.into_iter().collect();
            compare(
                id,
                audit.issued,
                audit.total_quantity,
                &holders,
                &state,
                &mut problems,
            );
        }
        Ok(problems)
    }
}

fn compare(
    id: i64,
    issued: i64,
    total: i64,
    holders: &HashSet<i64>,
    gate: &GateState,
    problems: &mut Vec<String>,
) {
    let count = gate.count.unwrap_or(0);
    if count != issued {
        problems.push(format!(
            "coupon campaign {id}: the Redis gate counts {count} but the database issued {issued}"
        ));
    }
    let strangers = gate.members.difference(holders).count();
    if strangers > 0 {
        problems.push(format!(
            "coupon campaign {id}: {strangers} buyer(s) in the Redis gate hold no coupon"
        ));
    }
    let missing = holders.difference(&gate.members).count();
    if missing > 0 {
        problems.push(format!(
            "coupon campaign {id}: {missing} holder(s) are missing from the Redis gate"
        ));
    }
    if gate.sold_out && issued < total {
        problems.push(format!(
            "coupon campaign {id}: the Redis gate says sold out but {issued} of {total} are issued"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn only_the_database_sets_the_sold_out_flag() {
        let gate = CouponGate::new(None, Arc::new(Metrics::default()));
        assert_eq!(gate.admit(7, 1, 10).await, CouponAdmit::Ungated);
        let unavailable = Err(StoreError::Unavailable("down".into()));
        gate.settle(CouponAdmit::Ungated, 7, 1, &unavailable).await;
        assert!(!gate.is_sold_out(7));
        gate.settle(CouponAdmit::Ungated, 7, 1, &Ok(IssueOutcome::SoldOut))
            .await;
        assert!(gate.is_sold_out(7));
        assert_eq!(gate.admit(7, 2, 10).await, CouponAdmit::SoldOut);
        assert_eq!(gate.admit(8, 2, 10).await, CouponAdmit::Ungated);
        assert!(!gate.is_sold_out(8));
    }

    #[test]
    fn every_disagreement_is_reported() {
        let holders: HashSet<i64> = [1, 2, 3].into();
        let mut problems = Vec::new();
        let agreeing = GateState {
            count: Some(3),
            members: holders.clone(),
            sold_out: false,
        };
        compare(1, 3, 5, &holders, &agreeing, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let drifted = GateState {
            count: Some(5),
            members: [1, 2, 9].into(),
            sold_out: true,
        };
        compare(1, 3, 5, &holders, &drifted, &mut problems);
        let text = problems.join("\n");
        assert!(
            text.contains("counts 5 but the database issued 3"),
            "{text}"
        );
        assert!(
            text.contains("1 buyer(s) in the Redis gate hold no coupon"),
            "{text}"
        );
        assert!(text.contains("1 holder(s) are missing"), "{text}");
        assert!(text.contains("says sold out"), "{text}");
    }
}
