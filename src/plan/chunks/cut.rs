//! Which tables the chunked copy reads in ranges of a key, and the ranges: a table bigger
//! than a chunk whose key every change in the stream carries (the replica identity's
//! columns: the primary key under `DEFAULT`, the index of `USING INDEX`; under `FULL` the
//! primary key or a unique index), NOT NULL and of types pgcopy orders itself
//! (`keys::Kind`), and whose other unique indexes and exclusion constraints all hold that
//! key (so no two chunks, read at different times, can hold rows that clash in them), is
//! cut into ranges of about a chunk, with bounds taken as `plan::pieces` takes them. Any
//! other table is read whole, in a snapshot of its own held while it is read, and the plan
//! says why.

use super::keys::Kind;
use crate::pg::sql::TableName;
use crate::plan::{pieces, Plan, Replace};
use anyhow::{Context, Result};
use postgres::Client;

/// At most this many chunks per table.
const MAX_CHUNKS: u64 = 100_000;

/// Cuts the tables of `plan` into chunks of about `chunk_bytes`, reading the source in the
/// planning snapshot; returns why tables bigger than a chunk are read whole.
pub(crate) fn cut(source: &mut Client, plan: &mut Plan, chunk_bytes: u64) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for table in &mut plan.tables {
        table.split = None;
        if !table.on_source || table.data_bytes <= chunk_bytes {
            continue;
        }
        let whole = |why: &str| {
            format!(
                "{} is read whole, in a snapshot of its own held while it is read: {why}",
                table.name
            )
        };
        if table.replace != Replace::All {
            notes.push(whole("only some of its rows are replaced"));
            continue;
        }
        if !table.triggers.is_empty() {
            notes.push(whole(
                "its triggers are switched off inside one load transaction",
            ));
            continue;
        }
        let key = match chunk_key(source, &table.name)? {
            Ok(key) => key,
            Err(why) => {
                notes.push(whole(&why));
                continue;
            }
        };
        if let Some(why) = clash(source, &table.name, &key)? {
            notes.push(whole(&why));
            continue;
        }
        let count = table
            .data_bytes
            .div_ceil(chunk_bytes.max(1))
            .clamp(2, MAX_CHUNKS) as usize;
        table.split = pieces::key_bounds(source, &table.name, &key, count)?
            .map(|bounds| pieces::key_split(key, &bounds))
            .filter(|split| split.pieces.len() > 1);
    }
    Ok(notes)
}

/// The key `table`'s chunks follow (its columns in order, with their types), or why it has
/// none.
fn chunk_key(
    source: &mut Client,
    table: &TableName,
) -> Result<std::result::Result<Vec<(String, String)>, String>> {
    let rows = source
        .query(
            "SELECT c.relreplident::text, i.indisprimary, i.indisreplident,
                    array_agg(a.attname::text ORDER BY k.ord),
                    array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
                    bool_and(a.attnotnull)
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
             CROSS JOIN LATERAL generate_series(0, i.indnkeyatts - 1) AS k(ord)
             JOIN pg_catalog.pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.ord]
             WHERE c.oid = $1::text::regclass AND i.indisunique AND i.indisvalid
               AND i.indpred IS NULL AND i.indexprs IS NULL
             GROUP BY c.relreplident, i.indexrelid, i.indisprimary, i.indisreplident
             ORDER BY i.indisprimary DESC, count(*), i.indexrelid",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the keys of {table}"))?;
    let identity: String = match rows.first() {
        Some(row) => row.get(0),
        None => return Ok(Err("it has no primary key or unique index".into())),
    };
    let carried = rows.iter().filter(|row| match identity.as_str() {
        "d" => row.get::<_, bool>(1),
        "i" => row.get::<_, bool>(2),
        "f" => true,
        _ => false,
    });
    let mut why = match identity.as_str() {
        "d" => "it has no primary key, which its changes are identified by".to_string(),
        "f" => "it has no unique key of NOT NULL integer or uuid columns".to_string(),
        _ => "its changes carry no key (replica identity NOTHING)".to_string(),
    };
    for row in carried {
        let names: Vec<String> = row.get(3);
        let types: Vec<String> = row.get(4);
        if !row.get::<_, bool>(5) {
            why = format!(
                "its key ({}) has a column that may be NULL",
                names.join(", ")
            );
            continue;
        }
        if types.iter().any(|t| Kind::of(t).is_none()) {
            why = format!(
                "its key ({}) is not of integer or uuid columns, the types pgcopy places \
                 changes in ranges of itself",
                names.join(", ")
            );
            continue;
        }
        return Ok(Ok(names.into_iter().zip(types).collect()));
    }
    Ok(Err(why))
}

/// Why rows of `table` in two chunks could clash in a unique index or an exclusion
/// constraint other than `key`'s, if they could: one whose key columns do not include all
/// of `key`'s. Two chunks are read at different times: a value that moved from a row of one
/// to a row of the other between their reads is in both, until the stream moves it.
fn clash(
    source: &mut Client,
    table: &TableName,
    key: &[(String, String)],
) -> Result<Option<String>> {
    let rows = source
        .query(
            "SELECT c.relname::text, i.indisexclusion,
                    ARRAY(SELECT a.attname::text
                            FROM generate_series(0, i.indnkeyatts - 1) AS k(n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n])
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::text::regclass AND (i.indisunique OR i.indisexclusion)
             ORDER BY c.relname",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the unique indexes of {table}"))?;
    for row in rows {
        let (index, exclusion, columns): (String, bool, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        if exclusion {
            return Ok(Some(format!(
                "its exclusion constraint {index} could hold rows of two chunks read at \
                 different times against each other"
            )));
        }
        if !key.iter().all(|(name, _)| columns.contains(name)) {
            return Ok(Some(format!(
                "its unique index {index} does not hold its key, so rows of two chunks read \
                 at different times could share a value in it"
            )));
        }
    }
    Ok(None)
}
