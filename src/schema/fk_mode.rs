//! The `--fk-mode` in force: how a load gets past the destination's foreign keys and
//! triggers, and which mode `auto` becomes for the destination role.

use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::fmt;
use std::str::FromStr;

/// How the load gets past the destination's foreign keys (and triggers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FkMode {
    /// `Replica` when the role may set `session_replication_role`, else `Drop`.
    Auto,
    /// Writers run with `session_replication_role = replica`: no trigger fires unless it
    /// is enabled `ALWAYS` or `REPLICA`. Keys touching the copied tables are still dropped
    /// and put back, because TRUNCATE checks them whatever the role.
    Replica,
    /// Keys touching the copied tables are dropped and put back; user triggers are disabled
    /// inside each table's load transaction. Works for the tables' owner.
    Drop,
    /// Nothing is dropped: the user guarantees the load order, or has no keys.
    None,
}

impl FromStr for FkMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<FkMode> {
        Ok(match text {
            "auto" => FkMode::Auto,
            "replica" => FkMode::Replica,
            "drop" => FkMode::Drop,
            "none" => FkMode::None,
            other => bail!("unknown --fk-mode {other:?}: use auto, replica, drop or none"),
        })
    }
}

impl fmt::Display for FkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FkMode::Auto => "auto",
            FkMode::Replica => "replica",
            FkMode::Drop => "drop",
            FkMode::None => "none",
        })
    }
}

impl FkMode {
    /// Decides `Auto` by asking the destination; checks that `Replica` is allowed there.
    /// Letting triggers fire rules out replica mode, where ordinary triggers never fire.
    pub(crate) fn resolve(self, client: &mut Client, enable_triggers: bool) -> Result<FkMode> {
        match self {
            FkMode::Auto if enable_triggers => Ok(FkMode::Drop),
            FkMode::Auto if may_use_replica(client)? => Ok(FkMode::Replica),
            FkMode::Auto => Ok(FkMode::Drop),
            FkMode::Replica if !may_use_replica(client)? => bail!(
                "--fk-mode replica needs a superuser, or SET granted on session_replication_role \
                 (PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO role); \
                 --fk-mode drop works for the tables' owner"
            ),
            mode => Ok(mode),
        }
    }

    /// Whether keys touching the copied tables are dropped for the load.
    pub(crate) fn drops_keys(self) -> bool {
        self != FkMode::None
    }
}

/// Tries the setting in a transaction that is rolled back: the only test that is right for
/// every version and every way the privilege can be held.
fn may_use_replica(client: &mut Client) -> Result<bool> {
    let mut tx = client.transaction()?;
    match tx.batch_execute("SET LOCAL session_replication_role = replica") {
        Ok(()) => Ok(true),
        Err(err) if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(false),
        Err(err) => Err(err).context("checking whether session_replication_role may be set"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fk_modes() {
        for mode in ["auto", "replica", "drop", "none"] {
            assert_eq!(mode.parse::<FkMode>().unwrap().to_string(), mode);
        }
        assert!("cascade".parse::<FkMode>().is_err());
    }
}
