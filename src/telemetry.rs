//! Tracing subscriber setup: human-readable text by default, JSON lines for log collectors.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// The level used when `RUST_LOG` is unset: authd's own events and one line per request.
/// sqlx statement logging stays at `warn` so slow-query noise does not drown the request log.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // `try_init` so that tests, which may build many apps in one process, can call it freely.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
