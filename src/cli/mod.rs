//! The command line: one binary, `stampede`, whose default command is `serve`. The
//! operator's commands are in [`admin`], [`dlq`], [`settle`] and [`verify`].

mod admin;
mod dlq;
mod settle;
mod settlement_bench;
mod verify;

pub use admin::AdminCommand;
pub use dlq::DlqCommand;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::wiring::{self, Server};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stampede",
    version,
    about = "Commerce backend for limited-edition drops and flash sales"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Run the consumer workers (and the outbox relay when this process holds its lease)
    /// without the HTTP API; needs STAMPEDE_KAFKA_BROKERS.
    Worker,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Recompute every balance from its ledger; exit non-zero if anything differs. With
    /// Redis configured, also compare the coupon gate with the database.
    Verify {
        /// First reset the Redis coupon gate from the database (the database is right).
        #[arg(long)]
        repair: bool,
    },
    /// Settle one business day by hand, as the daily job does: one statement per partner
    /// of the purchases confirmed that day. Running a day twice changes nothing.
    Settle {
        /// YYYY-MM-DD in STAMPEDE_SETTLEMENT_TIMEZONE; the day must have ended. Default:
        /// yesterday.
        #[arg(long)]
        date: Option<String>,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Dead letters: messages the event consumers gave up on. List, replay, discard.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Generate load against running servers and report throughput, latency and correctness.
    #[command(subcommand)]
    Loadgen(LoadgenCli),
}

/// `stampede loadgen …`: the HTTP scenarios of `crates/loadgen`, and the settlement batch,
/// which fills the configured store directly (`settlement_bench` says why).
#[derive(Subcommand)]
pub enum LoadgenCli {
    /// Seller settlement of one business day: fill the configured (empty) store with
    /// --lines confirmed purchases over --partners partners, then time the settlement
    /// beside the bare INSERT … SELECT … GROUP BY aggregate, in the same run.
    Settlement(settlement_bench::SettlementBenchArgs),
    /// Seed 002's order load test: buyers each holding coupons and points order for
    /// --duration (closed loop with --concurrency users and --think, or open at --rate),
    /// every order with a coupon and points; the orders are read back and `verify` runs on
    /// the configured database (the servers' own), which must be clean.
    Orders(stampede_loadgen::OrdersArgs),
    #[command(flatten)]
    Http(stampede_loadgen::LoadgenCommand),
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<std::process::ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            tracing::info!(?config, "starting");
            let server = Server::bind(config).await?;
            tracing::info!(addr = %server.local_addr(), "listening");
            server.run(wiring::shutdown_signal()).await?;
        }
        Command::Worker => {
            tracing::info!(?config, "starting a worker");
            wiring::work(config, wiring::shutdown_signal()).await?;
        }
        Command::Migrate => {
            wiring::open_store(&config, &SystemClock)
                .await?
                .close()
                .await;
            println!("database is up to date");
        }
        Command::Verify { repair } => return verify::run(&config, repair).await,
        Command::Settle { date } => settle::run(date, config).await?,
        Command::Admin(command) => admin::run(command, &config).await?,
        Command::Dlq(command) => dlq::run(command, config).await?,
        Command::Loadgen(LoadgenCli::Http(command)) => return stampede_loadgen::run(command).await,
        Command::Loadgen(LoadgenCli::Orders(args)) => {
            return stampede_loadgen::run_orders(args, || verify_after_load(&config)).await
        }
        Command::Loadgen(LoadgenCli::Settlement(args)) => {
            settlement_bench::run(args, config).await?
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `stampede verify`'s checks for `loadgen orders`, on the configured database: every
/// ledger, and the Redis coupon gate when one is configured. The load generator is a client
/// of the API and cannot open the store itself, so the binary hands it this.
async fn verify_after_load(config: &Config) -> anyhow::Result<stampede_loadgen::Verified> {
    use crate::app::audit;
    let store = wiring::open_store(config, &SystemClock).await?;
    let report = audit::run(store.as_ref()).await;
    let gate = match crate::cluster::coupon_gate::CouponGate::connect(config).await {
        Ok(Some(gate)) => audit::coupon_gate(store.as_ref(), &gate).await.map(Some),
        Ok(None) => Ok(None),
        // As `stampede verify`: the ledgers can still be checked without Redis.
        Err(e) => {
            eprintln!("warning: {e:#}; the coupon gate is not compared");
            Ok(None)
        }
    };
    store.close().await;
    let mut report = report?;
    report.problems.extend(gate?.unwrap_or_default());
    Ok(stampede_loadgen::Verified {
        checked: format!(
            "checked {} products, {} orders and {} coupon campaigns",
            report.products, report.orders, report.campaigns
        ),
        problems: report.problems,
    })
}
