//! The command line: one binary, `stampede`, whose default command is `serve`.

use crate::config::Config;
use crate::domain::Role;
use crate::server::{self, Server};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

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
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Recompute every balance from its ledger; exit non-zero if anything differs. With
    /// Redis configured, also compare the coupon gate with the database.
    Verify {
        /// First reset the Redis coupon gate from the database (the database is right).
        #[arg(long)]
        repair: bool,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Generate load against running servers and report throughput, latency and correctness.
    #[command(subcommand)]
    Loadgen(stampede_loadgen::LoadgenCommand),
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a user with a password.
    CreateUser {
        #[arg(long)]
        email: String,
        /// Read from STAMPEDE_NEW_USER_PASSWORD when not given (keeps it out of `ps`).
        #[arg(long, env = "STAMPEDE_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, value_parser = ["admin", "seller", "buyer"])]
        role: String,
        /// The partner a seller belongs to.
        #[arg(long)]
        partner: Option<i64>,
    },
    /// Create a partner and COUNT products (released a minute apart) for load tests.
    SeedCatalog {
        #[arg(long)]
        count: usize,
        /// Units of stock per product.
        #[arg(long, default_value_t = 100)]
        stock: i64,
    },
    /// Bulk-create buyers for a load test and write one access token per line to FILE.
    ProvisionBuyers {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// Lifetime of the written access tokens.
        #[arg(long, default_value_t = 3600)]
        token_ttl_secs: u64,
    },
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<std::process::ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            tracing::info!(?config, "starting");
            let server = Server::bind(config).await?;
            tracing::info!(addr = %server.local_addr(), "listening");
            server.run(server::shutdown_signal()).await?;
        }
        Command::Migrate => {
            server::open_store(&config).await?.close().await;
            println!("database is up to date");
        }
        Command::Verify { repair } => return verify(&config, repair).await,
        Command::Admin(command) => admin(command, &config).await?,
        Command::Loadgen(command) => return stampede_loadgen::run(command).await,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn verify(config: &Config, repair: bool) -> anyhow::Result<std::process::ExitCode> {
    let store = server::open_store(config).await?;
    let gate = match crate::cluster::coupon_gate::CouponGate::connect(config).await {
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
                let reset = crate::verify::repair_coupon_gate(store.as_ref(), gate).await?;
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
    let mut report = crate::verify::run(store.as_ref()).await?;
    if let Some(gate) = &gate {
        let differences = crate::verify::coupon_gate(store.as_ref(), gate).await?;
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
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!("verify: {} problem(s)", report.problems.len());
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn admin(command: AdminCommand, config: &Config) -> anyhow::Result<()> {
    let store = server::open_store(config).await?;
    match command {
        AdminCommand::CreateUser {
            email,
            password,
            role,
            partner,
        } => {
            let role = Role::parse(&role).context("role")?;
            let id =
                crate::admin::create_user(store.as_ref(), &email, &password, role, partner).await?;
            println!("created {} user {id} <{email}>", role.as_str());
        }
        AdminCommand::SeedCatalog { count, stock } => {
            let started = std::time::Instant::now();
            let partner = crate::admin::seed_catalog(store.as_ref(), count, stock).await?;
            println!(
                "seeded partner {partner} with {count} products in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        AdminCommand::ProvisionBuyers {
            count,
            out,
            token_ttl_secs,
        } => {
            let auth = server::auth_service(store.as_ref(), config).await?;
            let started = std::time::Instant::now();
            let tokens =
                crate::admin::provision_buyers(store.as_ref(), &auth, count, token_ttl_secs)
                    .await?;
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?,
            );
            for token in &tokens {
                writeln!(file, "{token}")?;
            }
            file.flush()?;
            println!(
                "provisioned {} buyers in {:.1}s; tokens in {}",
                tokens.len(),
                started.elapsed().as_secs_f64(),
                out.display()
            );
        }
    }
    store.close().await;
    Ok(())
}
