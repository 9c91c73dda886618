//! Rate limits per buyer and per client IP, shared by all nodes when Redis is configured.
//!
//! GCRA (the generic cell rate algorithm, a token bucket kept as one number per key): each
//! key stores its *theoretical arrival time* (TAT). A request is allowed when, after adding
//! one emission interval (1 / rate) to the TAT, the TAT is at most `burst` intervals ahead of
//! now. One number per key, one Lua round trip for both keys of a request, and a refused
//! request costs nothing: its TAT is not advanced.

use super::redis::RedisLink;
use crate::metrics::{Metrics, ReasonLabels};
use async_trait::async_trait;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

impl Rate {
    /// `None` (no limit) when `per_sec` is 0.
    pub fn new(per_sec: u32, burst: u32) -> Option<Rate> {
        (per_sec > 0).then_some(Rate {
            per_sec,
            burst: burst.max(1),
        })
    }

    fn interval_us(self) -> i64 {
        (1_000_000 / i64::from(self.per_sec)).max(1)
    }

    fn tolerance_us(self) -> i64 {
        self.interval_us() * i64::from(self.burst)
    }
}

/// A key to limit and its rate.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub key: String,
    pub rate: Rate,
}

/// The bucket that refused (its index) and how long until a request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub retry_after: Duration,
}

/// One implementation per mode, chosen once in `Cluster::build`.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one request from every bucket, or from none if any refuses.
    async fn take(&self, buckets: &[Bucket]) -> Option<Refusal>;
}

/// Who is asking, as far as the limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Ip,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Ip => "ip",
        }
    }
}

/// What the middleware holds: the chosen limiter and the configured rates.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<dyn RateLimiter>,
    user: Option<Rate>,
    ip: Option<Rate>,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(
        inner: Arc<dyn RateLimiter>,
        user: Option<Rate>,
        ip: Option<Rate>,
        metrics: Arc<Metrics>,
    ) -> Limiter {
        Limiter {
            inner,
            user,
            ip,
            metrics,
        }
    }

    /// `Err((scope, retry_after))` when the request must be refused.
    pub async fn check(
        &self,
        user: Option<i64>,
        ip: Option<IpAddr>,
    ) -> Result<(), (Scope, Duration)> {
        let mut buckets = Vec::with_capacity(2);
        let mut scopes = Vec::with_capacity(2);
        if let (Some(user), Some(rate)) = (user, self.user) {
            buckets.push(Bucket {
                key: format!("user:{user}"),
                rate,
            });
            scopes.push(Scope::User);
        }
        if let (Some(ip), Some(rate)) = (ip, self.ip) {
            buckets.push(Bucket {
                key: format!("ip:{}", ip_key(ip)),
                rate,
            });
            scopes.push(Scope::Ip);
        }
        if buckets.is_empty() {
            return Ok(());
        }
        match self.inner.take(&buckets).await {
            None => Ok(()),
            Some(refusal) => {
                let scope = scopes.get(refusal.index).copied().unwrap_or(Scope::Ip);
                self.metrics
                    .rate_limited
                    .get_or_create(&ReasonLabels {
                        reason: scope.as_str().to_owned(),
                    })
                    .inc();
                Err((scope, refusal.retry_after))
            }
        }
    }
}

/// The part of an address that names one client: all of an IPv4 address, the /64 network
/// of an IPv6 one. A single IPv6 host is usually given a whole /64, so limiting each of its
/// 2^64 addresses apart would limit nothing.
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

/// Keys tracked in process before idle ones are evicted.
pub const LOCAL_RATE_KEYS_MAX: usize = 100_000;

/// The in-process limiter (embedded mode, and the fallback while Redis is away; the limits
/// then apply per node).
pub struct LocalLimiter {
    tats: Mutex<HashMap<String, i64>>,
    epoch: Instant,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            tats: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl LocalLimiter {
    fn now_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    fn take_now(&self, buckets: &[Bucket]) -> Option<Refusal> {
        let now = self.now_us();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if tats.len() + buckets.len() > LOCAL_RATE_KEYS_MAX {
            // A key whose TAT has passed is at full burst: forgetting it changes nothing.
            tats.retain(|_, tat| *tat > now);
            if tats.len() + buckets.len() > LOCAL_RATE_KEYS_MAX {
                // Every key is busy: starting over keeps memory bounded at the price of one
                // fresh burst each, which is the lesser harm.
                tats.clear();
            }
        }
        let mut next = Vec::with_capacity(buckets.len());
        let mut worst: Option<Refusal> = None;
        for (index, bucket) in buckets.iter().enumerate() {
            let tat = tats.get(&bucket.key).copied().unwrap_or(now).max(now);
            let new_tat = tat + bucket.rate.interval_us();
            let over = new_tat - now - bucket.rate.tolerance_us();
            if over > 0 && worst.is_none_or(|w| w.retry_after.as_micros() < over as u128) {
                worst = Some(Refusal {
                    index,
                    retry_after: Duration::from_micros(over as u64),
                });
            }
            next.push(new_tat);
        }
        if worst.is_none() {
            for (bucket, tat) in buckets.iter().zip(next) {
                tats.insert(bucket.key.clone(), tat);
            }
        }
        worst
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn take(&self, buckets: &[Bucket]) -> Option<Refusal> {
        self.take_now(buckets)
    }
}

/// ARGV = (interval µs, tolerance µs) per key. Redis's clock is the one clock all nodes
/// share. Returns `{0}` or `{index, µs until a request would pass}`.
const TAKE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local worst, worst_index = 0, 0
local next = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  next[i] = tat + tonumber(ARGV[2 * i - 1])
  local over = next[i] - now - tonumber(ARGV[2 * i])
  if over > worst then worst, worst_index = over, i end
end
if worst > 0 then return {worst_index, worst} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', next[i]), 'PX', math.ceil((next[i] - now) / 1000) + 1)
end
return {0}
";

/// The shared limiter (scale-out mode): the limits hold across all nodes together.
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    local: LocalLimiter,
    script: redis::Script,
}

impl RedisLimiter {
    pub fn new(link: Arc<RedisLink>) -> RedisLimiter {
        RedisLimiter {
            link,
            local: LocalLimiter::default(),
            script: redis::Script::new(TAKE_LUA),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn take(&self, buckets: &[Bucket]) -> Option<Refusal> {
        let mut call = self.script.prepare_invoke();
        for bucket in buckets {
            call.key(self.link.key(format_args!("rl:{}", bucket.key)))
                .arg(bucket.rate.interval_us())
                .arg(bucket.rate.tolerance_us());
        }
        let reply = self
            .link
            .call("rate limit", |mut c| async move {
                call.invoke_async::<Vec<i64>>(&mut c).await
            })
            .await;
        match reply.as_deref() {
            None => self.local.take_now(buckets),
            Some([index, over]) if *index > 0 => Some(Refusal {
                index: (*index - 1) as usize,
                retry_after: Duration::from_micros((*over).max(0) as u64),
            }),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(key: &str, per_sec: u32, burst: u32) -> Bucket {
        Bucket {
            key: key.into(),
            rate: Rate::new(per_sec, burst).unwrap(),
        }
    }

    #[test]
    fn allows_the_burst_then_refuses_with_a_wait() {
        let limiter = LocalLimiter::default();
        let b = [bucket("a", 1, 3)];
        for _ in 0..3 {
            assert_eq!(limiter.take_now(&b), None);
        }
        let refusal = limiter.take_now(&b).expect("fourth request refused");
        assert_eq!(refusal.index, 0);
        assert!(
            refusal.retry_after > Duration::from_millis(900),
            "{refusal:?}"
        );
        assert!(refusal.retry_after <= Duration::from_secs(1));
    }

    #[test]
    fn a_refusal_takes_nothing_from_the_other_bucket() {
        let limiter = LocalLimiter::default();
        let tight = bucket("user:1", 1, 1);
        let loose = bucket("ip:x", 1, 2);
        assert_eq!(limiter.take_now(&[tight.clone(), loose.clone()]), None);
        let refusal = limiter.take_now(&[tight, loose.clone()]).unwrap();
        assert_eq!(refusal.index, 0);
        assert_eq!(limiter.take_now(&[loose]), None, "ip bucket still had one");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_network() {
        assert_eq!(ip_key(addr("203.0.113.9")), "203.0.113.9");
        assert_eq!(ip_key(addr("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(
            ip_key(addr("2001:db8:1:2:aaaa::1")),
            ip_key(addr("2001:db8:1:2:ffff::2"))
        );
        assert_ne!(
            ip_key(addr("2001:db8:1:2::1")),
            ip_key(addr("2001:db8:1:3::1"))
        );
        assert_eq!(ip_key(addr("2001:db8:1:2::1")), "2001:db8:1:2::/64");
    }

    fn addr(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn zero_rate_means_no_limit() {
        assert_eq!(Rate::new(0, 10), None);
    }
}
