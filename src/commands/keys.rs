//! Putting back the foreign keys (and the indexes they need) a run dropped: after a copy's
//! load, at a follower's cutover, and in recovery from a state file; what cannot go back
//! stays recorded in the destination's state file for `recover`.

use crate::pg::error::describe;
use crate::pg::server::Identity;
use crate::pg::sql::display_ident;
use crate::pg::target::Target;
use crate::schema::constraints::{self, Constraint, Restored};
use crate::schema::indexes;
use crate::state::file::{State, StateFile};
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::path::Path;

/// The state file, in `state_dir`, of the destination `dest` is connected to.
pub(crate) fn state_file(state_dir: &Path, dest: &mut Client) -> Result<StateFile> {
    let identity = Identity::read(dest)?;
    Ok(StateFile::new(
        state_dir,
        &identity.database,
        &identity.key(),
    ))
}

/// Puts `keys` back, validated where they were valid, once `ready` made sure the session
/// can (a copy reconnects one the server closed meanwhile); what could not be done goes to
/// `problems`. Nothing is recorded here: the caller's state file says what is left.
pub(crate) fn put_back(
    dest: &mut Client,
    keys: &[Constraint],
    problems: &mut Vec<String>,
    ready: impl FnOnce(&mut Client) -> Result<()>,
) -> Restored {
    if keys.is_empty() {
        return Restored::default();
    }
    let restored = ready(dest)
        .context("could not reconnect to put the foreign keys back")
        .and_then(|()| constraints::restore_all(dest, keys));
    match restored {
        Ok(restored) => {
            problems.extend(restored.problems.iter().cloned());
            restored
        }
        Err(err) => {
            problems.push(describe(&err));
            Restored {
                missing: keys.to_vec(),
                ..Restored::default()
            }
        }
    }
}

/// The foreign keys the destination's state file lists as dropped (a follower's, kept
/// dropped until cutover, or a copy's in drop mode left for it) go back, validated. What
/// cannot go back stays recorded for `recover`. Whether all of them are back, valid.
pub(crate) fn put_back_recorded(state_dir: &Path, dest: &mut Client) -> Result<bool> {
    let file = state_file(state_dir, dest)?;
    let Some(state) = file.load()? else {
        return Ok(true);
    };
    if state.keys.is_empty() {
        return Ok(true);
    }
    let restored = constraints::restore_all(dest, &state.keys)?;
    for problem in &restored.problems {
        log::error!("{problem}");
    }
    let whole = restored.missing.is_empty() && restored.unvalidated.is_empty();
    file.store(&State {
        keys: restored.missing,
        validate: state
            .validate
            .into_iter()
            .chain(restored.unvalidated)
            .collect(),
        ..state
    })?;
    Ok(whole)
}

/// Puts back the indexes and keys `state` lists and records what remains in `file`.
pub(crate) fn put_back_state(
    dest: &mut Client,
    file: &StateFile,
    state: State,
    target: &Target,
) -> Result<State> {
    log::warn!(
        "an earlier run (pid {}, started {}) did not finish on {target}: putting back the {} \
         constraints and {} indexes it had dropped, first",
        state.pid,
        crate::units::rfc3339(state.started),
        state.keys.len() + state.validate.len(),
        state.indexes.len()
    );
    // Indexes first: a key needs the unique index it references.
    let (indexes_left, problems) = indexes::rebuild_missing(dest, &state.indexes, 1);
    for problem in &problems {
        log::warn!("{problem}");
    }
    let state = State {
        indexes: indexes_left,
        ..state
    };
    if !state.indexes.is_empty() {
        file.store(&state)?;
        bail!(
            "could not build again every index the earlier run dropped; the state file {} is \
             kept for another try",
            file.path.display()
        );
    }
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
            "could not put back every constraint the earlier run dropped ({}); the state file \
             {} is kept for another try",
            describe_keys(&remaining.keys),
            file.path.display()
        );
    }
    Ok(remaining)
}

/// The keys, by name and table, for a message.
pub(crate) fn describe_keys(keys: &[Constraint]) -> String {
    keys.iter()
        .map(|k| format!("{} on {}", display_ident(&k.name), k.table))
        .collect::<Vec<_>>()
        .join(", ")
}
