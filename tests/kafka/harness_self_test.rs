//! The harness itself, on a private broker and nothing else: what the Kafka tests lean on
//! must hold before their failures can mean anything — the reader sees what a producer
//! wrote (keys, values, headers, per-partition order), a paused broker acknowledges
//! nothing, and after resuming it delivers what waited.

use crate::harness::{committed_offset, with_broker, TestProducer, TopicReader};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);
/// How long a paused broker must stay silent to count as down.
const SILENT_FOR: Duration = Duration::from_secs(2);

fn headers(id: i64) -> Vec<(String, Option<String>)> {
    vec![
        ("event-id".to_owned(), Some(id.to_string())),
        ("event-type".to_owned(), Some("selftest.made".to_owned())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_broker_takes_messages_pauses_and_resumes() {
    with_broker(|broker| async move {
        let topic = "selftest.things".to_owned();
        let producer = TestProducer::new(&broker.bootstrap());
        let mut acked = Vec::new();
        for id in 1..=3_i64 {
            let value = format!(r#"{{"id":{id}}}"#);
            acked.push(
                producer
                    .produce(&topic, "7", value.as_bytes(), &headers(id))
                    .await,
            );
        }
        assert!(
            acked
                .windows(2)
                .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "one key, one partition, rising offsets: {acked:?}"
        );

        let mut reader =
            TopicReader::open(&broker.bootstrap(), std::slice::from_ref(&topic), WITHIN).await;
        reader
            .read_until(WITHIN, "3 messages", |r| r.len() >= 3, |r| format!("{r:?}"))
            .await;
        let ids: Vec<Option<i64>> = reader.received().iter().map(|m| m.event_id()).collect();
        assert_eq!(ids, [Some(1), Some(2), Some(3)]);
        for message in reader.received() {
            assert_eq!(message.key.as_deref(), Some("7"));
            let id = message.event_id().unwrap().to_string();
            assert_eq!(message.header_values("event-id"), [Some(id.as_str())]);
            assert_eq!(message.header_values("event-type"), [Some("selftest.made")]);
        }

        let paused = broker.pause();
        assert_eq!(
            broker.process_state(),
            'T',
            "SIGSTOP did not stop the broker"
        );
        let late = tokio::spawn({
            let bootstrap = broker.bootstrap();
            let topic = topic.clone();
            async move {
                let producer = TestProducer::new(&bootstrap);
                producer
                    .produce(&topic, "7", br#"{"id":4}"#, &headers(4))
                    .await
            }
        });
        // Not a wait for something to happen: the check is that nothing does for a while.
        tokio::time::sleep(SILENT_FOR).await;
        assert!(
            !late.is_finished(),
            "a paused broker acknowledged a message"
        );
        paused.resume();
        assert_ne!(
            broker.process_state(),
            'T',
            "SIGCONT did not resume the broker"
        );
        let (partition, offset) = tokio::time::timeout(WITHIN, late)
            .await
            .expect("the message produced during the pause was not acknowledged after it")
            .unwrap();
        assert_eq!(partition, acked[0].0, "the same key moved partitions");
        assert!(offset > acked[2].1, "offset {offset} after {acked:?}");
        reader
            .read_until(
                WITHIN,
                "the 4th message",
                |r| r.len() >= 4,
                |r| format!("{r:?}"),
            )
            .await;
        assert_eq!(reader.received()[3].event_id(), Some(4));

        assert_eq!(
            committed_offset(&broker.bootstrap(), "selftest.nobody", &topic, partition).await,
            None,
            "a group that never committed has no offset"
        );
    })
    .await;
}
