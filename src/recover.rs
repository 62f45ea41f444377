//! Recovery: putting back what an interrupted or killed run left dropped on a destination,
//! from its state file. `pgcopy recover` does only this; `pgcopy copy` does it first.

use crate::config::RecoverConfig;
use crate::conn::{lock_destination, Identity, Target};
use crate::constraints::{self, Constraint};
use crate::sql::display_ident;
use crate::state::{State, StateFile};
use anyhow::{bail, Result};
use postgres::Client;

pub fn run(cfg: &RecoverConfig) -> Result<u8> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    let Some(state) = pending(&mut dest, &file, &cfg.dest)? else {
        println!(
            "{}: nothing to recover (no state file {})",
            cfg.dest,
            file.path.display()
        );
        return Ok(crate::exit::SUCCESS);
    };
    if state.plan.is_some() {
        println!(
            "{}: an interrupted copy finished {} tables; `pgcopy copy --resume` copies the rest",
            cfg.dest,
            state.done.len()
        );
    }
    if state.validate.is_empty() {
        println!("{}: every foreign key is in place", cfg.dest);
        return Ok(crate::exit::SUCCESS);
    }
    println!(
        "{}: every foreign key is back, but {} stay NOT VALID until a copy makes the data \
         whole again: {}",
        cfg.dest,
        state.validate.len(),
        describe_keys(&state.validate)
    );
    Ok(crate::exit::TABLES_FAILED)
}

fn describe_keys(keys: &[Constraint]) -> String {
    keys.iter()
        .map(|k| format!("{} on {}", display_ident(&k.name), k.table))
        .collect::<Vec<_>>()
        .join(", ")
}

/// If this destination has a state file, puts its keys back and validates what should be
/// valid, then returns the state that remains: keys still `NOT VALID` because the data an
/// interrupted copy left half done violates them (`validate`, for the next copy), and the
/// tables that copy finished (`plan`, `done`, for `--resume`). `None` when there was no
/// file. The caller holds the destination lock.
pub fn pending(dest: &mut Client, file: &StateFile, target: &Target) -> Result<Option<State>> {
    let Some(state) = file.load()? else {
        return Ok(None);
    };
    if state.keys.is_empty() && state.validate.is_empty() {
        return Ok(Some(state));
    }
    log::warn!(
        "an earlier run (pid {}, started at {} s since 1970) did not finish on {target}: \
         putting back the {} foreign keys it had dropped, first",
        state.pid,
        state.started,
        state.keys.len() + state.validate.len()
    );
    let all: Vec<Constraint> = state.keys.iter().chain(&state.validate).cloned().collect();
    let restored = constraints::restore_all(dest, &all)?;
    for problem in &restored.problems {
        log::warn!("{problem}");
    }
    let remaining = State {
        keys: restored.missing,
        validate: restored.unvalidated,
        ..state
    };
    file.store(&remaining)?;
    if !remaining.keys.is_empty() {
        bail!(
            "could not put back every foreign key the earlier run dropped ({}); the state file \
             {} is kept for another try",
            describe_keys(&remaining.keys),
            file.path.display()
        );
    }
    Ok(Some(remaining))
}
