//! Recovery: putting back what an interrupted or killed run left dropped on a destination,
//! from its state file. `pgcopy recover` does only this; `pgcopy copy` does it first.

use crate::config::RecoverConfig;
use crate::conn::{lock_destination, Identity, Target};
use crate::constraints;
use crate::state::StateFile;
use anyhow::{bail, Result};
use postgres::Client;

pub fn run(cfg: &RecoverConfig) -> Result<u8> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    if pending(&mut dest, &file, &cfg.dest)? {
        println!("{}: put back what an interrupted run had dropped", cfg.dest);
    } else {
        println!(
            "{}: nothing to recover (no state file {})",
            cfg.dest,
            file.path.display()
        );
    }
    Ok(crate::exit::SUCCESS)
}

/// If the state file of this destination exists, puts its keys back and removes it.
/// Returns whether there was anything to do. The caller holds the destination lock.
pub fn pending(dest: &mut Client, file: &StateFile, target: &Target) -> Result<bool> {
    let Some(state) = file.load()? else {
        return Ok(false);
    };
    log::warn!(
        "an earlier run (pid {}, started at {} s since 1970) did not finish on {target}: \
         putting back the {} foreign keys it had dropped, first",
        state.pid,
        state.started,
        state.keys.len()
    );
    let restored = constraints::restore_all(dest, &state.keys)?;
    for problem in &restored.problems {
        log::warn!("{problem}");
    }
    if !restored.complete(&state.keys) {
        bail!(
            "could not put back every foreign key the earlier run dropped; the state file {} \
             is kept for another try",
            file.path.display()
        );
    }
    file.remove()?;
    Ok(true)
}
