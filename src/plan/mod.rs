//! What a copy will do: which tables, which of their columns, in which format and order,
//! and the check that the destination can take it before anything is written.

pub(crate) mod chunks;
pub(crate) mod conversions;
pub(crate) mod filter;
pub(crate) mod misfits;
pub(crate) mod pieces;
pub(crate) mod reading;
pub(crate) mod refusals;
pub(crate) mod snapshot;

use crate::pg::sql::{column_list, TableName};
use crate::plan::conversions::{Conversion, How};
use crate::plan::filter::TableFilter;
use crate::plan::pieces::Split;
use crate::plan::reading::{Mask, Reads, Subset};
use crate::schema::catalog::{self, Column, Table};
use crate::schema::indexes::Index;
use crate::schema::statistics::Statistics;
use crate::schema::triggers::Trigger;
use anyhow::{bail, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::collections::HashSet;
use std::fmt;

/// How a table's rows travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Binary,
    /// For tables with a column type that cannot travel in binary.
    Text,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Binary => "binary",
            Format::Text => "text",
        })
    }
}

/// One table to copy.
#[derive(Clone, Debug)]
pub(crate) struct TablePlan {
    pub(crate) name: TableName,
    /// Copied columns, matched by name on the destination, in the source's order.
    pub(crate) columns: Vec<Column>,
    /// Generated columns, left out because the destination computes them.
    pub(crate) generated: Vec<String>,
    pub(crate) format: Format,
    /// Why the table travels as text: the columns whose types cannot go in binary.
    pub(crate) text_reason: Option<String>,
    /// The copied columns whose type is another on the destination, and how each travels.
    pub(crate) conversions: Vec<Conversion>,
    /// The columns the rules file masks.
    pub(crate) masks: Vec<Mask>,
    /// How the reader masks them: what the source reads instead, what pgcopy rewrites.
    pub(crate) reads: Reads,
    /// The rows the rules' subsets keep, where they keep fewer than all.
    pub(crate) subset: Option<Subset>,
    pub(crate) estimated_rows: Option<u64>,
    pub(crate) data_bytes: u64,
    /// The root partitioned table, for a partition.
    pub(crate) parent: Option<TableName>,
    /// Destination user triggers that would fire for the copied rows: disabled inside the
    /// table's load transaction. Empty with `--enable-triggers`.
    pub(crate) triggers: Vec<Trigger>,
    /// Destination indexes dropped before the load and built after it, in the table's load
    /// transaction (`--indexes`).
    pub(crate) indexes: Vec<Index>,
    /// Which of its rows the load replaces.
    pub(crate) replace: Replace,
    /// False for a partition only the destination has, of a partitioned table the copy
    /// replaces whole: the load empties it.
    pub(crate) on_source: bool,
    /// The pieces the table is copied in, when it is big enough to be split.
    pub(crate) split: Option<Split>,
    /// The source's planner statistics, written instead of running `ANALYZE` where the
    /// destination can take them.
    pub(crate) statistics: Option<Statistics>,
}

/// Which of a destination table's rows a load replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Replace {
    /// All of them: `TRUNCATE`, then `COPY … FREEZE`.
    All,
    /// Those an extension configuration table's condition (`WHERE …`) picks, the user's
    /// rows: deleted, then copied from the source's rows that the condition picks; the
    /// extension's own rows stay as the extension made them on each side.
    Where(String),
}

impl TablePlan {
    pub(crate) fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// The rules changed its rows (a mask, a subset): its planner statistics must be made
    /// from what was loaded, also under `--no-analyze`, since what the destination had
    /// before (a restore of production, say) could show the unmasked values.
    pub(crate) fn changed_by_rules(&self) -> bool {
        !self.masks.is_empty() || self.subset.is_some()
    }

    /// Locks the table for reading in a transaction that imported the copy's snapshot,
    /// without waiting. The snapshot's session holds this lock already, so only a session
    /// queued for an exclusive lock (a `TRUNCATE` waiting for the copy to end) can make it
    /// wait, and the wait would last until the copy ends: a deadlock the server cannot see.
    /// NOWAIT turns it into an error instead.
    /// A subset's reader locks the other tables its closure reads too, for the same reason.
    pub(crate) fn lock_sql(&self) -> String {
        let mut tables = vec![format!("ONLY {}", self.name.quoted())];
        if let Some(subset) = &self.subset {
            tables.extend(subset.reads.iter().cloned());
        }
        format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT",
            tables.join(", ")
        )
    }

    /// What `lock_sql` failing means. Not granted at once: another session is queued for
    /// an exclusive lock, and waits for the copy to end; that is worth another try later
    /// (it may give up on its own lock timeout), and the message says what is going on.
    pub(crate) fn lock_failed(&self, err: anyhow::Error) -> anyhow::Error {
        if crate::pg::error::sqlstate(&err) != Some(SqlState::LOCK_NOT_AVAILABLE) {
            return err.context("locking the table in the source snapshot");
        }
        anyhow::Error::new(crate::pg::error::TryLater(format!(
            "another session is waiting for an exclusive lock on {}{} (TRUNCATE, ALTER \
             TABLE, VACUUM FULL, …), queued behind the lock pgcopy's snapshot holds until the \
             copy ends; reading the table now would wait behind it for ever (pg_locks shows \
             the session)",
            self.name,
            if self.subset.is_some() {
                " or a table its subset reads"
            } else {
                ""
            }
        )))
    }

    /// The type `column` travels as: the destination's where the two sides differ (the
    /// source casts to it, or it has the same binary form), else its own.
    pub(crate) fn wire_type<'a>(&'a self, column: &'a Column) -> &'a str {
        self.conversions
            .iter()
            .find(|c| c.column == column.name)
            .map_or(column.type_name.as_str(), |c| c.to.as_str())
    }

    /// How many pieces the table is copied in.
    pub(crate) fn piece_count(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.pieces.len())
    }

    /// The source's `COPY … TO STDOUT`, of the whole table or of one of its pieces.
    pub(crate) fn copy_out_sql(&self, piece: Option<usize>) -> String {
        let range = piece.and_then(|p| self.split.as_ref()?.pieces.get(p));
        let casts = self.masks.iter().any(|m| !m.in_client)
            || self
                .conversions
                .iter()
                .any(|c| matches!(c.how, How::Cast(_)));
        let condition = match (range, &self.replace) {
            (Some(range), _) => Some(range.as_str()),
            (None, Replace::Where(condition)) => Some(condition.as_str()),
            (None, Replace::All) if casts || self.subset.is_some() => Some(""),
            (None, Replace::All) => None,
        };
        if let Some(subset) = &self.subset {
            return format!(
                "COPY ({}) TO STDOUT (FORMAT {})",
                subset.select(&self.select_list(), &self.name, condition.unwrap_or("")),
                self.format
            );
        }
        match condition {
            Some(condition) => format!(
                "COPY (SELECT {} FROM ONLY {} {condition}) TO STDOUT (FORMAT {})",
                self.select_list(),
                self.name.quoted(),
                self.format
            ),
            None => format!(
                "COPY {}{} TO STDOUT (FORMAT {})",
                self.name.quoted(),
                self.columns_clause(),
                self.format
            ),
        }
    }

    /// The copied columns as the source reads them: masked ones masked, converted ones
    /// cast where the conversion is the source's.
    fn select_list(&self) -> String {
        let exprs: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                let conversion = self.conversions.iter().find(|c| c.column == column.name);
                let masked = self.reads.source.iter().find(|(c, _)| c == &column.name);
                match masked.map(|(_, expr)| expr.clone()) {
                    Some(masked) => match conversion.map(|c| &c.how) {
                        Some(How::Cast(to)) => format!("({masked})::{to}"),
                        _ => masked,
                    },
                    None => conversion.map_or_else(
                        || crate::pg::sql::quote_ident(&column.name),
                        Conversion::source_expr,
                    ),
                }
            })
            .collect();
        exprs.join(", ")
    }

    /// What empties the destination table of the rows the load replaces. `ONLY`: never
    /// reach inheritance children, which are tables of their own.
    pub(crate) fn clear_sql(&self) -> String {
        match &self.replace {
            Replace::All => format!("TRUNCATE ONLY {}", self.name.quoted()),
            Replace::Where(condition) => {
                format!("DELETE FROM ONLY {} {condition}", self.name.quoted())
            }
        }
    }

    /// The destination's `COPY … FROM STDIN`. After a `TRUNCATE`, `FREEZE` writes the rows
    /// already frozen (no later VACUUM rewrite of the whole table); it is allowed because the
    /// same transaction truncated the table.
    /// A piece goes into a table another transaction emptied: no `FREEZE` for it.
    pub(crate) fn copy_in_sql(&self, piece: bool) -> String {
        let freeze = if self.replace == Replace::All && !piece {
            ", FREEZE"
        } else {
            ""
        };
        format!(
            "COPY {}{} FROM STDIN (FORMAT {}{freeze})",
            self.name.quoted(),
            self.columns_clause(),
            self.format
        )
    }

    /// The column list, naming columns so that their order on either side does not matter.
    /// A table with no copied columns gets none: `COPY t ()` is not valid SQL.
    fn columns_clause(&self) -> String {
        if self.columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", column_list(self.column_names()))
        }
    }
}

/// The tables to copy, largest first so the run does not end with one big table alone.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) tables: Vec<TablePlan>,
}

impl Plan {
    /// The plan as a comparison reads it: masked columns left out, since the destination
    /// holds other values there by design.
    pub(crate) fn without_masked(&self) -> Plan {
        let mut plan = self.clone();
        for table in &mut plan.tables {
            let masks = std::mem::take(&mut table.masks);
            table
                .columns
                .retain(|c| !masks.iter().any(|m| m.column == c.name));
        }
        plan
    }

    /// What a comparison of `table` leaves out because the rules mask it, if anything.
    pub(crate) fn masked_note(&self, table: &TableName) -> Option<String> {
        let table = self.tables.iter().find(|t| &t.name == table)?;
        if table.masks.is_empty() {
            return None;
        }
        let columns: Vec<String> = table
            .masks
            .iter()
            .map(|m| crate::pg::sql::display_ident(&m.column).into_owned())
            .collect();
        Some(format!(
            "the masked columns {} (rules): compared are the row count and the other columns",
            columns.join(", ")
        ))
    }

    pub(crate) fn names(&self) -> Vec<TableName> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }

    pub(crate) fn data_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.data_bytes).sum()
    }
}

/// The tables that hold rows (ordinary tables and leaf partitions) that the filter selects.
/// Include patterns that match nothing are warned about; filters that select nothing are an
/// error, a source with no tables is not (its sequences and large objects still come, as
/// `pg_dump` dumps an empty database).
pub(crate) fn select(all: &[Table], filter: &TableFilter) -> Result<Vec<Table>> {
    let candidates: Vec<(TableName, Option<TableName>)> = all
        .iter()
        .map(|t| (t.name.clone(), t.parent.clone()))
        .collect();
    for glob in filter.unmatched_includes(&candidates) {
        log::warn!("include pattern {:?} matches no table", glob.as_string());
    }
    let selected = wanted(all, filter);
    warn_about_inheritance(all, &selected);
    if selected.is_empty() && filter.given() {
        bail!("no source table matches the filters");
    }
    if selected.is_empty() {
        log::warn!("the source has no tables to copy");
    }
    Ok(selected)
}

/// Says which selected tables have inheritance children that are not selected: `COPY`
/// reads a parent alone, so naming a parent in a filter copies the parent's own rows only.
fn warn_about_inheritance(all: &[Table], selected: &[Table]) {
    let chosen: HashSet<&TableName> = selected.iter().map(|t| &t.name).collect();
    for parent in selected {
        let left_out: Vec<String> = all
            .iter()
            .filter(|t| t.inherits.as_ref() == Some(&parent.name) && !chosen.contains(&t.name))
            .map(|t| t.name.to_string())
            .collect();
        if !left_out.is_empty() {
            log::warn!(
                "{} has inheritance children that the filters leave out, so their rows are \
                 not copied: {} (a parent's rows are its own; name the children to copy them)",
                parent.name,
                left_out.join(", ")
            );
        }
    }
}

/// Adds the leaf partitions that only the destination has, of the partitioned tables whose
/// leaves the plan copies, where the filters would select them: their rows go too, or the
/// partitioned table would hold rows the source does not. Returns their names.
pub(crate) fn add_destination_only_partitions(
    client: &mut Client,
    plan: &mut Plan,
    filter: &TableFilter,
) -> Result<Vec<TableName>> {
    let mut roots: Vec<TableName> = plan
        .tables
        .iter()
        .filter_map(|t| t.parent.clone())
        .collect();
    roots.sort();
    roots.dedup();
    let planned: HashSet<TableName> = plan.names().into_iter().collect();
    let mut added = Vec::new();
    for (root, leaf) in catalog::dest_leaves(client, &roots)? {
        if planned.contains(&leaf) || !filter.selects(&leaf, Some(&root)) {
            continue;
        }
        log::info!("{leaf} is a partition of {root} only the destination has: it is emptied");
        added.push(leaf.clone());
        plan.tables.push(TablePlan {
            name: leaf,
            columns: Vec::new(),
            generated: Vec::new(),
            format: Format::Binary,
            text_reason: None,
            conversions: Vec::new(),
            masks: Vec::new(),
            reads: Reads::default(),
            subset: None,
            estimated_rows: Some(0),
            data_bytes: 0,
            parent: Some(root),
            triggers: Vec::new(),
            indexes: Vec::new(),
            replace: Replace::All,
            on_source: false,
            split: None,
            statistics: None,
        });
    }
    Ok(added)
}

/// `select` without its warnings and its error, for a first look.
pub(crate) fn wanted(all: &[Table], filter: &TableFilter) -> Vec<Table> {
    all.iter()
        .filter(|t| !t.partitioned && filter.selects(&t.name, t.parent.as_ref()))
        .cloned()
        .collect()
}

/// Reads the selected tables' columns and types from the source and decides each table's
/// columns and format.
pub(crate) fn build(client: &mut Client, selected: &[Table]) -> Result<Plan> {
    let oids: Vec<u32> = selected.iter().map(|t| t.oid).collect();
    let mut columns = catalog::columns(client, &oids)?;
    let mut type_oids: Vec<u32> = columns.values().flatten().map(|c| c.type_oid).collect();
    type_oids.sort_unstable();
    type_oids.dedup();
    let unsafe_types = catalog::binary_unsafe_types(client, &type_oids)?;

    let mut tables: Vec<TablePlan> = selected
        .iter()
        .map(|table| {
            let cols = columns.remove(&table.oid).unwrap_or_default();
            let (generated, copied): (Vec<Column>, Vec<Column>) =
                cols.into_iter().partition(|c| c.generated);
            let text_columns: Vec<String> = copied
                .iter()
                .filter(|c| unsafe_types.contains(&c.type_oid))
                .map(|c| format!("{} ({})", c.name, c.type_name))
                .collect();
            TablePlan {
                name: table.name.clone(),
                columns: copied,
                generated: generated.into_iter().map(|c| c.name).collect(),
                format: if text_columns.is_empty() {
                    Format::Binary
                } else {
                    Format::Text
                },
                text_reason: (!text_columns.is_empty())
                    .then(|| format!("no portable binary form for {}", text_columns.join(", "))),
                conversions: Vec::new(),
                masks: Vec::new(),
                reads: Reads::default(),
                subset: None,
                estimated_rows: table.estimated_rows,
                data_bytes: table.data_bytes,
                parent: table.parent.clone(),
                triggers: Vec::new(),
                indexes: Vec::new(),
                replace: match &table.extension_rows {
                    Some(condition) => Replace::Where(condition.clone()),
                    None => Replace::All,
                },
                on_source: true,
                split: None,
                statistics: None,
            }
        })
        .collect();
    tables.sort_by(|a, b| {
        b.data_bytes
            .cmp(&a.data_bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Plan { tables })
}
