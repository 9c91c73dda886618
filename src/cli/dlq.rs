//! `stampede dlq …`: the dead letters, for an operator at the shell (the same use case as
//! `/api/v1/admin/dead-letters`, acting as [`Actor::OPERATOR`]). A replay runs the node's
//! own handlers, so these commands build the use cases as `serve` does
//! ([`wiring::OperatorApp`]), without serving anything.

use crate::app::dead_letters::{event_type, message_json};
use crate::config::Config;
use crate::domain::dead_letter::DeadLetterStatus;
use crate::domain::Actor;
use crate::store::{DeadLetterRecord, Page, PageRequest, MAX_PAGE_SIZE};
use crate::wiring::OperatorApp;
use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        /// Print the page as JSON, as the API answers it.
        #[arg(long)]
        json: bool,
        #[arg(long, value_parser = ["open", "replayed", "discarded"])]
        status: Option<String>,
        /// 1-based.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
        page: i64,
        /// Letters per page, 1..=100.
        #[arg(long, default_value_t = MAX_PAGE_SIZE, value_parser = clap::value_parser!(i64).range(1..=MAX_PAGE_SIZE))]
        size: i64,
    },
    /// Run an open dead letter's message through its handler again (handlers are
    /// idempotent: a message processed meanwhile changes nothing twice).
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every open dead letter, oldest first; exits non-zero if any failed.
        #[arg(long)]
        all: bool,
    },
    /// Give up on an open dead letter.
    Discard { id: i64 },
}

pub(super) async fn run(command: DlqCommand, config: Config) -> anyhow::Result<()> {
    let operator = OperatorApp::open(config).await?;
    let outcome = execute(command, &operator).await;
    operator.close().await;
    outcome
}

async fn execute(command: DlqCommand, operator: &OperatorApp) -> anyhow::Result<()> {
    let letters = &operator.app.dead_letters;
    let actor = Actor::OPERATOR;
    match command {
        DlqCommand::List {
            json,
            status,
            page,
            size,
        } => {
            let status = status.as_deref().and_then(DeadLetterStatus::parse);
            let listed = letters
                .list(&actor, status, PageRequest { page, size })
                .await?;
            if json {
                println!("{}", page_json(listed));
            } else {
                print_table(&listed);
            }
        }
        DlqCommand::Replay { id: Some(id), .. } => {
            let letter = letters
                .replay(&actor, id)
                .await
                .with_context(|| format!("dead letter {id} not replayed"))?;
            println!("dead letter {id} replayed ({})", letter.handler);
        }
        DlqCommand::Replay { id: None, .. } => {
            let done = letters.replay_all(&actor).await?;
            println!(
                "replayed {}, failed {}, settled meanwhile {}",
                done.replayed, done.failed, done.skipped
            );
            if done.failed > 0 {
                anyhow::bail!(
                    "{} dead letters failed again: see `stampede dlq list --status open`",
                    done.failed
                );
            }
        }
        DlqCommand::Discard { id } => {
            letters
                .discard(&actor, id)
                .await
                .with_context(|| format!("dead letter {id} not discarded"))?;
            println!("dead letter {id} discarded");
        }
    }
    Ok(())
}

/// The shape of `GET /api/v1/admin/dead-letters`.
fn page_json(page: Page<DeadLetterRecord>) -> Value {
    let items: Vec<Value> = page.items.into_iter().map(letter_json).collect();
    json!({"items": items, "page": page.page, "size": page.size, "total": page.total})
}

fn letter_json(r: DeadLetterRecord) -> Value {
    let message = message_json(&r.message);
    json!({
        "id": r.id,
        "handler": r.handler,
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "key": r.key,
        "event_id": r.event_id,
        "event_type": event_type(&message),
        "error": r.error,
        "attempts": r.attempts,
        "retries": r.retries,
        "status": r.status.as_str(),
        "first_failed_at": r.first_failed_at.to_rfc3339(),
        "last_failed_at": r.last_failed_at.to_rfc3339(),
        "message": message,
    })
}

fn print_table(page: &Page<DeadLetterRecord>) {
    println!(
        "{:>8}  {:<9}  {:<18}  {:<28}  {:>8}  {:>7}  {:<24}  error",
        "id", "status", "handler", "topic[partition]@offset", "attempts", "retries", "last failed"
    );
    for r in &page.items {
        let place = format!("{}[{}]@{}", r.topic, r.partition, r.offset);
        println!(
            "{:>8}  {:<9}  {:<18}  {:<28}  {:>8}  {:>7}  {:<24}  {}",
            r.id,
            r.status.as_str(),
            r.handler,
            place,
            r.attempts,
            r.retries,
            r.last_failed_at.to_rfc3339(),
            r.error
        );
    }
    println!(
        "{} letters; page {}, {} per page",
        page.total, page.page, page.size
    );
}
