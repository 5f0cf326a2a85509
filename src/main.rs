use std::process::ExitCode;

/// jemalloc, with its freed pages kept instead of decayed back to the OS: each login hashes
/// with an argon2 buffer of the memory cost (`M_COST_KIB` in `auth::password`), and with
/// decay on, jemalloc returned those pages between two logins and faulted them in again at
/// the next. The start-up's own hash is purged once
/// ([`release_startup_memory`]), so an idle server starts small. BENCHMARKS.md has the
/// measurements; `cargo build --no-default-features` gives the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (its documented `malloc_conf` symbol).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

/// Hands the pages freed during start-up (the dummy password hash) back to the OS.
#[cfg(feature = "jemalloc")]
fn release_startup_memory() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages.
    // SAFETY: a documented mallctl that takes and returns nothing.
    let failed = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if failed != 0 {
        tracing::warn!(error = failed, "could not return start-up memory to the OS");
    }
}

#[cfg(not(feature = "jemalloc"))]
fn release_startup_memory() {}

use authd::{
    admin,
    config::{self, Config},
    startup, telemetry,
};
use clap::{CommandFactory, Parser, Subcommand};

/// authd: user accounts, OAuth2 password login, JWT access tokens and rotating refresh tokens.
///
/// Settings come from the environment and from a `.env` file (see .env.example).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
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
    /// Manage the keys stored in the database.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage accounts (no server needs to run).
    Users {
        /// Print one JSON document instead of lines for people
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage sessions (no server needs to run).
    Sessions {
        /// Print one JSON document instead of lines for people
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// End every session of a user: its access tokens are refused from the next request
    /// on, on every replica, and its refresh tokens stop working (API keys stay).
    Revoke {
        /// The user's name
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// One line per user: id, username, e-mail, created, and "disabled" if so.
    List,
    /// One user's details, and how many live sessions and API keys it has.
    Show { username: String },
    /// Refuse the user's logins, tokens and API keys from the next request on.
    Disable { username: String },
    /// Let a disabled user in again.
    Enable { username: String },
    /// End every session and revoke every API key of the user.
    Revoke { username: String },
    /// Turn the user's TOTP off without a code (lost app and recovery codes).
    MfaOff { username: String },
    /// Delete the user, with its sessions, tokens, API keys and second factor.
    Delete { username: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Seal every stored signing key and server secret under a new master key, in one
    /// transaction; then start authd with AUTHD_MASTER_KEY set to that key. The current key
    /// (if any) comes from AUTHD_MASTER_KEY.
    Rekey {
        /// A file holding the new key: 32 bytes in base64 (`openssl rand -base64 32 > F`)
        #[arg(long, value_name = "FILE")]
        new_key_file: std::path::PathBuf,
    },
    /// The stored signing keys: kid, algorithm, created, retired, and which one signs.
    List {
        /// Print one JSON document instead of lines for people
        #[arg(long)]
        json: bool,
    },
    /// Make a new Ed25519 key the one that signs. Tokens signed by the old one keep
    /// verifying until they expire; every running replica signs with the new key within a
    /// minute, without a restart.
    Rotate,
}

/// Prints what an operator's command did, for people or (`json`) for scripts.
fn print_said(said: &admin::Said, json: bool) {
    if json {
        println!("{}", said.json);
    } else if !said.text.is_empty() {
        println!("{}", said.text);
    }
}

fn main() -> ExitCode {
    // Before the settings are parsed: a `.env` file sets variables the environment lacks.
    if let Err(e) = config::load_dotenv() {
        eprintln!("authd: {e}");
        return ExitCode::from(2);
    }
    config::unset_empty_variables();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("authd: {}", config::describe(&e, &Cli::command()));
            return ExitCode::from(2);
        }
    };
    let config = cli.config;
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
                release_startup_memory();
                app.run_until_stopped().await?;
                Ok(())
            }
            Command::Migrate => {
                startup::migrate(&config).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Healthcheck => startup::healthcheck(config.addr).await,
            Command::Sessions { json, command } => {
                let said = match command {
                    SessionsCommand::Revoke { user } => {
                        admin::revoke_sessions(&config, &user).await?
                    }
                };
                print_said(&said, json);
                Ok(())
            }
            Command::Users { json, command } => {
                let said = match command {
                    UsersCommand::List => admin::list(&config).await?,
                    UsersCommand::Show { username } => admin::show(&config, &username).await?,
                    UsersCommand::Disable { username } => {
                        admin::set_disabled(&config, &username, true).await?
                    }
                    UsersCommand::Enable { username } => {
                        admin::set_disabled(&config, &username, false).await?
                    }
                    UsersCommand::Revoke { username } => admin::revoke(&config, &username).await?,
                    UsersCommand::MfaOff { username } => admin::mfa_off(&config, &username).await?,
                    UsersCommand::Delete { username } => admin::delete(&config, &username).await?,
                };
                print_said(&said, json);
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::List { json },
            } => {
                print_said(&admin::list_keys(&config).await?, json);
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Rotate,
            } => {
                let kid = startup::rotate_keys(&config).await?;
                println!("{kid} now signs new access tokens; running replicas pick it up within a minute");
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Rekey { new_key_file },
            } => {
                let resealed = startup::rekey(&config, &new_key_file).await?;
                println!(
                    "{resealed} stored secrets are now sealed under the key in {}; start authd with AUTHD_MASTER_KEY set to it",
                    new_key_file.display()
                );
                Ok(())
            }
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
