//! `stampede verify [--repair]`: every ledger checked (`app::audit`), each difference
//! printed, a non-zero exit when anything differs.

use crate::app::audit;
use crate::clock::SystemClock;
use crate::cluster::coupon_gate::CouponGate;
use crate::config::Config;
use crate::wiring;
use std::process::ExitCode;

pub(super) async fn run(config: &Config, repair: bool) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config, &SystemClock).await?;
    let gate = match CouponGate::connect(config).await {
        Ok(gate) => gate,
        // The ledgers can still be checked; only a repair needs Redis.
        Err(e) if !repair => {
            println!("warning: {e:#}; the coupon gate is not compared");
            None
        }
        Err(e) => return Err(e),
    };
    if repair {
        match &gate {
            Some(gate) => {
                let reset = audit::repair_coupon_gate(store.as_ref(), gate).await?;
                for line in &reset {
                    println!("REPAIRED {line}");
                }
                println!(
                    "repair: reset {} coupon gate(s) from the database",
                    reset.len()
                );
            }
            None => println!("repair: no redis_url configured, nothing to reset"),
        }
    }
    let mut report = audit::run(store.as_ref()).await?;
    if let Some(gate) = &gate {
        let differences = audit::coupon_gate(store.as_ref(), gate).await?;
        report.problems.extend(differences);
    }
    store.close().await;
    println!(
        "checked {} products, {} orders and {} coupon campaigns",
        report.products, report.orders, report.campaigns
    );
    for problem in &report.problems {
        println!("DIFF {problem}");
    }
    if report.is_clean() {
        println!("verify: clean");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verify: {} problem(s)", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}
