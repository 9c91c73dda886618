//! The conventions both backends share, checked over the store's own source: every store
//! method has the same span (name and fields) on SQLite and on PostgreSQL, and nothing in
//! the store reads the wall clock (callers pass `now`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn store_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/store") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `fn name` → its `#[tracing::instrument(…)]` attribute (whitespace collapsed), for every
/// instrumented function of one backend. Test files are left out.
fn spans(backend: &str) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&store_dir().join(backend), &mut files);
    let mut spans = BTreeMap::new();
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let text = std::fs::read_to_string(file).expect("readable source");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if !line.trim_start().starts_with("#[tracing::instrument") {
                continue;
            }
            let mut attribute = line.trim().to_owned();
            while attribute.matches('[').count() > attribute.matches(']').count() {
                attribute.push_str(lines.next().expect("a closed attribute").trim());
            }
            let name = lines
                .by_ref()
                .find_map(|l| {
                    let after = l.split("fn ").nth(1)?;
                    Some(after.split(['(', '<']).next()?.trim().to_owned())
                })
                .expect("an instrumented fn");
            let attribute: String = attribute.split_whitespace().collect::<Vec<_>>().join(" ");
            let clash = spans.insert(name.clone(), attribute);
            assert!(clash.is_none(), "{backend}: two spans named {name}");
        }
    }
    spans
}

#[test]
fn both_backends_open_the_same_spans() {
    let sqlite = spans("sqlite");
    let postgres = spans("postgres");
    // Every method of every store trait, and `migrate` (not `ping`, `close`, `backend`).
    assert!(sqlite.len() >= 57, "only {} spans on SQLite", sqlite.len());
    let mut differences = Vec::new();
    for name in sqlite.keys().chain(postgres.keys()) {
        if sqlite.get(name) != postgres.get(name) {
            differences.push(format!(
                "{name}:\n  sqlite:   {:?}\n  postgres: {:?}",
                sqlite.get(name),
                postgres.get(name)
            ));
        }
    }
    differences.dedup();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn spans_carry_no_secrets() {
    for (name, attribute) in spans("sqlite").into_iter().chain(spans("postgres")) {
        assert!(attribute.contains("skip_all"), "{name}: {attribute}");
        for secret in ["hash", "password", "jti", "token", "payload"] {
            assert!(
                !attribute.contains(secret),
                "{name} records {secret}: {attribute}"
            );
        }
    }
}

#[test]
fn the_store_never_reads_the_clock() {
    // Spelled in pieces so that this file does not match itself.
    let reads = [
        concat!("Timestamp", "::now"),
        concat!("SystemTime", "::now"),
        concat!("Instant", "::now"),
        concat!("OffsetDateTime", "::now"),
        concat!("Utc", "::now"),
    ];
    let mut files = Vec::new();
    rust_files(&store_dir(), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for read in reads {
            assert!(!text.contains(read), "{} calls {read}", file.display());
        }
    }
}
