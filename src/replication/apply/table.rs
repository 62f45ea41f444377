//! The destination table the applier's statements run on. A table is read from the
//! destination's catalog once per description the stream sends: whether the source's
//! columns fit it, each column's type (every parameter is prepared with it, so a composite
//! or a domain is read as itself), which columns have no `=`, and which are identity
//! columns `GENERATED ALWAYS`.

use crate::pg::sql::{quote_ident, TableName};
use crate::replication::decode::{Column, Relation};
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// A followed table: as the source described it, and its columns as the destination has
/// them, in the source's order.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) name: TableName,
    pub(crate) relation: Relation,
    pub(crate) columns: Vec<DestColumn>,
}

/// What the destination says of one column the source sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DestColumn {
    /// The column's type: every parameter for it is prepared with this type.
    pub(crate) type_oid: u32,
    /// Its type has no `=` (`json`, `point`, an array of those): compared by its text where
    /// a `REPLICA IDENTITY FULL` row is found by it.
    pub(crate) by_text: bool,
    /// An identity column `GENERATED ALWAYS`.
    pub(crate) always: bool,
}

impl Target {
    /// A table the stream described: checks that the source's columns fit the destination's
    /// (else the follower stops before applying the transaction) and reads their types.
    pub(crate) fn read(
        catalog: &mut Client,
        name: TableName,
        relation: Relation,
    ) -> Result<Target> {
        let rows = catalog.query(
            "SELECT a.attname::text, a.atttypid,
                    a.attidentity = 'a',
                    format_type(CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem
                                     ELSE a.atttypid END, NULL),
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0
                AND NOT a.attisdropped AND a.attgenerated = ''",
            &[&name.quoted()],
        )?;
        let dest: HashMap<String, (u32, bool, String, bool)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect();
        check_fits(&name, &relation.columns, &dest)?;
        let full = relation.replica_identity == b'f';
        let mut comparable: HashMap<String, bool> = HashMap::new();
        let mut columns = Vec::with_capacity(relation.columns.len());
        for column in &relation.columns {
            let (type_oid, always, element, _) = &dest[&column.name];
            // Only a FULL table's rows are found by columns that may lack `=`.
            let by_text = full && !has_equality(catalog, element, &mut comparable)?;
            columns.push(DestColumn {
                type_oid: *type_oid,
                by_text,
                always: *always,
            });
        }
        Ok(Target {
            name,
            relation,
            columns,
        })
    }
}

/// Whether values of `ty` can be compared with `=`: asked of the parser, which knows every
/// way a type may have one.
fn has_equality(catalog: &mut Client, ty: &str, known: &mut HashMap<String, bool>) -> Result<bool> {
    if let Some(&equal) = known.get(ty) {
        return Ok(equal);
    }
    let equal = match catalog.batch_execute(&format!(
        "SELECT NULL::{ty} IS NOT DISTINCT FROM NULL::{ty}"
    )) {
        Ok(()) => true,
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_FUNCTION) => false,
        Err(err) => return Err(err).with_context(|| format!("asking whether {ty} has =")),
    };
    known.insert(ty.to_string(), equal);
    Ok(equal)
}

/// Whether a table's columns as the source now describes them fit the destination's
/// (`dest`: name, then type, identity, element type and whether a value is required):
/// every source column is there to take its value, and every destination column that must
/// be given one is among them.
fn check_fits(
    table: &TableName,
    columns: &[Column],
    dest: &HashMap<String, (u32, bool, String, bool)>,
) -> Result<()> {
    let resume = "fix the destination, then resume with `pgcopy copy --follow --resume`; \
                  nothing of the source transaction that changed it was applied";
    if dest.is_empty() {
        bail!("the source changed {table}, which the destination no longer has: {resume}");
    }
    for column in columns {
        if !dest.contains_key(&column.name) {
            bail!(
                "the source's table {table} has a column {} that the destination's lacks \
                 (a schema change on the source): {resume}",
                quote_ident(&column.name)
            );
        }
    }
    let sent: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut required: Vec<&String> = dest
        .iter()
        .filter(|(name, column)| column.3 && !sent.contains(name.as_str()))
        .map(|(name, _)| name)
        .collect();
    required.sort();
    if let Some(name) = required.first() {
        bail!(
            "the source's table {table} no longer has the column {}, which the destination \
             requires (NOT NULL, no default): {resume}",
            quote_ident(name)
        );
    }
    Ok(())
}
