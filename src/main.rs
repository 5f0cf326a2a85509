use std::process::ExitCode;

use authd::{allocator, config, startup, telemetry};
use clap::{Parser, Subcommand};

/// authd: user accounts, OAuth2 password login, JWT access tokens and rotating refresh tokens.
///
/// Settings come from the environment and from a `.env` file (see .env.example).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    let cli = Cli::parse();
    let serve = matches!(cli.command, None | Some(Command::Serve));
    // Before any thread starts. Returns only if the setting is in effect or cannot be.
    let reexec = if serve {
        allocator::reexec_with_tunables()
    } else {
        Ok(())
    };
    let config = match config::load_dotenv().and_then(|()| config::Config::from_env()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("authd: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    if let Err(e) = reexec {
        tracing::warn!(error = %e, "could not restart with the allocator setting; running without it");
    }

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
