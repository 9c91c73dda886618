//! `stampede admin …`: operator commands that act on the store directly.

use crate::app::accounts::{create_user, provision_buyers};
use crate::app::catalog::seed;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::Role;
use crate::wiring;
use anyhow::Context;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

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

pub(super) async fn run(command: AdminCommand, config: &Config) -> anyhow::Result<()> {
    let store = wiring::open_store(config, &SystemClock).await?;
    let clock = SystemClock;
    match command {
        AdminCommand::CreateUser {
            email,
            password,
            role,
            partner,
        } => {
            let role = Role::parse(&role).context("role")?;
            let id =
                create_user(store.as_ref(), clock.now(), &email, password, role, partner).await?;
            println!("created {} user {id} <{email}>", role.as_str());
        }
        AdminCommand::SeedCatalog { count, stock } => {
            let started = std::time::Instant::now();
            let partner = seed(store.as_ref(), clock.now(), count, stock).await?;
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
            let auth = wiring::auth_service(store.as_ref(), config, Arc::new(clock)).await?;
            let started = std::time::Instant::now();
            let tokens =
                provision_buyers(store.as_ref(), &auth, clock.now(), count, token_ttl_secs).await?;
            write_tokens(&out, &tokens)?;
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

/// One token per line.
fn write_tokens(out: &PathBuf, tokens: &[String]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    for token in tokens {
        writeln!(file, "{token}")?;
    }
    file.flush()?;
    Ok(())
}
