//! Big tables in pieces: a table above a size (heap and TOAST counted, as `COPY` reads them)
//! is copied as several pieces at once, each a `COPY (SELECT … WHERE <range>)` of the copy's
//! one snapshot into its own destination transaction, so one table no longer runs at the
//! speed of one destination backend.
//!
//! The ranges follow the primary key where the table has one (any orderable key, compared
//! as a row, so composite and non-integer keys split too), with bounds from the key's
//! planner histogram where `ANALYZE`'s statistics are fresh, else from a sampled scan, so
//! pieces hold about the same number of rows; else ranges of heap pages read by TID
//! range scans (PostgreSQL 14 and later; on 13 such a table stays whole).
//!
//! Pieces commit one by one, so a split table is no longer "old rows or new, never half":
//! tables are split on their own only when their destination table is empty (a fresh
//! migration, where a failure loses nothing); a table with rows only when the user asks.

use crate::pg::sql::{quote_ident, quote_literal, TableName};
use crate::plan::{Plan, Replace};
use anyhow::{Context, Result};
use postgres::Client;

/// Above this, a table whose destination table is empty is split without being asked.
pub(crate) const AUTO_SPLIT_BYTES: u64 = 1 << 30;

/// At most this many pieces per table.
const MAX_PIECES: u64 = 256;

/// Sampled key values per piece. `TABLESAMPLE SYSTEM` takes whole pages, whose rows are
/// often neighbours in the key: measured on 1.5 million rows in 8 pieces, 200 per piece
/// gave pieces 2.2–7 times apart in size, 1000 1.4–2, 3000 1.2–1.4.
const SAMPLE_PER_PIECE: f64 = 1000.0;

/// At most this many sampled key values in all, whatever the number of pieces.
const SAMPLE_MAX: f64 = 300_000.0;

/// `--split-tables-larger-than`, `--no-split`, or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitMode {
    /// Never.
    Off,
    /// Tables above `AUTO_SPLIT_BYTES` whose destination table is empty, in pieces of about
    /// that size.
    Auto,
    /// Every table above this many bytes, also one with rows on the destination, in pieces
    /// of about this size.
    Above(u64),
}

impl SplitMode {
    fn piece_bytes(self) -> Option<u64> {
        match self {
            SplitMode::Off => None,
            SplitMode::Auto => Some(AUTO_SPLIT_BYTES),
            SplitMode::Above(bytes) => Some(bytes.max(1)),
        }
    }
}

/// How a table is cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// What the ranges follow.
    pub(crate) by: By,
    /// One `WHERE …` condition per piece, in order; together they cover every row once.
    pub(crate) pieces: Vec<String>,
    /// The pieces an interrupted run finished (`--resume`), which this one skips.
    pub(crate) done: Vec<bool>,
    /// The destination table's file when those pieces were committed (0 for none).
    pub(crate) filenode: u32,
    /// Each piece's range of key values, where they are known (a split by key made by
    /// this run, or resumed from a state file that has them).
    pub(crate) ranges: Vec<KeyRange>,
}

/// A piece's range of key values, as text, from `low` on (`None`: from the start) and
/// below `high` (`None`: to the end), with the key columns' types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub(crate) types: Vec<String>,
    pub(crate) low: Option<Vec<String>>,
    pub(crate) high: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum By {
    /// The primary key's columns. Ranges of key values are the same in any snapshot, so a
    /// resumed copy can take up the pieces an earlier run did not finish.
    Key(Vec<String>),
    /// Heap pages. Rows move between pages when they are updated, so pieces of pages hold
    /// only within one snapshot.
    Pages,
}

impl Split {
    /// Whether the pieces of another run are the same rows in this one's snapshot.
    pub(crate) fn resumable(&self) -> bool {
        matches!(self.by, By::Key(_))
    }

    /// The key columns the ranges follow; none for pages.
    pub(crate) fn key_columns(&self) -> &[String] {
        match &self.by {
            By::Key(columns) => columns,
            By::Pages => &[],
        }
    }

    /// What the ranges follow, in words.
    pub(crate) fn describe(&self) -> String {
        match &self.by {
            By::Key(columns) => format!("by ranges of its primary key ({})", columns.join(", ")),
            By::Pages => "by ranges of its pages (it has no primary key)".into(),
        }
    }

    /// Whether an earlier run finished some of the pieces: the table must not be emptied
    /// again.
    pub(crate) fn started(&self) -> bool {
        self.done.iter().any(|&done| done)
    }
}

/// Splits the tables of `plan` that `mode` says to, reading the source in the copy's
/// snapshot and the destination to see which tables are empty. Returns why tables big
/// enough were left whole, for the log and the dry run.
pub(crate) fn cut(
    source: &mut Client,
    dest: &mut Client,
    plan: &mut Plan,
    mode: SplitMode,
) -> Result<Vec<String>> {
    let Some(piece_bytes) = mode.piece_bytes() else {
        return Ok(Vec::new());
    };
    let version = crate::pg::server::version(source)?;
    let mut notes = Vec::new();
    for table in &mut plan.tables {
        if table.data_bytes <= piece_bytes || !table.on_source {
            continue;
        }
        let count = table.data_bytes.div_ceil(piece_bytes).clamp(2, MAX_PIECES) as usize;
        let whole = |why: &str| format!("{} is copied whole: {why}", table.name);
        if table.replace != Replace::All {
            notes.push(whole("only some of its rows are replaced"));
            continue;
        }
        if !table.triggers.is_empty() {
            notes.push(whole(
                "its triggers are switched off inside one load transaction (--fk-mode replica \
                 switches them off for pieces too)",
            ));
            continue;
        }
        if mode == SplitMode::Auto && !is_empty(dest, &table.name)? {
            notes.push(whole(
                "its destination table has rows, and pieces commit one by one \
                 (--split-tables-larger-than splits it anyway)",
            ));
            continue;
        }
        let split = match primary_key(source, &table.name)? {
            Some(key) => by_key(source, &table.name, key, count)?,
            None if version >= 140000 => Some(by_pages(source, &table.name, count)?),
            None => {
                notes.push(whole(
                    "it has no primary key, and reading pages by TID range needs PostgreSQL \
                     14 or later on the source",
                ));
                None
            }
        };
        table.split = split.filter(|s| s.pieces.len() > 1);
    }
    Ok(notes)
}

pub(crate) fn is_empty(dest: &mut Client, table: &TableName) -> Result<bool> {
    let sql = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM ONLY {} LIMIT 1)",
        table.quoted()
    );
    Ok(dest
        .query_one(&sql, &[])
        .with_context(|| format!("checking whether {table} is empty on the destination"))?
        .get(0))
}

/// The primary key's columns, in key order, with their types.
pub(crate) fn primary_key(
    source: &mut Client,
    table: &TableName,
) -> Result<Option<Vec<(String, String)>>> {
    let rows = source
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the primary key of {table}"))?;
    let key: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok((!key.is_empty()).then_some(key))
}

/// Ranges of the key, bounded by values of a sampled scan taken at even steps. `None` when
/// the sample is too small to cut the table.
fn by_key(
    source: &mut Client,
    table: &TableName,
    key: Vec<(String, String)>,
    count: usize,
) -> Result<Option<Split>> {
    Ok(key_bounds(source, table, &key, count)?.map(|bounds| key_split(key, &bounds)))
}

/// Values of `key` (its columns' text forms) that cut `table` into about `count` ranges of
/// as many rows: from the key's histogram where it is fresh, else from a sampled scan taken
/// at even steps. `None` when the sample is too small to cut the table.
pub(crate) fn key_bounds(
    source: &mut Client,
    table: &TableName,
    key: &[(String, String)],
    count: usize,
) -> Result<Option<Vec<Vec<String>>>> {
    if let [(column, _)] = key {
        if let Some(bounds) = histogram_bounds(source, table, column, count)? {
            return Ok(Some(bounds));
        }
    }
    // A table never vacuumed or analyzed has no row estimate: guess from its pages rather
    // than sort every key.
    let reltuples: f64 = source
        .query_one(
            "SELECT CASE WHEN reltuples > 0 THEN reltuples::float8
                         ELSE pg_relation_size(oid) / current_setting('block_size')::float8 * 50
                    END
             FROM pg_catalog.pg_class WHERE oid = $1::text::regclass",
            &[&table.quoted()],
        )?
        .get(0);
    let wanted = (SAMPLE_PER_PIECE * count as f64).min(SAMPLE_MAX);
    let percent = if reltuples > 0.0 {
        (100.0 * wanted / reltuples).clamp(0.001, 100.0)
    } else {
        100.0
    };
    let columns: Vec<String> = key.iter().map(|(name, _)| quote_ident(name)).collect();
    let as_text: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let sql = format!(
        "SELECT ARRAY[{}] FROM ONLY {} TABLESAMPLE SYSTEM ({percent}) ORDER BY {}",
        as_text.join(", "),
        table.quoted(),
        columns.join(", ")
    );
    let sample: Vec<Vec<Option<String>>> = source
        .query(&sql, &[])
        .with_context(|| format!("sampling the primary key of {table}"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for i in 1..count {
        let Some(values) = sample.get(i * sample.len() / count) else {
            break;
        };
        // Key columns are NOT NULL.
        let values: Option<Vec<String>> = values.iter().cloned().collect();
        if let Some(values) = values {
            if bounds.last() != Some(&values) {
                bounds.push(values);
            }
        }
    }
    if bounds.is_empty() {
        return Ok(None);
    }
    Ok(Some(bounds))
}

/// Bounds for `count` ranges of a one-column key from the planner's histogram of it, where
/// `ANALYZE` saw the table much as it is now (a tenth of its rows changed since at most)
/// and the histogram has a bucket per piece at least: `ANALYZE` samples rows from all over
/// the table, so the pieces come out even (1.1 times apart at most on the benchmark's
/// table, against 1.4–2 for a sample of pages). `None` where it cannot serve.
fn histogram_bounds(
    source: &mut Client,
    table: &TableName,
    column: &str,
    count: usize,
) -> Result<Option<Vec<Vec<String>>>> {
    let row = source
        .query_opt(
            "SELECT s.histogram_bounds::text::text[]
             FROM pg_catalog.pg_stats AS s
             JOIN pg_catalog.pg_stat_all_tables AS t
               ON t.schemaname = s.schemaname AND t.relname = s.tablename
             JOIN pg_catalog.pg_class AS c ON c.oid = t.relid
             WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3
               AND NOT s.inherited AND s.histogram_bounds IS NOT NULL
               AND t.n_mod_since_analyze <= c.reltuples / 10",
            &[&table.schema, &table.name, &column],
        )
        .with_context(|| format!("reading the statistics of the primary key of {table}"))?;
    let Some(histogram) = row.map(|row| row.get::<_, Vec<String>>(0)) else {
        return Ok(None);
    };
    if histogram.len() <= count {
        return Ok(None);
    }
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for i in 1..count {
        let value = vec![histogram[i * (histogram.len() - 1) / count].clone()];
        if bounds.last() != Some(&value) {
            bounds.push(value);
        }
    }
    Ok(Some(bounds))
}

/// The split by ranges of `key` between `bounds` (text values of its columns).
pub(crate) fn key_split(key: Vec<(String, String)>, bounds: &[Vec<String>]) -> Split {
    let pieces = key_conditions(&key, bounds);
    let types: Vec<String> = key.iter().map(|(_, type_name)| type_name.clone()).collect();
    let lows = std::iter::once(None).chain(bounds.iter().cloned().map(Some));
    let highs = bounds
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::once(None));
    let ranges = lows
        .zip(highs)
        .map(|(low, high)| KeyRange {
            types: types.clone(),
            low,
            high,
        })
        .collect();
    Split {
        by: By::Key(key.into_iter().map(|(name, _)| name).collect()),
        done: vec![false; pieces.len()],
        filenode: 0,
        pieces,
        ranges,
    }
}

/// The `WHERE` conditions of the ranges of `key` (its columns and their types) between
/// `bounds`: below the first, between each two (the lower bound in, the upper out), from
/// the last on.
pub(crate) fn key_conditions(key: &[(String, String)], bounds: &[Vec<String>]) -> Vec<String> {
    let columns: Vec<String> = key.iter().map(|(name, _)| quote_ident(name)).collect();
    // One column compares as itself, so the key's index serves the range; several as a
    // row, which compares column by column as the key's order does.
    let row_of = |items: Vec<String>| -> String {
        match items.as_slice() {
            [one] => one.clone(),
            _ => format!("ROW({})", items.join(", ")),
        }
    };
    let row = row_of(columns.clone());
    let literal = |values: &[String]| -> String {
        row_of(
            values
                .iter()
                .zip(key)
                .map(|(value, (_, type_name))| format!("{}::{type_name}", quote_literal(value)))
                .collect(),
        )
    };
    ranges(bounds, |value, op| format!("{row} {op} {}", literal(value)))
}

impl KeyRange {
    /// As the state file keeps it.
    pub(crate) fn to_text(&self) -> String {
        serde_json::json!({ "types": self.types, "low": self.low, "high": self.high }).to_string()
    }

    /// From the state file's text.
    pub(crate) fn from_text(text: &str) -> Result<KeyRange> {
        let value: serde_json::Value =
            serde_json::from_str(text).context("reading a piece's range in the state file")?;
        let list = |v: &serde_json::Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|item| item.as_str().map(String::from))
                .collect()
        };
        Ok(KeyRange {
            types: list(&value["types"]).context("a piece's range without its types")?,
            low: list(&value["low"]),
            high: list(&value["high"]),
        })
    }
}

/// Ranges of heap pages of about the same size. The last range is open: it takes whatever
/// lies beyond the pages counted here.
fn by_pages(source: &mut Client, table: &TableName, count: usize) -> Result<Split> {
    let pages: i64 = source
        .query_one(
            "SELECT pg_relation_size($1::text::regclass)
                    / current_setting('block_size')::int8",
            &[&table.quoted()],
        )?
        .get(0);
    let count = (count as i64).min(pages.max(1));
    let bounds: Vec<i64> = (1..count).map(|i| i * pages / count).collect();
    let pieces = ranges(&bounds, |page, op| format!("ctid {op} '({page},0)'::tid"));
    Ok(Split {
        by: By::Pages,
        done: vec![false; pieces.len()],
        filenode: 0,
        pieces,
        ranges: Vec::new(),
    })
}

/// `WHERE` conditions for the ranges between `bounds`: below the first, between each two,
/// from the last on.
fn ranges<B>(bounds: &[B], compare: impl Fn(&B, &str) -> String) -> Vec<String> {
    let mut pieces = Vec::with_capacity(bounds.len() + 1);
    for (i, bound) in bounds.iter().enumerate() {
        let upper = compare(bound, "<");
        pieces.push(match i.checked_sub(1).map(|p| &bounds[p]) {
            None => format!("WHERE {upper}"),
            Some(lower) => format!("WHERE {} AND {upper}", compare(lower, ">=")),
        });
    }
    if let Some(last) = bounds.last() {
        pieces.push(format!("WHERE {}", compare(last, ">=")));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_value_once() {
        let pieces = ranges(&[10, 20], |b, op| format!("id {op} {b}"));
        assert_eq!(
            pieces,
            [
                "WHERE id < 10",
                "WHERE id >= 10 AND id < 20",
                "WHERE id >= 20"
            ]
        );
    }

    #[test]
    fn ranges_survive_the_state_file() {
        let split = key_split(
            vec![("id".into(), "bigint".into())],
            &[vec!["10".into()], vec!["20".into()]],
        );
        assert_eq!(split.ranges.len(), 3);
        assert_eq!(split.ranges[0].low, None);
        assert_eq!(split.ranges[1].high, Some(vec!["20".to_string()]));
        for range in &split.ranges {
            assert_eq!(&KeyRange::from_text(&range.to_text()).unwrap(), range);
        }
    }

    #[test]
    fn auto_splits_in_pieces_of_a_gibibyte() {
        assert_eq!(SplitMode::Auto.piece_bytes(), Some(1 << 30));
        assert_eq!(SplitMode::Off.piece_bytes(), None);
        assert_eq!(SplitMode::Above(0).piece_bytes(), Some(1));
    }
}
