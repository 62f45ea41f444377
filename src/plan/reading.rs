//! What the rules change in what a table's reader reads, in plain terms the plan carries
//! and the transfer acts on: the rows a subset keeps (SQL the source runs), the columns the
//! source masks (the expressions it reads instead) and the fields pgcopy rewrites as the
//! rows pass (through `FieldRewrite`, whose code the rules own). Nothing here knows a rule.

use crate::pg::sql::TableName;
use anyhow::Result;
use std::fmt;
use std::sync::Arc;

/// The alias of the copied table in every query a subset is part of.
pub(crate) const ROW: &str = "t";

/// Set in each transaction that reads a subset. No JIT: the closure's queries are
/// estimated far above what they cost (the planner cannot see how few rows a recursive
/// step finds), which would have each reader compile them first, for longer than they run.
/// More memory for hashing: a row-by-row test against the pulled rows is a hash table the
/// server builds once only where it expects the table to fit, and scans the rows for each
/// test otherwise.
pub(crate) const SETTINGS: &str = "SET LOCAL jit = off; SET LOCAL hash_mem_multiplier = 8";

/// Which rows of a planned table the copy keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subset {
    /// `WITH RECURSIVE …`, put before the table's `SELECT`.
    pub(crate) with: String,
    /// Joins after the table's `FROM` (the kept keys of the tables it references).
    pub(crate) joins: String,
    /// The condition on the table's rows (as `t`).
    pub(crate) condition: String,
    /// In a few words, for the dry run and the report.
    pub(crate) describe: String,
    /// The rows it keeps, where the dry run counted them.
    pub(crate) counted: Option<u64>,
    /// What its queries read besides the table: `LOCK TABLE` names (`ONLY` for a table,
    /// none for a partitioned one, whose partitions are read too).
    pub(crate) reads: Vec<String>,
}

impl Subset {
    /// `SELECT {list} FROM ONLY {table} AS t WHERE …`, the subset's condition and
    /// `condition` (`WHERE …` or empty) both, with the closure before it.
    pub(crate) fn select(&self, list: &str, table: &TableName, condition: &str) -> String {
        let more = condition
            .trim()
            .strip_prefix("WHERE ")
            .map_or(String::new(), |c| format!(" AND ({c})"));
        format!(
            "{} SELECT {list} FROM ONLY {} AS {ROW}{} WHERE ({}){more}",
            self.with,
            table.quoted(),
            self.joins,
            self.condition
        )
    }
}

/// A column, or a value inside a JSON column, that the rules mask: what the dry run, the
/// report and `verify` say of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mask {
    pub(crate) column: String,
    /// Inside a `json` or `jsonb` column: the keys (or array indexes, `*` any) down to the
    /// masked value. Empty: the whole column.
    pub(crate) path: Vec<String>,
    /// The rule, in a few words (`email (keyed, by pgcopy)`).
    pub(crate) describe: String,
    /// Whether pgcopy masks it as the rows pass, not the source.
    pub(crate) in_client: bool,
    /// For a keyed rule, a fingerprint of the key (never the key): a copy under another
    /// key is another copy.
    pub(crate) key: Option<String>,
}

impl Mask {
    /// What it masks, `column` or `column.key.key`, as messages and the dry run show it.
    pub(crate) fn target(&self) -> String {
        let mut target = crate::pg::sql::display_ident(&self.column).into_owned();
        for step in &self.path {
            target.push('.');
            target.push_str(step);
        }
        target
    }
}

/// How a table's reader reads its masked columns.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reads {
    /// By column: the expression the source reads instead of it, in the column's type.
    pub(crate) source: Vec<(String, String)>,
    /// By column: what rewrites its field of each binary row as the rows pass.
    pub(crate) rewrite: Vec<(String, Arc<dyn FieldRewrite>)>,
}

/// What rewrites one field of a table's binary `COPY` rows: given the type the field travels
/// as, the rewrite of each value, or why there can be none.
pub(crate) trait FieldRewrite: fmt::Debug + Send + Sync {
    fn bind(&self, wire_type: &str) -> std::result::Result<Box<dyn ValueRewrite>, Vec<Unfit>>;
}

/// The rewrite of one field's values.
pub(crate) trait ValueRewrite: Send {
    /// Appends to `out` what replaces `value` (the binary form, without its length).
    fn rewrite(&self, value: &[u8], out: &mut Vec<u8>) -> Result<()>;
}

/// Why a field cannot be rewritten as the type it travels as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unfit {
    /// The rule, by name (`email`).
    pub(crate) rule: &'static str,
    /// What it masks (`Mask::target`).
    pub(crate) target: String,
    pub(crate) why: String,
}
