//! Failed logins per account and per client IP, and sign-ups per client IP, counted in
//! fixed windows and shared by all nodes when Redis is configured.
//!
//! The request rate limits (`rate_limit`) allow thousands of requests a second; guessing
//! passwords needs far fewer, so credential stuffing against one account passes under them.
//! These counters are the slow limits: a window opens at the first attempt it counts and
//! lasts `window`; once `max` are in it, the next is refused until it closes.
//!
//! A login is checked *before* the password is, so a locked-out account or address costs
//! no Argon2 run, and counted after it failed. Logins in flight together may each pass the
//! check before any of them is counted, so a burst can exceed `max` by the number of
//! password checks a node runs at once (`password_hash_concurrency`), never more. A
//! sign-up is counted before it is checked, with one atomic increment, so it is exact.

use super::rate_limit::ip_key;
use super::redis::RedisLink;
use crate::metrics::{AbuseLabels, Metrics};
use async_trait::async_trait;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key's attempts in its current window, and the time until the window closes (zero when
/// no window is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub attempts: u64,
    pub left: Duration,
}

/// One implementation per mode, chosen once in `Cluster::build`.
#[async_trait]
pub trait AttemptCounter: Send + Sync {
    /// Each key's count, in the order of `keys`.
    async fn get(&self, keys: &[String]) -> Vec<Count>;
    /// Counts one attempt on each key, opening a window of `window` on a key without one;
    /// returns the counts after it.
    async fn add(&self, keys: &[String], window: Duration) -> Vec<Count>;
    /// Forgets a key (an account that logged in).
    async fn clear(&self, key: &str);
}

/// How many attempts a window allows, and how long it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    pub max: u64,
    pub window: Duration,
}

/// What the login and sign-up use cases hold: the chosen counter and the policies.
#[derive(Clone)]
pub struct Attempts {
    counter: Arc<dyn AttemptCounter>,
    login: AttemptPolicy,
    signup: AttemptPolicy,
    metrics: Arc<Metrics>,
}

impl Attempts {
    pub fn new(
        counter: Arc<dyn AttemptCounter>,
        login: AttemptPolicy,
        signup: AttemptPolicy,
        metrics: Arc<Metrics>,
    ) -> Attempts {
        Attempts {
            counter,
            login,
            signup,
            metrics,
        }
    }

    /// `Err(wait)` when the account or the address has used up its failed logins.
    /// `account` is the normalised email, whether or not such an account exists, so a
    /// refusal says nothing about which emails are registered.
    pub async fn login_allowed(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let (keys, reasons) = login_keys(account, ip);
        let counts = self.counter.get(&keys).await;
        let refused = reasons
            .iter()
            .zip(&counts)
            .filter(|(_, count)| count.attempts >= self.login.max);
        let mut wait = None;
        for (reason, count) in refused {
            self.refused(reason);
            wait = wait.max(Some(count.left));
        }
        wait.map_or(Ok(()), Err)
    }

    pub async fn login_failed(&self, account: &str, ip: Option<IpAddr>) {
        let (keys, _) = login_keys(account, ip);
        self.counter.add(&keys, self.login.window).await;
    }

    /// The account's failures are forgotten; its address's are not, so that one good
    /// password does not buy an address a fresh budget to guess others with.
    pub async fn login_succeeded(&self, account: &str) {
        self.counter.clear(&account_key(account)).await;
    }

    /// Counts a sign-up from `ip`; `Err(wait)` when it is one too many.
    pub async fn signup(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let keys = [format!("signup:ip:{}", ip_key(ip))];
        let counts = self.counter.add(&keys, self.signup.window).await;
        match counts.first() {
            Some(count) if count.attempts > self.signup.max => {
                self.refused("signup_ip");
                Err(count.left)
            }
            _ => Ok(()),
        }
    }

    fn refused(&self, reason: &'static str) {
        self.metrics
            .abuse_refused
            .get_or_create(&AbuseLabels { reason })
            .inc();
    }
}

/// Emails are hashed: no address is kept in Redis, and an attacker's long garbage makes a
/// key of the same length as anyone's.
fn account_key(account: &str) -> String {
    format!("login:acct:{}", crate::auth::token_hash(account))
}

fn login_keys(account: &str, ip: Option<IpAddr>) -> (Vec<String>, Vec<&'static str>) {
    let mut keys = vec![account_key(account)];
    let mut reasons = vec!["login_account"];
    if let Some(ip) = ip {
        keys.push(format!("login:ip:{}", ip_key(ip)));
        reasons.push("login_ip");
    }
    (keys, reasons)
}

/// Keys tracked in process before closed windows are dropped.
pub const LOCAL_ATTEMPT_KEYS_MAX: usize = 100_000;

/// The in-process counter (embedded mode, and the fallback while Redis is away; the limits
/// then apply per node).
#[derive(Default)]
pub struct LocalAttempts {
    /// Attempts and the end of the window, per key.
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

impl LocalAttempts {
    fn count(entry: Option<&(u64, Instant)>, now: Instant) -> Count {
        match entry {
            Some(&(attempts, ends)) if ends > now => Count {
                attempts,
                left: ends - now,
            },
            _ => Count::default(),
        }
    }

    fn get_now(&self, keys: &[String]) -> Vec<Count> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .map(|key| Self::count(windows.get(key), now))
            .collect()
    }

    fn add_now(&self, keys: &[String], window: Duration) -> Vec<Count> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() + keys.len() > LOCAL_ATTEMPT_KEYS_MAX {
            windows.retain(|_, (_, ends)| *ends > now);
            if windows.len() + keys.len() > LOCAL_ATTEMPT_KEYS_MAX {
                // Every window is open: starting over keeps memory bounded at the price of
                // fresh budgets, which is the lesser harm (and the bound on concurrent
                // password checks limits how fast anyone gets here).
                windows.clear();
            }
        }
        keys.iter()
            .map(|key| {
                let entry = windows.entry(key.clone()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 += 1;
                Self::count(Some(entry), now)
            })
            .collect()
    }

    fn clear_now(&self, key: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.remove(key);
    }
}

#[async_trait]
impl AttemptCounter for LocalAttempts {
    async fn get(&self, keys: &[String]) -> Vec<Count> {
        self.get_now(keys)
    }

    async fn add(&self, keys: &[String], window: Duration) -> Vec<Count> {
        self.add_now(keys, window)
    }

    async fn clear(&self, key: &str) {
        self.clear_now(key)
    }
}

/// Returns `{count, ms left}` per key; a key without a window is `{0, 0}`.
const GET_LUA: &str = r"
local out = {}
for _, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  local left = redis.call('PTTL', key)
  if left < 0 then n, left = 0, 0 end
  table.insert(out, n)
  table.insert(out, left)
end
return out
";

/// ARGV[1] = the window in ms. Counts one attempt per key; the window opens with the first.
const ADD_LUA: &str = r"
local out = {}
for _, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    left = tonumber(ARGV[1])
  end
  table.insert(out, n)
  table.insert(out, left)
end
return out
";

/// The shared counter (scale-out mode): the limits hold across all nodes together.
pub struct RedisAttempts {
    link: Arc<RedisLink>,
    local: LocalAttempts,
    get: redis::Script,
    add: redis::Script,
}

impl RedisAttempts {
    pub fn new(link: Arc<RedisLink>) -> RedisAttempts {
        RedisAttempts {
            link,
            local: LocalAttempts::default(),
            get: redis::Script::new(GET_LUA),
            add: redis::Script::new(ADD_LUA),
        }
    }

    async fn run(
        &self,
        what: &'static str,
        script: &redis::Script,
        keys: &[String],
        window: Option<Duration>,
    ) -> Option<Vec<Count>> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(self.link.key(format_args!("la:{key}")));
        }
        if let Some(window) = window {
            call.arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        }
        let reply = self
            .link
            .call(what, |mut c| async move {
                call.invoke_async::<Vec<i64>>(&mut c).await
            })
            .await?;
        let counts: Vec<Count> = reply
            .chunks_exact(2)
            .map(|pair| Count {
                attempts: u64::try_from(pair[0]).unwrap_or(0),
                left: Duration::from_millis(u64::try_from(pair[1]).unwrap_or(0)),
            })
            .collect();
        (counts.len() == keys.len()).then_some(counts)
    }
}

#[async_trait]
impl AttemptCounter for RedisAttempts {
    async fn get(&self, keys: &[String]) -> Vec<Count> {
        match self.run("attempts get", &self.get, keys, None).await {
            Some(counts) => counts,
            None => self.local.get_now(keys),
        }
    }

    async fn add(&self, keys: &[String], window: Duration) -> Vec<Count> {
        match self
            .run("attempts add", &self.add, keys, Some(window))
            .await
        {
            Some(counts) => counts,
            None => self.local.add_now(keys, window),
        }
    }

    async fn clear(&self, key: &str) {
        let redis_key = self.link.key(format_args!("la:{key}"));
        self.link
            .call("attempts clear", |mut c| async move {
                redis::cmd("DEL")
                    .arg(redis_key)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        self.local.clear_now(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn attempts(max: u64) -> Attempts {
        let policy = AttemptPolicy {
            max,
            window: WINDOW,
        };
        Attempts::new(
            Arc::new(LocalAttempts::default()),
            policy,
            policy,
            Arc::new(Metrics::default()),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn an_account_is_locked_after_max_failures_from_anywhere() {
        let limits = attempts(3);
        for n in 0..3 {
            let from = Some(ip(&format!("10.0.0.{n}")));
            assert_eq!(limits.login_allowed("a@x.test", from).await, Ok(()));
            limits.login_failed("a@x.test", from).await;
        }
        let wait = limits
            .login_allowed("a@x.test", Some(ip("10.0.0.99")))
            .await
            .expect_err("locked");
        assert!(wait > Duration::from_secs(59) && wait <= WINDOW, "{wait:?}");
        let elsewhere = limits.login_allowed("b@x.test", Some(ip("10.0.0.98")));
        assert_eq!(elsewhere.await, Ok(()), "other accounts are not");
    }

    #[tokio::test]
    async fn an_address_is_locked_after_max_failures_on_any_accounts() {
        let limits = attempts(3);
        let from = Some(ip("192.0.2.1"));
        for n in 0..3 {
            limits.login_failed(&format!("{n}@x.test"), from).await;
        }
        assert!(limits.login_allowed("new@x.test", from).await.is_err());
        let other = limits.login_allowed("new@x.test", Some(ip("192.0.2.2")));
        assert_eq!(other.await, Ok(()));
    }

    #[tokio::test]
    async fn a_success_clears_the_account_but_not_the_address() {
        let limits = attempts(2);
        let from = Some(ip("192.0.2.1"));
        limits.login_failed("a@x.test", from).await;
        limits.login_failed("a@x.test", Some(ip("192.0.2.9"))).await;
        limits.login_succeeded("a@x.test").await;
        let fresh = limits.login_allowed("a@x.test", Some(ip("192.0.2.5")));
        assert_eq!(fresh.await, Ok(()));
        limits.login_failed("b@x.test", from).await;
        assert!(limits.login_allowed("c@x.test", from).await.is_err());
    }

    #[tokio::test]
    async fn sign_ups_are_counted_per_address() {
        let limits = attempts(2);
        let from = Some(ip("198.51.100.7"));
        assert_eq!(limits.signup(from).await, Ok(()));
        assert_eq!(limits.signup(from).await, Ok(()));
        assert!(limits.signup(from).await.is_err());
        assert_eq!(limits.signup(Some(ip("198.51.100.8"))).await, Ok(()));
    }

    #[test]
    fn a_window_closes_and_counting_starts_over() {
        let local = LocalAttempts::default();
        let key = ["k".to_owned()];
        local.add_now(&key, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(local.get_now(&key), vec![Count::default()]);
        assert_eq!(local.add_now(&key, WINDOW)[0].attempts, 1);
    }
}
