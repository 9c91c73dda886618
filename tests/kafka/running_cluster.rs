//! Issue 12: the topic check of `scripts/faults.sh`. The suite runs a cluster of its own
//! (nodes as processes, a Tansu broker it pauses mid-drop and resumes) and, once the drop is
//! over, runs this test against that cluster's database and broker, named by
//! `STAMPEDE_FAULTS_DATABASE_URL` and `STAMPEDE_FAULTS_KAFKA_BROKERS`: every outbox event
//! must be on its topic, as the harness's reader checks it for the Kafka tests. Ignored in
//! a plain test run, where there is no such cluster to read.

use crate::harness::{assert_published_none_lost, outbox_events, read_until_published};
use std::time::Duration;

/// Longest wait for the relay to publish what is left once the broker is back.
const WITHIN: Duration = Duration::from_secs(60);

fn required(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: this test is run by scripts/faults.sh"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/faults.sh against the cluster it started"]
async fn every_outbox_event_of_the_faults_cluster_is_on_its_topic() {
    let database_url = required("STAMPEDE_FAULTS_DATABASE_URL");
    let brokers = required("STAMPEDE_FAULTS_KAFKA_BROKERS");
    let events = outbox_events(&database_url).await;
    assert!(!events.is_empty(), "the outbox of {database_url} is empty");
    let received = read_until_published(&brokers, &events, WITHIN).await;
    let repeats = assert_published_none_lost(&events, &received);
    println!(
        "topics: all {} outbox events on their topics, {repeats} published again",
        events.len()
    );
}
