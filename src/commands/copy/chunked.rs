//! `--resume` of a chunked copy (see `plan::chunks`): what the destination recorded of it
//! counts as done, whatever the state file got to write before the run was killed — a chunk
//! is recorded in the commit that loads its rows, so only the chunks in flight are read
//! again.

use crate::pg::sql::TableName;
use crate::plan::chunks;
use crate::schema::catalog;
use crate::state::file::{Done, State};
use anyhow::Result;
use postgres::Client;
use std::collections::HashSet;

/// Marks done, in `previous`, the tables and pieces the destination recorded for `slot`.
pub(super) fn take_up_recorded(dest: &mut Client, slot: &str, previous: &mut State) -> Result<()> {
    let recorded = chunks::load(dest, slot, false)?;
    if recorded.is_empty() {
        return Ok(());
    }
    let names: Vec<TableName> = recorded.iter().map(|r| r.table.clone()).collect();
    let files = catalog::filenodes(dest, &names)?;
    let pieces: HashSet<(&TableName, &str)> = recorded
        .iter()
        .filter(|r| r.range.is_some())
        .map(|r| (&r.table, r.condition.as_str()))
        .collect();
    let mut marked = 0;
    for piece in &mut previous.pieces {
        if pieces.contains(&(&piece.table, piece.condition.as_str())) {
            marked += usize::from(!piece.done);
            piece.done = true;
            piece.filenode = files.get(&piece.table).copied().unwrap_or(0);
        }
    }
    for whole in recorded.iter().filter(|r| r.range.is_none()) {
        if !previous.done.iter().any(|d| d.table == whole.table) {
            previous.done.push(Done {
                table: whole.table.clone(),
                filenode: files.get(&whole.table).copied().unwrap_or(0),
            });
            marked += 1;
        }
    }
    if marked > 0 {
        log::info!(
            "{marked} chunks the interrupted run committed after it last wrote its state file \
             are done too, as the destination recorded them"
        );
    }
    Ok(())
}
