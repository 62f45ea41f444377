//! Keeping the destination quiet while changes are applied: as a replica where the role may
//! be one; else the foreign keys touching the followed tables dropped until cutover (and
//! recorded first, as a copy records them) and their triggers kept from firing.

use crate::cli::config::CopyConfig;
use crate::commands::keys;
use crate::pg::sql::TableName;
use crate::replication::apply;
use crate::replication::progress::Ledger;
use crate::schema::constraints;
use crate::schema::fk_mode::FkMode;
use crate::schema::triggers;
use crate::state::file::State;
use anyhow::Result;
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// How the destination is kept quiet while changes are applied: as a replica where the role
/// may be one; else with the keys touching the followed tables dropped until cutover
/// (recorded in the state file, as a copy records them, so `recover` or `abandon` puts them
/// back after a crash; dropped again here if something put them back meanwhile) and the
/// triggers switched off inside each applied transaction.
pub(super) fn quiet_destination(
    cfg: &CopyConfig,
    dest: &mut Client,
    followed: &HashSet<TableName>,
    ledger: Ledger,
) -> Result<apply::Setup> {
    let replica = cfg.fk_mode.resolve(dest, cfg.enable_triggers)? == FkMode::Replica;
    let mut tables: Vec<TableName> = followed.iter().cloned().collect();
    tables.sort();
    let mut quiet = HashMap::new();
    if !replica {
        drop_keys_while_following(cfg, dest, &tables)?;
        if !cfg.enable_triggers {
            quiet = triggers::firing(dest, &tables, false)?;
        }
    }
    Ok(apply::Setup {
        ledger,
        replica,
        quiet,
    })
}

/// Drops the foreign keys touching `tables` until cutover, recorded in the state file first
/// (as a copy records them) so that `recover` or `abandon` puts them back after a crash.
pub(super) fn drop_keys_while_following(
    cfg: &CopyConfig,
    dest: &mut Client,
    tables: &[TableName],
) -> Result<()> {
    let keys = constraints::find(dest, tables)?;
    if keys.is_empty() {
        return Ok(());
    }
    let file = keys::state_file(&cfg.state_dir, dest)?;
    let mut state = file
        .load()?
        .unwrap_or_else(|| State::new(cfg.dest.to_string()));
    for key in &keys {
        if !state.keys.iter().any(|k| k.same_key(key)) {
            state.keys.push(key.clone());
        }
    }
    file.store(&state)?;
    log::info!(
        "dropping {} foreign keys while following (recorded in {}); they are put back at \
         cutover",
        keys.len(),
        file.path.display()
    );
    constraints::drop_all(dest, &keys, cfg.lock_timeout)
}
