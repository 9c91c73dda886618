//! The real binary's operator commands, run against the test's database.

use super::TestApp;

impl TestApp {
    /// `stampede ARGS…` on the test's database, with only the test's settings (none of the
    /// environment's, no stampede.toml); `(exit success, stdout, stderr)`.
    pub async fn command(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stampede"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("STAMPEDE_") {
                command.env_remove(name);
            }
        }
        command
            .env("STAMPEDE_CONFIG", "/nonexistent/stampede.toml")
            .env("STAMPEDE_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("run stampede");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
