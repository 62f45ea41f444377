//! `copy --follow --resume`: going on from the destination's recorded progress with the
//! same slot, once the destination tables are checked to be those it followed into; going
//! on with the chunked copy, when the earlier follower stopped during it; or starting over,
//! when it stopped during a copy in one snapshot.

use crate::cli::config::CopyConfig;
use crate::exit::Exit;
use crate::pg::sql::TableName;
use crate::plan::chunks;
use crate::replication::decode::Lsn;
use crate::replication::follow;
use crate::replication::progress;
use crate::replication::slot::{self, LsnText};
use anyhow::{bail, Result};
use postgres::Client;
use std::collections::HashSet;

/// What `--resume` goes on with.
pub(super) enum Resumed {
    /// The earlier follower got past its copy: this run followed on, and ended so.
    Followed(Exit),
    /// It stopped during its chunked copy: the chunks it did not record are copied, while
    /// following goes on from `start` (where the destination is, or the slot `name`'s start).
    Copy { name: String, start: Lsn },
    /// It stopped during a copy in one snapshot, which is gone: everything again.
    Anew,
}

/// `--follow --resume`: follows from where the destination is, when an earlier follower got
/// past its copy; else says how the copy goes on, after dropping what a follower stopped
/// during a copy in one snapshot left.
pub(super) fn resume(cfg: &CopyConfig) -> Result<Resumed> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    let name = super::checks::name(&mut dest)?;
    let slot_exists = slot::find(&mut source, &name)?.is_some();
    let unread = chunks::counts(&mut dest, &name)?
        .iter()
        .any(|(_, read, all)| read < all);
    match (progress::find(&mut dest, &name)?, slot_exists) {
        (Some((_, at)), true) if unread => {
            same_tables(&mut source, &mut dest, &name)?;
            log::warn!(
                "resuming the initial copy: the chunks the earlier follower recorded on the \
                 destination stay, the others are copied now, while following goes on from \
                 {}, where the destination is",
                LsnText(at)
            );
            Ok(Resumed::Copy { name, start: at })
        }
        (Some((_, at)), true) => {
            same_tables(&mut source, &mut dest, &name)?;
            log::info!(
                "resuming: the destination holds every source transaction up to {}",
                LsnText(at)
            );
            Ok(Resumed::Followed(super::stream::follow(
                cfg,
                &name,
                None,
                || None,
                None,
            )?))
        }
        (Some(_), false) => bail!(
            "the destination was following the source, but the source's replication slot \
             {name} is gone, and with it the changes since: copy again with --follow, \
             without --resume, after `pgcopy abandon` drops the destination's record of it"
        ),
        (None, true) if chunks::exists(&mut dest, &name)? => {
            let start = slot::start_of(&mut source, &name)?;
            log::warn!(
                "resuming the initial copy: the chunks the earlier follower recorded on the \
                 destination stay, the others are copied now; following starts from the \
                 slot {name}'s start, {}",
                LsnText(start)
            );
            Ok(Resumed::Copy { name, start })
        }
        (None, true) => {
            log::warn!(
                "the destination has no record of the earlier follower's progress, nor of a \
                 chunk it copied: it stopped before its initial copy recorded one, or during \
                 a copy in one snapshot, which is gone with it, or a copy replaced its data \
                 since; starting over with a new slot (dropping {name})"
            );
            slot::drop_both(&mut source, &name)?;
            Ok(Resumed::Anew)
        }
        (None, false) => bail!(
            "nothing to resume: no follower of {} on {} (no replication slot {name}, and no \
             record of one on the destination); run `pgcopy copy --follow` without --resume",
            cfg.dest,
            cfg.source
        ),
    }
}

/// Refuses to go on following into tables that are not those the follower followed into:
/// dropped and made again since (a restore with `--clean`, another tool), they hold other
/// data, and applying the changes since onto it would mix the two.
fn same_tables(source: &mut Client, dest: &mut Client, name: &str) -> Result<()> {
    // Those still published: a table dropped on the source is followed no more.
    let published: HashSet<String> = follow::published(source, name)?
        .iter()
        .map(TableName::quoted)
        .collect();
    let mut recorded = slot::recorded_tables(source, name)?;
    recorded.retain(|table, _| published.contains(table));
    if recorded.is_empty() {
        return Ok(());
    }
    let names: Vec<TableName> = recorded
        .keys()
        .filter_map(|quoted| parse_quoted(quoted))
        .collect();
    let now = follow::dest_oids(dest, &names)?;
    let replaced: Vec<&str> = recorded
        .iter()
        .filter(|(table, oid)| now.get(*table) != Some(*oid))
        .map(|(table, _)| table.as_str())
        .collect();
    if replaced.is_empty() {
        return Ok(());
    }
    bail!(
        "not resuming: these destination tables are not those the follower followed into \
         (dropped and created again since, or gone: a restore, another tool): {}; applying \
         the source's changes since onto what they hold would mix two copies. `pgcopy \
         abandon`, then `pgcopy copy --follow` again",
        replaced.join(", ")
    )
}

/// A table's name back from its quoted form (`"schema"."table"`).
fn parse_quoted(quoted: &str) -> Option<TableName> {
    let mut parts = Vec::new();
    let mut rest = quoted;
    while let Some(after) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, n)| *n) == Some('"') {
                    name.push('"');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                name.push(c);
            }
        }
        parts.push(name);
        rest = after.get(end?..)?.strip_prefix('.').unwrap_or("");
    }
    match parts.as_slice() {
        [schema, table] => Some(TableName::new(schema, table)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_quoted_table_names() {
        let odd = TableName::new("we\"ird", "a.b");
        assert_eq!(parse_quoted(&odd.quoted()), Some(odd));
        assert_eq!(
            parse_quoted("\"public\".\"t\""),
            Some(TableName::new("public", "t"))
        );
        assert_eq!(parse_quoted("public.t"), None);
    }
}
