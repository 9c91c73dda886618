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

/// The checks the Kafka tests end with, on made-up messages: each must refuse what it is
/// there to catch, or a passing test would mean nothing.
mod checks {
    use crate::harness::{
        assert_published_exactly_once, assert_published_none_lost, OutboxEvent, Received,
    };
    use serde_json::{json, Value};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn event(id: i64, aggregate_id: i64) -> OutboxEvent {
        OutboxEvent {
            id,
            aggregate_type: "order".to_owned(),
            aggregate_id,
            event_type: "order.paid".to_owned(),
            payload: format!(r#"{{"order_id":{aggregate_id},"status":"paid"}}"#),
            created_at: 1_764_000_000_123 + id,
        }
    }

    fn value(e: &OutboxEvent) -> Value {
        let nanos = i128::from(e.created_at) * 1_000_000;
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        json!({
            "id": e.id,
            "type": e.event_type,
            "aggregate_type": e.aggregate_type,
            "aggregate_id": e.aggregate_id,
            "payload": serde_json::from_str::<Value>(&e.payload).unwrap(),
            "created_at": created_at,
        })
    }

    /// `e` as the relay publishes it, at `offset` of partition `aggregate_id % 2`.
    fn message(e: &OutboxEvent, offset: i64) -> Received {
        Received {
            topic: e.topic(),
            partition: (e.aggregate_id % 2) as i32,
            offset,
            key: Some(e.aggregate_id.to_string()),
            value: value(e).to_string().into_bytes(),
            headers: vec![
                ("event-id".to_owned(), Some(e.id.to_string())),
                ("event-type".to_owned(), Some(e.event_type.clone())),
            ],
        }
    }

    fn events() -> Vec<OutboxEvent> {
        vec![event(1, 10), event(2, 11), event(3, 10), event(4, 10)]
    }

    fn published(events: &[OutboxEvent]) -> Vec<Received> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| message(e, i as i64))
            .collect()
    }

    fn exactly_once_refuses(received: &[Received]) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            assert_published_exactly_once(&events(), received)
        }))
        .is_err()
    }

    fn none_lost_refuses(received: &[Received]) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            assert_published_none_lost(&events(), received)
        }))
        .is_err()
    }

    /// `edit` applied to the message of event 3.
    fn with_third(edit: impl FnOnce(&mut Received)) -> Vec<Received> {
        let mut received = published(&events());
        edit(&mut received[2]);
        received
    }

    fn edit_value(message: &mut Received, edit: impl FnOnce(&mut Value)) {
        let mut value: Value = serde_json::from_slice(&message.value).unwrap();
        edit(&mut value);
        message.value = value.to_string().into_bytes();
    }

    #[test]
    fn the_outbox_as_published_passes() {
        let received = published(&events());
        assert_published_exactly_once(&events(), &received);
        assert_eq!(assert_published_none_lost(&events(), &received), 0);
        // Later events (higher ids than the outbox read) are left out.
        let mut later = received.clone();
        later.push(message(&event(5, 10), 9));
        assert_published_exactly_once(&events(), &later);
    }

    #[test]
    fn a_repeat_fails_exactly_once_but_not_none_lost() {
        let mut received = published(&events());
        received.push(message(&events()[2], 7));
        assert!(exactly_once_refuses(&received));
        assert_eq!(assert_published_none_lost(&events(), &received), 1);
    }

    #[test]
    fn a_lost_or_overtaken_event_fails_both() {
        let all = published(&events());
        let lost: Vec<Received> = all.iter().filter(|m| m.offset != 2).cloned().collect();
        assert!(exactly_once_refuses(&lost));
        assert!(none_lost_refuses(&lost));
        // Key 10's events 3 and 4 swapped on their partition.
        let swapped = with_third(|m| m.offset = 9);
        assert!(exactly_once_refuses(&swapped));
        assert!(none_lost_refuses(&swapped));
        // A repeat of event 3 cannot hide that event 4 came first.
        let mut late: Vec<Received> = all.iter().filter(|m| m.offset != 2).cloned().collect();
        late.push(message(&events()[2], 9));
        assert!(none_lost_refuses(&late));
    }

    #[test]
    fn any_difference_from_the_row_fails() {
        let cases: Vec<(&str, Vec<Received>)> = vec![
            ("key", with_third(|m| m.key = Some("11".to_owned()))),
            ("no key", with_third(|m| m.key = None)),
            (
                "topic",
                with_third(|m| m.topic = "stampede.other".to_owned()),
            ),
            ("partition", with_third(|m| m.partition = 1)),
            (
                "event-id header",
                with_third(|m| m.headers[0].1 = Some("4".to_owned())),
            ),
            ("event-type header", with_third(|m| m.headers.truncate(1))),
            ("id", with_third(|m| edit_value(m, |v| v["id"] = json!(9)))),
            (
                "type",
                with_third(|m| edit_value(m, |v| v["type"] = json!("order.placed"))),
            ),
            (
                "payload",
                with_third(|m| edit_value(m, |v| v["payload"]["status"] = json!("x"))),
            ),
            (
                "created_at",
                with_third(|m| edit_value(m, |v| v["created_at"] = json!("2025-11-24T16:00:00Z"))),
            ),
            (
                "extra field",
                with_third(|m| edit_value(m, |v| v["extra"] = json!(1))),
            ),
            ("not JSON", with_third(|m| m.value = b"order 3".to_vec())),
        ];
        for (what, received) in cases {
            assert!(exactly_once_refuses(&received), "a wrong {what} passed");
            assert!(none_lost_refuses(&received), "a wrong {what} passed");
        }
        let mut unknown = published(&events());
        let mut stranger = message(&event(3, 10), 9);
        edit_value(&mut stranger, |v| v["id"] = json!(0));
        stranger.headers[0].1 = Some("0".to_owned());
        unknown.push(stranger);
        assert!(
            exactly_once_refuses(&unknown),
            "an id the outbox lacks passed"
        );
    }
}

/// The link to a broker, on a stand-in broker that records what reaches it: it forwards,
/// holds while cut off, delivers what waited on release — but not what a client that went
/// away meanwhile had sent.
mod link {
    use crate::harness::link::Link;
    use crate::helpers::eventually;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const WITHIN: Duration = Duration::from_secs(10);

    /// Per connection accepted, what arrived, and whether it was closed.
    type Arrived = Arc<Mutex<Vec<(Vec<u8>, bool)>>>;

    async fn stand_in() -> (u16, Arrived) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let arrived: Arrived = Arc::default();
        let record = arrived.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let record = record.clone();
                let index = {
                    let mut all = record.lock().unwrap();
                    all.push((Vec::new(), false));
                    all.len() - 1
                };
                tokio::spawn(async move {
                    let mut buffer = [0_u8; 1024];
                    loop {
                        let n = socket.read(&mut buffer).await.unwrap_or(0);
                        let mut all = record.lock().unwrap();
                        if n == 0 {
                            all[index].1 = true;
                            return;
                        }
                        all[index].0.extend_from_slice(&buffer[..n]);
                    }
                });
            }
        });
        (port, arrived)
    }

    async fn wait_for(arrived: &Arrived, what: &str, check: impl Fn(&[(Vec<u8>, bool)]) -> bool) {
        eventually(WITHIN, what, || {
            let done = check(&arrived.lock().unwrap());
            async move { done.then_some(()) }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_cut_off_link_holds_and_drops_what_dead_clients_sent() {
        let (upstream, arrived) = stand_in().await;
        let link = Link::start(upstream).await;
        let address = ("127.0.0.1", link.port());
        let mut alive = TcpStream::connect(address).await.unwrap();
        alive.write_all(b"a1").await.unwrap();
        wait_for(&arrived, "a1 through the link", |a| {
            a.len() == 1 && a[0].0 == b"a1"
        })
        .await;

        link.hold();
        alive.write_all(b"a2").await.unwrap();
        let mut dying = TcpStream::connect(address).await.unwrap();
        dying.write_all(b"b1").await.unwrap();
        wait_for(&arrived, "the second connection", |a| a.len() == 2).await;
        drop(dying);
        // Not a wait for something to happen: the check is that nothing does for a while.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(arrived.lock().unwrap()[0].0, b"a1", "a2 passed while held");

        link.release();
        wait_for(&arrived, "a2 after the release", |a| a[0].0 == b"a1a2").await;
        wait_for(&arrived, "the dead client's connection closed", |a| a[1].1).await;
        assert_eq!(
            arrived.lock().unwrap()[1].0,
            b"",
            "what the dead client sent while held was delivered"
        );
    }
}
