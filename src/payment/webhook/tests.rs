use super::*;
use proptest::prelude::*;

/// The reference vector of the Standard Webhooks Rust library (`test_sign`), checked
/// independently with Python's standard library:
/// python3 -c "import hmac,hashlib,base64; k=base64.b64decode('C2FVsBQIhrscChlQIMV+b5sSYspob7oD');
///   print(base64.b64encode(hmac.new(k, b'msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.'
///   + b'{\"email\":\"test@example.com\",\"username\":\"test_user\"}', hashlib.sha256).digest()))"
const REF_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const REF_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const REF_TS: i64 = 1_649_367_553;
const REF_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const REF_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

/// Our own vector: the key is bytes 0..=31, the body a PortOne-shaped `Transaction.Paid`.
/// Computed with:
/// python3 -c "import hmac,hashlib,base64; k=bytes(range(32));
///   print(base64.b64encode(hmac.new(k, b'msg_stampede_kat_1.1764788400.' + PAID_BODY,
///   hashlib.sha256).digest()))"
/// where PAID_BODY is the bytes of the constant below.
const OWN_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OWN_ID: &str = "msg_stampede_kat_1";
const OWN_TS: i64 = 1_764_788_400;
const PAID_BODY: &[u8] = br#"{"type":"Transaction.Paid","timestamp":"2026-12-03T19:00:00.000Z","data":{"paymentId":"pay_01","storeId":"store-00000000-0000-0000-0000-000000000000","transactionId":"tx_01"}}"#;
const OWN_SIGNATURE: &str = "v1,c7qqM7WzbgDwHc2zoaRsqgEMLXXplidtF09gUhfoqHg=";

fn secret(raw: &str) -> WebhookSecret {
    WebhookSecret::parse(raw).unwrap()
}

fn at_secs(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> WebhookHeaders<'a> {
    WebhookHeaders {
        id: Some(id),
        timestamp: Some(timestamp),
        signature: Some(signature),
    }
}

/// Verifies `body` under `signature` for the reference id and timestamp, at that timestamp.
fn check(secret: &WebhookSecret, signature: &str, body: &[u8]) -> Result<(), WebhookError> {
    let ts = REF_TS.to_string();
    verify(
        secret,
        &headers(REF_ID, &ts, signature),
        body,
        at_secs(REF_TS),
    )
}

#[test]
fn signs_the_reference_vector() {
    assert_eq!(
        sign(&secret(REF_SECRET), REF_ID, REF_TS, REF_BODY),
        REF_SIGNATURE
    );
    let ts = REF_TS.to_string();
    let sent = headers(REF_ID, &ts, REF_SIGNATURE);
    assert_eq!(
        verify(&secret(REF_SECRET), &sent, REF_BODY, at_secs(REF_TS)),
        Ok(())
    );
}

#[test]
fn signs_our_own_vector() {
    let key = secret(OWN_SECRET);
    assert_eq!(sign(&key, OWN_ID, OWN_TS, PAID_BODY), OWN_SIGNATURE);
    let ts = OWN_TS.to_string();
    let sent = headers(OWN_ID, &ts, OWN_SIGNATURE);
    assert_eq!(verify(&key, &sent, PAID_BODY, at_secs(OWN_TS)), Ok(()));
}

#[test]
fn signs_bytes_that_are_not_utf8() {
    // python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(bytes(range(32)),
    //   b'wh_bin.1764788400.' + bytes([0xff, 0x00, 0x2e, 0xfe]), hashlib.sha256).digest()))"
    let body = [0xff, 0x00, b'.', 0xfe];
    assert_eq!(
        sign(&secret(OWN_SECRET), "wh_bin", OWN_TS, &body),
        "v1,4TIWyHqmSjhwM8wYRwpTIFokWRk9SG7mhaBtjua+dOQ="
    );
}

#[test]
fn a_wrong_secret_fails() {
    assert_eq!(
        check(&secret(OWN_SECRET), REF_SIGNATURE, REF_BODY),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn a_tampered_body_fails() {
    let key = secret(REF_SECRET);
    let mut body = REF_BODY.to_vec();
    body[10] ^= 1;
    assert_eq!(
        check(&key, REF_SIGNATURE, &body),
        Err(WebhookError::InvalidSignature)
    );
    let mut longer = REF_BODY.to_vec();
    longer.push(b' ');
    assert_eq!(
        check(&key, REF_SIGNATURE, &longer),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn a_tampered_id_or_timestamp_fails() {
    let key = secret(REF_SECRET);
    let ts = REF_TS.to_string();
    let other_id = headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpK", &ts, REF_SIGNATURE);
    assert_eq!(
        verify(&key, &other_id, REF_BODY, at_secs(REF_TS)),
        Err(WebhookError::InvalidSignature)
    );
    // One second later is well inside the tolerance: only the signature can refuse it.
    let later = (REF_TS + 1).to_string();
    let other_ts = headers(REF_ID, &later, REF_SIGNATURE);
    assert_eq!(
        verify(&key, &other_ts, REF_BODY, at_secs(REF_TS)),
        Err(WebhookError::InvalidSignature)
    );
    // Digits moved from the timestamp into the id do not carry the signature along (checked
    // at the shortened timestamp's own time, so that only the signature can refuse it).
    let shifted_id = format!("{REF_ID}.1");
    let shifted_ts = &ts[1..];
    let shifted = headers(&shifted_id, shifted_ts, REF_SIGNATURE);
    let shifted_now = at_secs(shifted_ts.parse().unwrap());
    assert_eq!(
        verify(&key, &shifted, REF_BODY, shifted_now),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn the_timestamp_is_verified_as_sent() {
    // A leading zero is the same second but other signed bytes: the signature over the
    // number without it does not cover it.
    let key = secret(REF_SECRET);
    let padded = format!("0{REF_TS}");
    let sent = headers(REF_ID, &padded, REF_SIGNATURE);
    assert_eq!(
        verify(&key, &sent, REF_BODY, at_secs(REF_TS)),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn any_matching_entry_is_enough() {
    let key = secret(REF_SECRET);
    let old = sign(&secret(OWN_SECRET), REF_ID, REF_TS, REF_BODY);
    // During a rotation the sender signs with the old and the new secret.
    let rotated = format!("{old} {REF_SIGNATURE}");
    assert_eq!(check(&key, &rotated, REF_BODY), Ok(()));
    let reversed = format!("{REF_SIGNATURE} {old}");
    assert_eq!(check(&key, &reversed, REF_BODY), Ok(()));
    assert_eq!(
        check(&key, &old, REF_BODY),
        Err(WebhookError::InvalidSignature)
    );
    // Runs of spaces are tolerated.
    let spaced = format!("  {old}   {REF_SIGNATURE} ");
    assert_eq!(check(&key, &spaced, REF_BODY), Ok(()));
}

#[test]
fn other_versions_are_ignored() {
    let key = secret(REF_SECRET);
    let tag = REF_SIGNATURE.trim_start_matches("v1,");
    for only_other in [
        format!("v2,{tag}"),
        format!("v1a,{tag}"),
        format!("V1,{tag}"),
    ] {
        assert_eq!(
            check(&key, &only_other, REF_BODY),
            Err(WebhookError::InvalidSignature),
            "{only_other}"
        );
    }
    let mixed = format!("v1a,{tag} v2,garbage,, v1,{tag}");
    assert_eq!(check(&key, &mixed, REF_BODY), Ok(()));
}

#[test]
fn partial_or_malformed_signatures_match_nothing() {
    // A comparison that zips the two strings would accept a prefix, or an empty value.
    let key = secret(REF_SECRET);
    let tag = REF_SIGNATURE.trim_start_matches("v1,");
    for bad in [
        "v1,".to_owned(),
        "v1".to_owned(),
        format!("v1,{}", &tag[..20]),
        format!("v1,{tag}AAAA"),
        format!("v1,{}", tag.trim_end_matches('=')),
        format!("v1, {tag}"),
        tag.to_owned(),
        ",".to_owned(),
    ] {
        assert_eq!(
            check(&key, &bad, REF_BODY),
            Err(WebhookError::InvalidSignature),
            "{bad:?}"
        );
    }
}

#[test]
fn timestamps_are_accepted_exactly_within_five_minutes() {
    let key = secret(REF_SECRET);
    let ts = REF_TS.to_string();
    let sent = headers(REF_ID, &ts, REF_SIGNATURE);
    let sent_ms = REF_TS * 1000;
    let edge_ms = TOLERANCE_SECS * 1000;
    for (now_ms, expected) in [
        (sent_ms + edge_ms, Ok(())),
        (sent_ms + edge_ms + 1, Err(WebhookError::Stale)),
        (sent_ms - edge_ms, Ok(())),
        (sent_ms - edge_ms - 1, Err(WebhookError::Stale)),
        (sent_ms + 86_400_000, Err(WebhookError::Stale)),
        (0, Err(WebhookError::Stale)),
    ] {
        let now = Timestamp::from_millis(now_ms);
        assert_eq!(verify(&key, &sent, REF_BODY, now), expected, "now {now_ms}");
    }
}

#[test]
fn staleness_is_checked_before_the_signature() {
    // A stale delivery is refused as stale even with a garbage signature: the cheap check
    // first, and the log says why.
    let key = secret(REF_SECRET);
    let ts = REF_TS.to_string();
    let sent = headers(REF_ID, &ts, "v1,AAAA");
    assert_eq!(
        verify(&key, &sent, REF_BODY, at_secs(REF_TS + 301)),
        Err(WebhookError::Stale)
    );
}

#[test]
fn missing_or_empty_headers_are_named() {
    let key = secret(REF_SECRET);
    let ts = REF_TS.to_string();
    let full = headers(REF_ID, &ts, REF_SIGNATURE);
    let now = at_secs(REF_TS);
    let cases = [
        (WebhookHeaders { id: None, ..full }, ID_HEADER),
        (
            WebhookHeaders {
                timestamp: None,
                ..full
            },
            TIMESTAMP_HEADER,
        ),
        (
            WebhookHeaders {
                signature: None,
                ..full
            },
            SIGNATURE_HEADER,
        ),
        (
            WebhookHeaders {
                id: Some(""),
                ..full
            },
            ID_HEADER,
        ),
        (
            WebhookHeaders {
                timestamp: Some(""),
                ..full
            },
            TIMESTAMP_HEADER,
        ),
        (
            WebhookHeaders {
                signature: Some(""),
                ..full
            },
            SIGNATURE_HEADER,
        ),
    ];
    for (sent, missing) in cases {
        assert_eq!(
            verify(&key, &sent, REF_BODY, now),
            Err(WebhookError::MissingHeader(missing))
        );
    }
    assert_eq!(
        verify(&key, &WebhookHeaders::default(), REF_BODY, now),
        Err(WebhookError::MissingHeader(ID_HEADER))
    );
}

#[test]
fn timestamps_must_be_plain_integer_seconds() {
    let key = secret(REF_SECRET);
    let now = at_secs(REF_TS);
    let too_long = "1".repeat(MAX_TIMESTAMP_DIGITS + 1);
    for bad in [
        "abc",
        "-1",
        "+1649367553",
        "1649367553.0",
        " 1649367553",
        "1649367553 ",
        "1.6e9",
        "2026-12-03T19:00:00Z",
        &too_long,
    ] {
        let sent = headers(REF_ID, bad, REF_SIGNATURE);
        assert_eq!(
            verify(&key, &sent, REF_BODY, now),
            Err(WebhookError::InvalidTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn ids_are_bounded_visible_ascii() {
    let key = secret(REF_SECRET);
    let ts = REF_TS.to_string();
    let now = at_secs(REF_TS);
    let longest = "i".repeat(MAX_ID_BYTES);
    let signature = sign(&key, &longest, REF_TS, REF_BODY);
    assert_eq!(
        verify(&key, &headers(&longest, &ts, &signature), REF_BODY, now),
        Ok(())
    );
    let too_long = "i".repeat(MAX_ID_BYTES + 1);
    let signature = sign(&key, &too_long, REF_TS, REF_BODY);
    assert_eq!(
        verify(&key, &headers(&too_long, &ts, &signature), REF_BODY, now),
        Err(WebhookError::InvalidId)
    );
    for bad in ["msg 1", "msg\t1", "msg\u{e9}"] {
        let signature = sign(&key, bad, REF_TS, REF_BODY);
        assert_eq!(
            verify(&key, &headers(bad, &ts, &signature), REF_BODY, now),
            Err(WebhookError::InvalidId),
            "{bad:?}"
        );
    }
}

#[test]
fn the_signature_list_is_bounded() {
    let key = secret(REF_SECRET);
    let decoy = sign(&secret(OWN_SECRET), REF_ID, REF_TS, REF_BODY);
    let list = |decoys: usize| {
        let mut entries = vec![decoy.clone(); decoys];
        entries.push(REF_SIGNATURE.to_owned());
        entries.join(" ")
    };
    assert_eq!(check(&key, &list(MAX_SIGNATURES - 1), REF_BODY), Ok(()));
    assert_eq!(
        check(&key, &list(MAX_SIGNATURES), REF_BODY),
        Err(WebhookError::InvalidSignature)
    );
    let padded = format!("{REF_SIGNATURE}{}", " ".repeat(MAX_SIGNATURE_HEADER_BYTES));
    assert_eq!(
        check(&key, &padded, REF_BODY),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn bad_secrets_are_refused_without_quoting_them() {
    let b64 = |n: usize| BASE64.encode(vec![7u8; n]);
    let cases = [
        (
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
            WebhookSecretError::MissingPrefix,
        ),
        (
            "WHSEC_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
            WebhookSecretError::MissingPrefix,
        ),
        (
            "whsk_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
            WebhookSecretError::MissingPrefix,
        ),
        (
            "whsec_not base64!".to_owned(),
            WebhookSecretError::NotBase64,
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD".to_owned(),
            WebhookSecretError::NotBase64,
        ),
        (
            format!("whsec_{}", b64(32).trim_end_matches('=')),
            WebhookSecretError::NotBase64,
        ),
        (
            format!(" whsec_{}", b64(32)),
            WebhookSecretError::MissingPrefix,
        ),
        ("whsec_".to_owned(), WebhookSecretError::WrongLength),
        (
            format!("whsec_{}", b64(MIN_SECRET_BYTES - 1)),
            WebhookSecretError::WrongLength,
        ),
        (
            format!("whsec_{}", b64(MAX_SECRET_BYTES + 1)),
            WebhookSecretError::WrongLength,
        ),
    ];
    for (raw, expected) in cases {
        let err = WebhookSecret::parse(&raw).unwrap_err();
        assert_eq!(err, expected, "{raw:?}");
        assert_eq!(err.to_string(), err.requirement());
        let body = raw.trim_start_matches("whsec_");
        assert!(body.len() < 8 || !err.to_string().contains(body));
    }
    for n in [MIN_SECRET_BYTES, 32, MAX_SECRET_BYTES] {
        assert!(
            WebhookSecret::parse(&format!("whsec_{}", b64(n))).is_ok(),
            "{n} bytes"
        );
    }
}

#[test]
fn secrets_never_show_their_key() {
    let key = secret(REF_SECRET);
    assert_eq!(format!("{key:?} {key}"), "<redacted> <redacted>");
    assert_eq!(format!("{:?}", Some(key.clone())), "Some(<redacted>)");
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        id in "[!-~]{1,255}",
        ts in 0i64..100_000_000_000,
        skew_ms in -TOLERANCE_SECS * 1000..=TOLERANCE_SECS * 1000,
    ) {
        let key = secret(OWN_SECRET);
        let signature = sign(&key, &id, ts, &body);
        let ts_text = ts.to_string();
        let now = Timestamp::from_millis(ts * 1000 + skew_ms);
        prop_assert_eq!(verify(&key, &headers(&id, &ts_text, &signature), &body, now), Ok(()));
    }

    #[test]
    fn flipping_any_body_byte_fails(
        body in proptest::collection::vec(any::<u8>(), 1..2048),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let key = secret(OWN_SECRET);
        let signature = sign(&key, OWN_ID, OWN_TS, &body);
        let mut tampered = body.clone();
        tampered[at.index(body.len())] ^= mask;
        let ts = OWN_TS.to_string();
        prop_assert_eq!(
            verify(&key, &headers(OWN_ID, &ts, &signature), &tampered, at_secs(OWN_TS)),
            Err(WebhookError::InvalidSignature)
        );
    }
}

// PortOne V2 bodies.

fn parsed(body: &str) -> Result<PortOneWebhook, PortOneWebhookError> {
    PortOneWebhook::parse(body.as_bytes())
}

#[test]
fn portone_paid_and_cancelled_are_read() {
    assert_eq!(
        PortOneWebhook::parse(PAID_BODY).unwrap(),
        PortOneWebhook::Paid {
            payment_id: "pay_01".into(),
            store_id: "store-00000000-0000-0000-0000-000000000000".into(),
        }
    );
    let cancelled = r#"{"type":"Transaction.Cancelled","timestamp":"2026-12-03T19:05:00Z",
        "data":{"paymentId":"pay_02","storeId":"store-1","transactionId":"tx_02",
        "cancellationId":"cancel_1"},"extra":[1,2,3]}"#;
    assert_eq!(
        parsed(cancelled).unwrap(),
        PortOneWebhook::Cancelled {
            payment_id: "pay_02".into(),
            store_id: "store-1".into(),
        }
    );
}

#[test]
fn portone_other_types_are_other_whatever_their_data() {
    for (body, kind) in [
        (
            r#"{"type":"Transaction.Ready","timestamp":"t","data":{"paymentId":"p","storeId":"s"}}"#,
            "Transaction.Ready",
        ),
        (
            r#"{"type":"Transaction.PartialCancelled","data":{"paymentId":"p"}}"#,
            "Transaction.PartialCancelled",
        ),
        (
            r#"{"type":"BillingKey.Issued","data":{"billingKey":"b"}}"#,
            "BillingKey.Issued",
        ),
        (r#"{"type":"Something.New"}"#, "Something.New"),
    ] {
        assert_eq!(parsed(body).unwrap(), PortOneWebhook::Other(kind.into()));
    }
}

/// The variant and field of an error, so that a table of cases can name what it expects.
fn error_kind(err: &PortOneWebhookError) -> String {
    match err {
        PortOneWebhookError::TooLarge => "too large".into(),
        PortOneWebhookError::Json(_) => "json".into(),
        PortOneWebhookError::MissingField(field) => format!("missing {field}"),
        PortOneWebhookError::TooLong(field) => format!("too long {field}"),
    }
}

#[test]
fn portone_bad_bodies_are_errors() {
    let long_payment = format!(
        r#"{{"type":"Transaction.Paid","data":{{"paymentId":"{}","storeId":"s"}}}}"#,
        "p".repeat(MAX_PAYMENT_ID_BYTES + 1)
    );
    let long_store = format!(
        r#"{{"type":"Transaction.Paid","data":{{"paymentId":"p","storeId":"{}"}}}}"#,
        "s".repeat(MAX_STORE_ID_BYTES + 1)
    );
    let long_type = format!(r#"{{"type":"{}"}}"#, "T".repeat(MAX_EVENT_TYPE_BYTES + 1));
    let huge = " ".repeat(MAX_PORTONE_BODY_BYTES + 1);
    let cases = [
        ("", "json"),
        ("not json", "json"),
        ("[]", "json"),
        (r#"{"data":{}}"#, "json"),
        (r#"{"type":7}"#, "json"),
        (r#"{"type":""}"#, "missing type"),
        (r#"{"type":"Transaction.Paid"}"#, "missing data"),
        (r#"{"type":"Transaction.Paid","data":null}"#, "missing data"),
        (r#"{"type":"Transaction.Paid","data":"p"}"#, "json"),
        (
            r#"{"type":"Transaction.Paid","data":{"storeId":"s"}}"#,
            "missing data.paymentId",
        ),
        (
            r#"{"type":"Transaction.Cancelled","data":{"paymentId":"p","storeId":""}}"#,
            "missing data.storeId",
        ),
        (
            r#"{"type":"Transaction.Paid","data":{"paymentId":1,"storeId":"s"}}"#,
            "json",
        ),
        (&long_payment, "too long data.paymentId"),
        (&long_store, "too long data.storeId"),
        (&long_type, "too long type"),
        (&huge, "too large"),
    ];
    for (body, expected) in cases {
        let err = parsed(body).unwrap_err();
        assert_eq!(error_kind(&err), expected, "{body:.80}");
    }
}
