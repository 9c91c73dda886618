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
        Command::Loadgen(LoadgenCli::Settlement(args)) => {
            settlement_bench::run(args, config).await?
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
