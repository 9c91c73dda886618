//! `stampede settle [--date YYYY-MM-DD]`: settles one business day by hand, as the daily
//! job does (`app::settlement`), by default the day before today in the settlement time
//! zone. A day settled before changes nothing.

use crate::config::Config;
use crate::domain::settlement::BusinessDate;
use crate::wiring::OperatorApp;

pub(super) async fn run(date: Option<String>, config: Config) -> anyhow::Result<()> {
    let operator = OperatorApp::open(config).await?;
    let outcome = settle(date.as_deref(), &operator).await;
    operator.close().await;
    outcome
}

async fn settle(date: Option<&str>, operator: &OperatorApp) -> anyhow::Result<()> {
    let settlement = &operator.app.settlement;
    let date = match date {
        Some(raw) => BusinessDate::parse("--date", raw)?,
        None => settlement.yesterday()?,
    };
    let day = settlement.settle_day(date).await?;
    if day.statements.is_empty() {
        println!("{date}: no new statements (settled before, or nothing confirmed that day)");
    }
    for s in &day.statements {
        println!(
            "{date}: statement {} for partner {}: {} lines, gross {}, commission {}, net {}",
            s.id, s.partner_id, s.line_count, s.gross, s.commission, s.net
        );
    }
    Ok(())
}
