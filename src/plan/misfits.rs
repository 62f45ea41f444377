//! For a table that failed on a value of a column the user let narrow (`--allow-narrowing`):
//! which source row it was. The server's error names only the line of the COPY stream, so
//! the destination parses the source's key and narrowed values, row by row, into its types.

use crate::pg::server::{begin_read_only, SnapshotId};
use crate::pg::sql::{quote_ident, TableName, TEXT_SETTINGS};
use crate::plan::conversions::Conversion;
use crate::plan::{Replace, TablePlan};
use anyhow::{Context, Result};
use postgres::{Client, GenericClient};
use std::io::{Read, Write};

/// For a table that failed while its narrowed columns were copied: the first source row
/// whose values the destination's types refuse, as `the source row (id)=(7) does not fit
/// the destination's types: <the server's reason>`.
/// Reads the source's rows in the copy's snapshot (key and narrowed values, as text), and
/// has the destination parse each into a temporary row of its column types, the way `COPY`
/// parses them; changes nothing.
pub(crate) fn find_misfit(
    source: &mut Client,
    snapshot: &SnapshotId,
    dest: &mut Client,
    table: &TablePlan,
) -> Result<Option<String>> {
    let narrowed: Vec<&Conversion> = table.conversions.iter().filter(|c| !c.exact).collect();
    if narrowed.is_empty() {
        return Ok(None);
    }
    let mut source = begin_read_only(source, Some(snapshot))?;
    source.batch_execute(TEXT_SETTINGS)?;
    let key = key_columns(&mut source, &table.name)?;
    let key_sql = if key.is_empty() {
        "ctid::text".to_string()
    } else {
        let parts: Vec<String> = key
            .iter()
            .map(|k| format!("coalesce({}::text, 'null')", quote_ident(k)))
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    };
    let key_label = if key.is_empty() {
        "ctid".to_string()
    } else {
        key.join(", ")
    };
    let values: Vec<String> = narrowed.iter().map(|c| quote_ident(&c.column)).collect();
    let condition = match &table.replace {
        Replace::All => "",
        Replace::Where(condition) => condition,
    };
    let read = format!(
        "COPY (SELECT {key_sql}, ROW({}, NULL)::text FROM ONLY {} {condition}) TO STDOUT",
        values.join(", "),
        table.name.quoted()
    );
    let columns: Vec<String> = narrowed
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i} {}", c.to))
        .collect();
    let mut tx = dest.transaction()?;
    // A spare column after the narrowed ones: ROW() of one value would not be a row.
    tx.batch_execute(&format!(
        "CREATE TEMPORARY TABLE pgcopy_fit ({}, spare int) ON COMMIT DROP;
         CREATE TEMPORARY TABLE pgcopy_fit_rows (k text, r text) ON COMMIT DROP;
         CREATE TEMPORARY TABLE pgcopy_misfit (k text, why text) ON COMMIT DROP",
        columns.join(", ")
    ))
    .context("making temporary tables on the destination (TEMP on the database)")?;
    let mut reader = source
        .copy_out(read.as_str())
        .context("reading the narrowed columns")?;
    let mut writer = tx.copy_in("COPY pg_temp.pgcopy_fit_rows FROM STDIN")?;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n])?;
    }
    drop(reader);
    writer.finish()?;
    // One subtransaction for the whole table: the variable keeps the key of the row that
    // failed (PL/pgSQL keeps local variables as they were at the error).
    tx.batch_execute(
        "DO $$
         DECLARE r record; k text;
         BEGIN
             FOR r IN SELECT * FROM pg_temp.pgcopy_fit_rows LOOP
                 k := r.k;
                 PERFORM r.r::pg_temp.pgcopy_fit;
             END LOOP;
         EXCEPTION WHEN OTHERS THEN
             INSERT INTO pg_temp.pgcopy_misfit VALUES (k, SQLERRM);
         END $$",
    )
    .context("checking the narrowed values on the destination")?;
    let found = tx.query_opt("SELECT k, why FROM pg_temp.pgcopy_misfit", &[])?;
    tx.rollback()?;
    Ok(found.map(|row| {
        let k: Option<String> = row.get(0);
        let why: String = row.get(1);
        format!(
            "the source row ({key_label})=({}) does not fit the destination's types: {why}",
            k.unwrap_or_default()
        )
    }))
}

/// The source table's primary key columns, or those of its replica identity index.
fn key_columns(source: &mut impl GenericClient, table: &TableName) -> Result<Vec<String>> {
    let rows = source
        .query(
            "SELECT a.attname
             FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass($1)
               AND i.indexrelid = (SELECT x.indexrelid FROM pg_index x
                                   WHERE x.indrelid = i.indrelid
                                     AND (x.indisprimary OR x.indisreplident)
                                   ORDER BY x.indisprimary DESC LIMIT 1)
             ORDER BY k.n",
            &[&table.quoted()],
        )
        .context("reading the source table's key")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
