//! `stampede admin …`: operator commands that act on the store directly.

use crate::app::accounts::{create_user, provision_buyers};
use crate::app::catalog::seed;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::Role;
use crate::wiring;
use anyhow::Context;
use clap::Subcommand;
use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The token file signs in as every buyer it lists: its owner's alone.
const TOKEN_FILE_MODE: u32 = 0o600;

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
            // Hundredths: the batch path seeds 50,000 products in about a second.
            let secs = started.elapsed().as_secs_f64();
            println!(
                "seeded partner {partner} with {count} products in {secs:.2}s ({:.0} products/s)",
                count as f64 / secs.max(f64::EPSILON)
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

/// One token per line, in a file only its owner may read or write (mode 0600): each line
/// signs in as a buyer for `token_ttl_secs`. The mode is set as the file is created, so no
/// other user can open it in between; a file that was there already is narrowed to 0600
/// before a token is written into it.
fn write_tokens(out: &Path, tokens: &[String]) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(TOKEN_FILE_MODE)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.set_permissions(Permissions::from_mode(TOKEN_FILE_MODE))
        .with_context(|| format!("restricting {} to its owner", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    for token in tokens {
        writeln!(file, "{token}")?;
    }
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn token_files_are_readable_by_their_owner_only() {
        let dir = std::env::temp_dir().join(format!("stampede-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (new, existing) = (dir.join("new.txt"), dir.join("existing.txt"));
        std::fs::write(&existing, "an older, longer file\nof two lines\n").unwrap();
        std::fs::set_permissions(&existing, Permissions::from_mode(0o644)).unwrap();

        let tokens = ["a.b.c".to_owned(), "d.e.f".to_owned()];
        for path in [&new, &existing] {
            write_tokens(path, &tokens).unwrap();
            assert_eq!(mode(path), 0o600, "{}", path.display());
            assert_eq!(std::fs::read_to_string(path).unwrap(), "a.b.c\nd.e.f\n");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
