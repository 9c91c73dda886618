//! Issue 9, test 2: three nodes — child processes of the real binary — on one database and
//! one broker; the one holding the relay lease (its `relay_active` metric says which) is
//! killed with SIGKILL while orders are being placed. Another takes the relay over within
//! seconds, and in the end every outbox event is on its topic: none lost, and per key the
//! first appearances in outbox order. Repeats are allowed (the successor republishes what
//! the dead holder had sent but not recorded; consumers dedupe by event id).
//!
//! The kill lands while the holder has a batch sent and not acknowledged — the moment a
//! relay that recorded its progress before the broker's acks would lose events. A relay
//! spends most of its time between batches, so the test makes that moment last: it cuts
//! the broker off until the holder is stuck on a batch, kills the holder, then restores
//! the link. What the holder had sent dies with it (as with a crashed host), so the
//! successor must publish that batch from the recorded position.
//!
//! Orders go through the test's in-process node, which stays off Kafka so that it can never
//! be the relay holder the test must kill; it shares the database with the three.

use crate::harness::{
    assert_published_none_lost, metrics, outbox_events, pay_ok, read_until_published, run, sample,
    NodeProcess,
};
use crate::helpers::{eventually, int, TestApp};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// Shorter than the default 3 s, to keep the test short; the takeover must still wait it out.
const RELAY_LEASE_MS: u64 = 2000;
/// The lease, then a relay round, on two cores shared with other builds.
const TAKEOVER_WITHIN: Duration = Duration::from_millis(RELAY_LEASE_MS + 10_000);
const WITHIN: Duration = Duration::from_secs(90);
const BUYERS: usize = 30;
/// Orders placed by the stream before the kill, and after the takeover.
const ORDERS_BEFORE_KILL: usize = 15;
const ORDERS_AFTER_TAKEOVER: usize = 15;

/// Waits until the relay of the node at `root` has read events it cannot publish: events
/// behind (`relay_lag_events` > 0) and `relay_published_total` standing still.
async fn wait_stuck_on_a_batch(client: &reqwest::Client, root: &str) {
    let deadline = Instant::now() + TAKEOVER_WITHIN;
    let mut before = None;
    loop {
        let text = metrics(client, root).await.expect("the holder's metrics");
        let lag = sample(&text, "relay_lag_events", &[]).expect("relay_lag_events");
        let published = sample(&text, "relay_published_total", &[]).expect("relay_published_total");
        if lag > 0.0 && before == Some(published) {
            return;
        }
        before = Some(published);
        assert!(
            Instant::now() < deadline,
            "the relay did not get stuck on a batch (lag {lag}, published {published})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Which of the live `nodes` holds the relay: polls their metrics until exactly one says
/// `relay_active 1`. Two at once is a failure (one relay at a time).
async fn relay_holder(client: &reqwest::Client, nodes: &[(usize, String)]) -> usize {
    eventually(TAKEOVER_WITHIN, "one node to hold the relay", || async {
        let mut active = Vec::new();
        for (index, root) in nodes {
            let text = metrics(client, root).await?;
            if sample(&text, "relay_active", &[]) == Some(1.0) {
                active.push(*index);
            }
        }
        assert!(active.len() <= 1, "nodes {active:?} all hold the relay");
        active.first().copied()
    })
    .await
}

fn live(nodes: &[NodeProcess], except: Option<usize>) -> Vec<(usize, String)> {
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(i, node)| (i, node.root.clone()))
        .collect()
}

/// Places orders one after another (round robin over `buyers`, every other one paid) until
/// `stop`; counts them in `placed`. Returns the statuses that were not 201.
fn keep_ordering(
    app: TestApp,
    buyers: Vec<String>,
    product: i64,
    placed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let token = &buyers[n % buyers.len()];
            let reply = app.place_order(token, &[(product, 1)]).await;
            if reply.0 == 201 {
                if n % 2 == 0 {
                    pay_ok(&app, token, &reply.1).await;
                }
                placed.fetch_add(1, Ordering::SeqCst);
            } else {
                failures.push(format!("{} {}", reply.0, reply.1));
            }
            n += 1;
        }
        failures
    })
}

async fn wait_placed(placed: &AtomicUsize, at_least: usize) {
    let what = format!("{at_least} orders placed");
    eventually(WITHIN, &what, || async {
        (placed.load(Ordering::SeqCst) >= at_least).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_relay_holder_loses_nothing_and_reorders_nothing() {
    run(
        |c| c.kafka_brokers = None,
        |k| async move {
            let app = &k.app;
            let product = app.simple_product(15_000, 100_000).await;
            let buyers = app.buyers(BUYERS).await;
            let mut env = k.node_env();
            env.push(("STAMPEDE_RELAY_LEASE_MS", RELAY_LEASE_MS.to_string()));
            let mut nodes = Vec::new();
            for i in 0..NODES {
                nodes.push(NodeProcess::start(&format!("node{i}"), &env).await);
            }
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let holder = relay_holder(&client, &live(&nodes, None)).await;

            let placed = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let ordering = keep_ordering(
                app.clone(),
                buyers.clone(),
                product,
                placed.clone(),
                stop.clone(),
            );
            wait_placed(&placed, ORDERS_BEFORE_KILL).await;
            let cut_off = k.broker.cut_off();
            wait_stuck_on_a_batch(&client, &nodes[holder].root).await;
            nodes[holder].kill9();
            let killed_at = Instant::now();
            cut_off.restore();
            let successor = relay_holder(&client, &live(&nodes, Some(holder))).await;
            let takeover = killed_at.elapsed();
            assert_ne!(successor, holder);
            let at_takeover = placed.load(Ordering::SeqCst);
            wait_placed(&placed, at_takeover + ORDERS_AFTER_TAKEOVER).await;
            stop.store(true, Ordering::SeqCst);
            let failures = ordering.await.unwrap();
            assert!(failures.is_empty(), "orders refused: {failures:?}");

            // And a last order, paid, well after the takeover.
            let last = app.order_ok(&buyers[0], &[(product, 1)]).await;
            pay_ok(app, &buyers[0], &last).await;

            let events = outbox_events(&app.database_url).await;
            assert!(events.iter().any(|e| e.aggregate_id == int(&last, "id")));
            let received = read_until_published(&k.broker.bootstrap(), &events, WITHIN).await;
            let repeats = assert_published_none_lost(&events, &received);
            for (i, node) in nodes.iter_mut().enumerate() {
                if i != holder {
                    assert!(node.is_running(), "node{i} died:\n{}", node.log_tail());
                }
            }
            assert_eq!(
                relay_holder(&client, &live(&nodes, Some(holder))).await,
                successor,
                "the relay moved again"
            );
            eprintln!(
                "relay failover: node{holder} killed, node{successor} took over after \
                 {takeover:?}; {} events, {repeats} republished",
                events.len()
            );
        },
    )
    .await;
}
