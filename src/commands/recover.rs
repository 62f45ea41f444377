//! Recovery: putting back what an interrupted or killed run left dropped on a destination,
//! from its state file. `pgcopy recover` does only this; `pgcopy copy` does it first.

use crate::cli::config::RecoverConfig;
use crate::commands::keys;
use crate::exit::Exit;
use crate::pg::server::{lock_destination, Identity};
use crate::pg::sql::display_ident;
use crate::pg::target::Target;
use crate::schema::constraints::{self, Constraint};
use crate::schema::indexes;
use crate::state::file::{State, StateFile};
use anyhow::{bail, Result};
use postgres::Client;
use std::io::Write as _;

pub(crate) fn run(cfg: &RecoverConfig) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    let Some(state) = pending_forgetting(&mut dest, &file, &cfg.dest, cfg.forget_gone)? else {
        let _ = writeln!(
            crate::output::format::stdout(),
            "{}: nothing to recover (no state file {})",
            cfg.dest,
            file.path.display()
        );
        return Ok(Exit::Success);
    };
    if state.plan.is_some() {
        let _ =
            writeln!(crate::output::format::stdout(),
            "{}: an interrupted copy finished {} tables; `pgcopy copy --resume` copies the rest",
            cfg.dest,
            state.done.len()
        );
    }
    if state.validate.is_empty() {
        let _ = writeln!(
            crate::output::format::stdout(),
            "{}: every foreign key is in place",
            cfg.dest
        );
        return Ok(Exit::Success);
    }
    let _ = writeln!(
        crate::output::format::stdout(),
        "{}: every foreign key is back, but {} stay NOT VALID until a copy makes the data \
         whole again: {}",
        cfg.dest,
        state.validate.len(),
        keys::describe_keys(&state.validate)
    );
    Ok(Exit::TablesFailed)
}

/// If this destination has a state file, puts its keys back and validates what should be
/// valid, then returns the state that remains: keys still `NOT VALID` because the data an
/// interrupted copy left half done violates them (`validate`, for the next copy), and the
/// tables that copy finished (`plan`, `done`, for `--resume`). `None` when there was no
/// file. The caller holds the destination lock.
///
/// A file is named after the destination's identity, which a physical clone shares (the
/// same system identifier, port and database). A file whose dropped keys are all in place
/// here does not describe this server: it is set aside, not applied, and a file set aside
/// earlier is applied where its keys are missing, on the server it belongs to.
pub(crate) fn pending(
    dest: &mut Client,
    file: &StateFile,
    target: &Target,
) -> Result<Option<State>> {
    pending_forgetting(dest, file, target, false)
}

/// `pending`; with `forget_gone`, what the file lists for tables dropped since is
/// forgotten (else it stops there, saying so and how to forget it).
fn pending_forgetting(
    dest: &mut Client,
    file: &StateFile,
    target: &Target,
    forget_gone: bool,
) -> Result<Option<State>> {
    for aside in file.set_aside_files()? {
        let Some(state) = aside.load()? else {
            continue;
        };
        if !all_in_place(dest, &state)? {
            log::warn!(
                "{} was set aside as another server's, but its dropped keys are missing on \
                 {target}: it is this server's",
                aside.path.display()
            );
            let remaining = keys::put_back_state(dest, &aside, state, target)?;
            // What is left of it (keys to validate, tables to resume) is this server's.
            let merged = match file.load()? {
                Some(current) => State {
                    validate: current
                        .validate
                        .into_iter()
                        .chain(remaining.validate)
                        .collect(),
                    ..current
                },
                None => remaining,
            };
            file.store(&merged)?;
            aside.remove()?;
        }
    }
    let Some(state) = file.load()? else {
        return Ok(None);
    };
    if (!state.keys.is_empty() || !state.indexes.is_empty()) && all_in_place(dest, &state)? {
        let aside = file.set_aside(&state)?;
        log::warn!(
            "the state file {} lists {} constraints as dropped on {target}, but all of them \
             are in place there: the run that wrote it stopped before it dropped them, they \
             were put back by hand, or the file belongs to another server with the same \
             identity (a clone restored from the same backup). It is set aside as {}, and \
             applied only where those constraints are missing",
            file.path.display(),
            state.keys.len(),
            aside.path.display()
        );
        return Ok(None);
    }
    if state.keys.is_empty() && state.validate.is_empty() && state.indexes.is_empty() {
        return Ok(Some(state));
    }
    let state = without_gone(dest, file, state, forget_gone)?;
    let remaining = keys::put_back_state(dest, file, state, target)?;
    Ok(Some(remaining))
}

/// What the state lists for tables that are gone from the destination (dropped since the
/// run that wrote it) cannot be put back: forgotten when asked, saying what, else an error
/// that says how to forget it; nothing else the file lists is touched.
fn without_gone(dest: &mut Client, file: &StateFile, state: State, forget: bool) -> Result<State> {
    let mut gone_keys = Vec::new();
    for key in state.keys.iter().chain(&state.validate) {
        let referenced = referenced_table(&key.definition);
        let missing = !exists(dest, &key.table.quoted())?
            || referenced.is_some_and(|r| !exists(dest, r).unwrap_or(true));
        if missing {
            gone_keys.push(key.clone());
        }
    }
    let gone_indexes: Vec<String> = state
        .indexes
        .iter()
        .filter(|i| !exists(dest, &i.table.quoted()).unwrap_or(false))
        .map(|i| format!("{} on {}", display_ident(&i.name), i.table))
        .collect();
    if gone_keys.is_empty() && gone_indexes.is_empty() {
        return Ok(state);
    }
    let what = keys::describe_keys(&gone_keys)
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| format!("the key {s}"))
        .chain(gone_indexes.iter().map(|i| format!("the index {i}")))
        .collect::<Vec<_>>()
        .join(", ");
    if !forget {
        bail!(
            "the state file {} lists what an earlier run dropped on tables that no longer \
             exist here (dropped since): {what}; it cannot be put back. `pgcopy recover \
             --forget-gone` forgets it (and puts back the rest)",
            file.path.display()
        );
    }
    log::warn!("forgetting what the state file lists for tables dropped since: {what}");
    let kept = |k: &Constraint| !gone_keys.iter().any(|g| g.same_key(k));
    let state = State {
        keys: state.keys.into_iter().filter(kept).collect(),
        validate: state.validate.into_iter().filter(kept).collect(),
        indexes: state
            .indexes
            .into_iter()
            .filter(|i| exists(dest, &i.table.quoted()).unwrap_or(true))
            .collect(),
        ..state
    };
    file.store(&state)?;
    Ok(state)
}

/// Whether the destination has the table `quoted` names.
fn exists(dest: &mut Client, quoted: &str) -> Result<bool> {
    Ok(dest
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])?
        .get(0))
}

/// The table a foreign key's definition (`pg_get_constraintdef`) references, as written
/// there: what follows `REFERENCES ` up to its column list.
fn referenced_table(definition: &str) -> Option<&str> {
    let rest = &definition[definition.find("REFERENCES ")? + "REFERENCES ".len()..];
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Whether everything `state` lists as dropped is in place: its keys and its indexes.
fn all_in_place(dest: &mut Client, state: &State) -> Result<bool> {
    Ok(
        constraints::all_in_place(dest, &state.keys)?
            && indexes::all_present(dest, &state.indexes)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_table_a_key_references() {
        assert_eq!(
            referenced_table("FOREIGN KEY (a) REFERENCES public.t(id) ON DELETE CASCADE"),
            Some("public.t")
        );
        assert_eq!(
            referenced_table(r#"FOREIGN KEY (a, b) REFERENCES "odd(name)"."x y"(a, b)"#),
            Some(r#""odd(name)"."x y""#)
        );
        assert_eq!(referenced_table("CHECK (v > 0)"), None);
    }
}
