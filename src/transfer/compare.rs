//! Comparing a copied table on both sides: for each table, the exact row count and an
//! order-independent checksum of its content, computed on each server (no row travels to
//! pgcopy), several tables at once; the source side in the copy's snapshot.
//!
//! The checksum: every row is rendered as text with its copied columns in name order (so the
//! physical column order does not matter), under pinned output settings (`TEXT_SETTINGS`),
//! converted to UTF-8 (so the servers' encodings do not matter) and hashed with md5; the
//! 128-bit hashes are summed as two 64-bit halves in `numeric`, which cannot overflow and
//! does not depend on the order rows are read in. The large objects are compared one by
//! one instead (`large_objects::compare`), as each side's role may see them.

use crate::pg::error::describe;
use crate::pg::pool::Pool;
use crate::pg::server::{begin_read_only, SnapshotId};
use crate::pg::sql::{quote_ident, TableName, TEXT_SETTINGS};
use crate::plan::{Plan, Replace, TablePlan};
use crate::schema::large_objects;
use anyhow::{Context, Result};
use rayon::prelude::*;

/// What one server says about one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) rows: i64,
    pub(crate) checksum: String,
}

/// One table compared.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) table: TableName,
    pub(crate) source: Result<Digest, String>,
    pub(crate) dest: Result<Digest, String>,
    /// What differs, where the comparison goes object by object (the large objects).
    pub(crate) differences: Vec<String>,
    /// What could not be compared, and why: not a difference, but said.
    pub(crate) unchecked: Vec<String>,
}

impl Check {
    pub(crate) fn matches(&self) -> bool {
        matches!((&self.source, &self.dest), (Ok(s), Ok(d)) if s == d)
            && self.differences.is_empty()
    }

    pub(crate) fn verdict(&self) -> String {
        match (&self.source, &self.dest) {
            (Err(err), _) => format!("source failed: {err}"),
            (_, Err(err)) => format!("destination failed: {err}"),
            (Ok(s), Ok(d)) if s.rows != d.rows => "row counts differ".into(),
            (Ok(s), Ok(d)) if s != d => "contents differ".into(),
            _ if !self.differences.is_empty() => {
                let shown: Vec<&str> = self
                    .differences
                    .iter()
                    .take(5)
                    .map(String::as_str)
                    .collect();
                let more = self.differences.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("contents differ: {}{more}", shown.join(", "))
            }
            _ if !self.unchecked.is_empty() => {
                format!("match; not checked: {}", self.unchecked.join("; "))
            }
            _ => "match".into(),
        }
    }
}

/// The query that digests a table on either side; on the source, a column converted
/// exactly is rendered as the destination's type renders it.
pub(crate) fn digest_sql(table: &TablePlan, on_source: bool) -> String {
    let mut columns: Vec<&str> = table.column_names().collect();
    columns.sort_unstable();
    let row = if columns.is_empty() {
        "''".to_string()
    } else {
        let exprs: Vec<String> = columns
            .iter()
            .map(
                |&c| match table.conversions.iter().find(|v| v.column == c) {
                    Some(conversion) if on_source => conversion.digest_expr(),
                    _ => quote_ident(c),
                },
            )
            .collect();
        format!("ROW({})::text", exprs.join(", "))
    };
    // Hashed as UTF-8, whatever the server's encoding: the same text in a LATIN1 and a UTF8
    // database is different bytes.
    let condition = match &table.replace {
        Replace::All => "",
        Replace::Where(condition) => condition,
    };
    let hashed = format!("md5(convert_to({row}, 'UTF8')) AS h");
    // On the source, the rows a subset keeps.
    let rows = match &table.subset {
        Some(subset) if on_source => subset.select(&hashed, &table.name, condition),
        _ => format!(
            "SELECT {hashed} FROM ONLY {} AS {} {condition}",
            table.name.quoted(),
            crate::plan::reading::ROW
        ),
    };
    format!(
        "SELECT count(*)::int8,
                coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::int8::numeric), 0)::text
                || '/' ||
                coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::int8::numeric), 0)::text
         FROM ({rows}) AS digests"
    )
}

/// Digests every table of the plan on both sides, `parallel` queries per side at a time.
/// The source side reads the given snapshot.
/// The large objects too when `large_objects`, reported as `pg_catalog.pg_largeobject`.
pub(crate) fn compare(
    plan: &Plan,
    large_objects: bool,
    snapshot: &SnapshotId,
    source: &Pool,
    dest: &Pool,
    parallel: usize,
) -> Result<Vec<Check>> {
    // Blocking queries get threads of their own, never rayon's global pool.
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(parallel * 2)
        .thread_name(|i| format!("pgcopy-verify-{i}"))
        .build()
        .context("starting the verify threads")?;
    let jobs: Vec<(usize, bool)> = (0..plan.tables.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect();
    let digests: Vec<Result<Digest, String>> = threads.install(|| {
        jobs.par_iter()
            .with_max_len(1)
            .map(|&(i, on_source)| {
                let table = &plan.tables[i];
                let result = match (on_source, table.on_source) {
                    (true, true) => digest(source, table, Some(snapshot)),
                    // A partition only the destination has: the source has no rows there.
                    (true, false) => Ok(Digest {
                        rows: 0,
                        checksum: "0/0".into(),
                    }),
                    (false, _) => digest(dest, table, None),
                };
                result.map_err(|err| describe(&err))
            })
            .collect()
    });
    let mut digests = digests.into_iter();
    let mut checks: Vec<Check> = plan
        .tables
        .iter()
        .map(|table| Check {
            table: table.name.clone(),
            source: digests.next().unwrap_or_else(|| Err("not run".into())),
            dest: digests.next().unwrap_or_else(|| Err("not run".into())),
            differences: Vec::new(),
            unchecked: Vec::new(),
        })
        .collect();
    if large_objects {
        let check = large_object_check(source, snapshot, dest);
        // Neither side has any: nothing to report.
        let none = |d: &Result<Digest, String>| matches!(d, Ok(d) if d.rows == 0);
        if !(none(&check.source) && none(&check.dest)) {
            checks.push(check);
        }
    }
    Ok(checks)
}

/// The large objects compared one by one (`large_objects::compare`), as a check of
/// `pg_catalog.pg_largeobject`: the source in the snapshot, each side as its role sees it.
fn large_object_check(source: &Pool, snapshot: &SnapshotId, dest: &Pool) -> Check {
    let table = TableName::new("pg_catalog", "pg_largeobject");
    let read = |pool: &Pool, snapshot: Option<&SnapshotId>| -> Result<_> {
        let mut client = pool.get().context("connecting")?;
        let mut tx = begin_read_only(&mut client, snapshot)?;
        let seen = large_objects::seen(&mut tx)?;
        // The roles a copy as this role gives large objects to: the others' objects kept
        // the copying role as owner, on purpose.
        let roles = tx
            .query(
                "SELECT r.rolname FROM pg_catalog.pg_roles r
                 WHERE pg_has_role(r.oid, 'MEMBER')
                    OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
                &[],
            )?
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<std::collections::HashSet<String>>();
        Ok((seen, roles))
    };
    let sides = read(source, Some(snapshot)).and_then(|s| Ok((s, read(dest, None)?)));
    let ((source, _), (dest, dest_roles)) = match sides {
        Ok(sides) => sides,
        Err(err) => {
            let err = describe(&err.context("comparing the large objects"));
            return Check {
                table,
                source: Err(err.clone()),
                dest: Err(err),
                differences: Vec::new(),
                unchecked: Vec::new(),
            };
        }
    };
    let found = large_objects::compare(&source, &dest, &dest_roles);
    let digest = |rows: usize, checksum: String| Digest {
        rows: rows as i64,
        checksum,
    };
    Check {
        table,
        source: Ok(digest(found.source, String::new())),
        dest: Ok(digest(found.dest, String::new())),
        differences: found.differences,
        unchecked: found.unchecked,
    }
}

fn digest(pool: &Pool, table: &TablePlan, snapshot: Option<&SnapshotId>) -> Result<Digest> {
    let sql = digest_sql(table, snapshot.is_some());
    query_digest(pool, snapshot, Some(table), &sql)
        .with_context(|| format!("digesting {}", table.name))
}

/// Runs a digest query in a transaction of its own, on the source in the snapshot (and
/// with `table` locked, as readers lock it).
fn query_digest(
    pool: &Pool,
    snapshot: Option<&SnapshotId>,
    table: Option<&TablePlan>,
    sql: &str,
) -> Result<Digest> {
    let mut client = pool.get().context("connecting")?;
    let mut tx = begin_read_only(&mut client, snapshot)?;
    if let (Some(_), Some(table)) = (snapshot, table) {
        tx.batch_execute(&table.lock_sql())
            .map_err(|err| table.lock_failed(err.into()))?;
    }
    tx.batch_execute(TEXT_SETTINGS)?;
    if table.is_some_and(|t| t.subset.is_some()) {
        tx.batch_execute(crate::plan::reading::SETTINGS)?;
    }
    log::debug!("verify: {sql}");
    let row = tx.query_one(sql, &[])?;
    Ok(Digest {
        rows: row.get(0),
        checksum: row.get(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Format;
    use crate::schema::catalog::Column;

    #[test]
    fn digests_columns_in_name_order() {
        let column = |name: &str| Column {
            name: name.into(),
            type_name: "int".into(),
            type_oid: 23,
            type_mod: -1,
            generated: false,
            required: false,
        };
        let table = TablePlan {
            name: TableName::new("s", "T"),
            columns: vec![column("b"), column("A"), column("a")],
            generated: Vec::new(),
            format: Format::Binary,
            text_reason: None,
            conversions: Vec::new(),
            masks: Vec::new(),
            reads: Default::default(),
            subset: None,
            estimated_rows: None,
            data_bytes: 0,
            parent: None,
            triggers: Vec::new(),
            indexes: Vec::new(),
            replace: Replace::All,
            on_source: true,
            split: None,
            statistics: None,
        };
        let sql = digest_sql(&table, false);
        assert!(
            sql.contains("md5(convert_to(ROW(\"A\", \"a\", \"b\")::text, 'UTF8'))"),
            "{sql}"
        );
        assert!(sql.contains("FROM ONLY \"s\".\"T\""), "{sql}");
    }
}
