//! Recovery: putting back what an interrupted or killed run left dropped on a destination,
//! from its state file. `pgcopy recover` does only this; `pgcopy copy` does it first.

use crate::config::RecoverConfig;
use crate::conn::{lock_destination, Identity, Target};
use crate::constraints::{self, ForeignKey};
use crate::state::StateFile;
use anyhow::{bail, Result};
use postgres::Client;

pub fn run(cfg: &RecoverConfig) -> Result<u8> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    match pending(&mut dest, &file, &cfg.dest)? {
        None => {
            println!(
                "{}: nothing to recover (no state file {})",
                cfg.dest,
                file.path.display()
            );
            Ok(crate::exit::SUCCESS)
        }
        Some(unvalidated) if unvalidated.is_empty() => {
            println!("{}: put back what an interrupted run had dropped", cfg.dest);
            Ok(crate::exit::SUCCESS)
        }
        Some(unvalidated) => {
            println!(
                "{}: every foreign key is back, but {} stay NOT VALID until a copy makes the \
                 data whole again: {}",
                cfg.dest,
                unvalidated.len(),
                unvalidated
                    .iter()
                    .map(|k| format!("{} on {}", k.name, k.table))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(crate::exit::TABLES_FAILED)
        }
    }
}

/// If the state file of this destination exists, puts its keys back and validates what
/// should be valid. Returns `None` when there was nothing to do, else the keys that are
/// back but still `NOT VALID` because the data an interrupted copy left half done violates
/// them; those stay in the state file for the next copy. The caller holds the lock.
pub fn pending(
    dest: &mut Client,
    file: &StateFile,
    target: &Target,
) -> Result<Option<Vec<ForeignKey>>> {
    let Some(state) = file.load()? else {
        return Ok(None);
    };
    log::warn!(
        "an earlier run (pid {}, started at {} s since 1970) did not finish on {target}: \
         putting back the {} foreign keys it had dropped, first",
        state.pid,
        state.started,
        state.keys.len()
    );
    let all: Vec<ForeignKey> = state.keys.iter().chain(&state.validate).cloned().collect();
    let restored = constraints::restore_all(dest, &all)?;
    for problem in &restored.problems {
        log::warn!("{problem}");
    }
    file.settle(&target.to_string(), &restored)?;
    if !restored.missing.is_empty() {
        bail!(
            "could not put back every foreign key the earlier run dropped; the state file {} \
             is kept for another try",
            file.path.display()
        );
    }
    Ok(Some(restored.unvalidated))
}
