use std::process::ExitCode;

use authd::{
    config::{self, Config, Settings},
    startup, telemetry,
};
use clap::{Parser, Subcommand};

/// authd: user accounts, OAuth2 password login, JWT access tokens and rotating refresh tokens.
///
/// Settings come from the environment and from a `.env` file (see .env.example).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Exit 0 when the server at AUTHD_ADDR answers GET /healthz with 200 (for container
    /// health checks, where no HTTP client may be installed).
    Healthcheck,
}

fn main() -> ExitCode {
    // Before the settings are parsed: a `.env` file sets variables the environment lacks.
    if let Err(e) = config::load_dotenv() {
        eprintln!("authd: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let config = match Config::from_settings(&cli.settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("authd: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = startup::Application::build(&config).await?;
                app.run_until_stopped().await?;
                Ok(())
            }
            Command::Migrate => {
                startup::migrate(&config).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Healthcheck => startup::healthcheck(config.addr).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: anyhow::Error = e;
            eprintln!("authd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
