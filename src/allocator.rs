//! glibc's allocator, set up for many small blocks that live for one request.
//!
//! Each glibc thread keeps a cache of freed blocks, seven per size class by default. A
//! `GET /users/me` makes about thirty allocations, and the requests of one group of session
//! checks are all in flight at once, so the cache overflows and the rest goes through the
//! arena's bins (`_int_malloc`, `_int_free`, and the consolidation of fast bins that the next
//! larger block triggers): about a tenth of that request's profile. With [`TCACHE_COUNT`]
//! blocks per class the same load ran about 10 % faster (`BENCHMARKS.md`), with the same idle
//! memory.
//!
//! glibc reads this setting only from the `GLIBC_TUNABLES` environment variable when a process
//! starts, so the server re-executes itself once, first thing, with the setting added to
//! whatever the variable already holds. An operator who sets `glibc.malloc.tcache_count`
//! there keeps their value (`7` is glibc's default).
//!
//! Once means once: the new process carries [`REEXECUTED`] and never re-executes again. The
//! variable alone would not do, since glibc may remove the setting from it: for a program
//! that gains privileges when run (`setcap cap_net_bind_service+ep authd`, to bind port 443
//! as an ordinary user), it drops the tunables it does not trust, and the server would find
//! the setting missing after every re-execution.

use std::ffi::OsString;

/// Freed blocks each thread keeps per size class.
pub const TCACHE_COUNT: u32 = 128;

const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// Set in the environment of the re-executed server: it has had its one try.
pub const REEXECUTED: &str = "AUTHD_ALLOCATOR_REEXECUTED";

/// The `GLIBC_TUNABLES` value to run with, given the current one, or `None` if the current
/// one already sets the cache size (then there is nothing to do).
pub fn tunables_with_tcache(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or_default();
    let already = current
        .split(':')
        .any(|setting| setting.split('=').next() == Some(TCACHE_TUNABLE));
    if already {
        return None;
    }
    let ours = format!("{TCACHE_TUNABLE}={TCACHE_COUNT}");
    Some(if current.is_empty() {
        ours
    } else {
        format!("{current}:{ours}")
    })
}

/// Replaces this process with itself (same pid, arguments and environment) plus the
/// allocator setting, unless it is already set or this process is itself the re-execution.
/// Returns only if there is nothing to do (`Ok`) or the re-execution failed (`Err`; the process then simply goes on as it is).
/// Call it first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_tunables() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(REEXECUTED).is_some() {
        return Ok(());
    }
    let current = match std::env::var("GLIBC_TUNABLES") {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        // A value that is not UTF-8 is the operator's own business: leave it alone.
        Err(std::env::VarError::NotUnicode(_)) => return Ok(()),
    };
    let Some(tunables) = tunables_with_tcache(current.as_deref()) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("authd"));
    Err(std::process::Command::new(std::env::current_exe()?)
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(REEXECUTED, "1")
        .exec())
}

/// Elsewhere the allocator is not glibc's: nothing to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_tunables() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_cache_size_to_what_is_set() {
        assert_eq!(
            tunables_with_tcache(None).as_deref(),
            Some("glibc.malloc.tcache_count=128")
        );
        assert_eq!(
            tunables_with_tcache(Some("")).as_deref(),
            Some("glibc.malloc.tcache_count=128")
        );
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.mxfast=0")).as_deref(),
            Some("glibc.malloc.mxfast=0:glibc.malloc.tcache_count=128")
        );
    }

    #[test]
    fn keeps_an_operators_own_cache_size() {
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.tcache_count=7")),
            None
        );
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0")),
            None
        );
        // A longer name that merely starts the same is another setting.
        assert!(tunables_with_tcache(Some("glibc.malloc.tcache_count_x=1")).is_some());
    }
}
