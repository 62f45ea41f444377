//! Sequences: which ones belong to a copy (owned by a copied column, serial or identity, or
//! standalone in a copied schema), their values in the source snapshot, and setting them on
//! the destination once the data is there.

use crate::pg::sql::{name_arrays, TableName};
use crate::schema::catalog::Table;
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// How many sequences one value query reads.
const VALUES_PER_QUERY: usize = 500;

/// A sequence and the value it will get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub(crate) name: TableName,
    /// The table whose column owns it (serial or identity); `None` for a standalone one.
    pub(crate) owner: Option<TableName>,
    pub(crate) last_value: i64,
    pub(crate) is_called: bool,
}

/// The sequences a copy of `selected` sets, with their values as the source has them now:
/// those owned by copied tables, and the standalone ones in the schemas of copied tables,
/// or every one for a source with no tables copied whole (`every_standalone`), as
/// `pg_dump` dumps an empty database.
/// Run in the snapshot transaction: a sequence is not transactional, so its value may be
/// newer than the snapshot, which is safe (never lower than any copied row's).
pub(crate) fn plan(
    client: &mut Client,
    selected: &[Table],
    every_standalone: bool,
) -> Result<Vec<Sequence>> {
    let rows = client
        .query(
            "SELECT sn.nspname, s.relname, tn.nspname AS owner_schema, t.relname AS owner_name
             FROM pg_class s
             JOIN pg_namespace sn ON sn.oid = s.relnamespace
             LEFT JOIN pg_depend d
                    ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
             LEFT JOIN pg_class t ON t.oid = d.refobjid
             LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE s.relkind = 'S'
               AND sn.nspname NOT IN ('pg_catalog', 'information_schema')
               AND NOT EXISTS (
                     SELECT 1 FROM pg_depend e
                     WHERE e.classid = 'pg_class'::regclass AND e.objid = s.oid
                       AND e.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .context("listing the source sequences")?;
    let copied: HashSet<&TableName> = selected
        .iter()
        .flat_map(|t| std::iter::once(&t.name).chain(t.parent.as_ref()))
        .collect();
    let schemas: HashSet<&str> = selected.iter().map(|t| t.name.schema.as_str()).collect();
    let mut sequences: Vec<Sequence> = rows
        .iter()
        .filter_map(|row| {
            let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            let owner_schema: Option<String> = row.get(2);
            let owner = owner_schema.map(|s| TableName::new(s, row.get::<_, String>(3)));
            let wanted = match &owner {
                Some(owner) => copied.contains(owner),
                None => every_standalone || schemas.contains(name.schema.as_str()),
            };
            wanted.then_some(Sequence {
                name,
                owner,
                last_value: 0,
                is_called: false,
            })
        })
        .collect();
    read_values(client, &mut sequences)?;
    Ok(sequences)
}

/// Reads `last_value` and `is_called` of every sequence, a few hundred per query.
fn read_values(client: &mut Client, sequences: &mut [Sequence]) -> Result<()> {
    for batch in sequences.chunks_mut(VALUES_PER_QUERY) {
        let sql = batch
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "SELECT {i} AS i, last_value, is_called FROM {}",
                    s.name.quoted()
                )
            })
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n");
        for row in client
            .query(&sql, &[])
            .context("reading the source sequences' values")?
        {
            let i: i32 = row.get(0);
            let sequence = &mut batch[i as usize];
            sequence.last_value = row.get(1);
            sequence.is_called = row.get(2);
        }
    }
    Ok(())
}

/// Sequences missing on the destination, as schema-check problems.
pub(crate) fn check_destination(
    client: &mut Client,
    sequences: &[Sequence],
) -> Result<Vec<String>> {
    let (schemas, names) = name_arrays(sequences.iter().map(|s| &s.name));
    let present: HashSet<TableName> = client
        .query(
            "SELECT n.nspname, c.relname
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, seq_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.seq_name
                            AND c.relkind = 'S'",
            &[&schemas, &names],
        )
        .context("reading the destination sequences")?
        .iter()
        .map(|row| TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect();
    Ok(sequences
        .iter()
        .filter(|s| !present.contains(&s.name))
        .map(|s| format!("{}: sequence is missing on the destination", s.name))
        .collect())
}

/// The sequences to set once the copy is done: standalone ones, and those whose owning
/// table (all of its partitions, for a partitioned one) was copied successfully.
pub(crate) fn to_set<'a>(
    sequences: &'a [Sequence],
    tables: &[(&TableName, Option<&TableName>, bool)],
) -> Vec<&'a Sequence> {
    let mut ok: HashMap<&TableName, bool> = HashMap::new();
    for (name, parent, copied) in tables {
        for owner in std::iter::once(*name).chain(*parent) {
            let entry = ok.entry(owner).or_insert(true);
            *entry &= *copied;
        }
    }
    sequences
        .iter()
        .filter(|s| match &s.owner {
            None => true,
            Some(owner) => ok.get(owner).copied().unwrap_or(false),
        })
        .collect()
}

/// Sets each sequence on the destination, in a statement of its own: one that cannot take
/// its value (out of its bounds there, say) is reported, and the others are still set.
/// Returns how many were set, and what went wrong with the others.
pub(crate) fn set(client: &mut Client, sequences: &[&Sequence]) -> (usize, Vec<String>) {
    let mut set = 0;
    let mut problems = Vec::new();
    if sequences.is_empty() {
        return (set, problems);
    }
    let statement = match client.prepare("SELECT setval($1::text::regclass, $2, $3)") {
        Ok(statement) => statement,
        Err(err) => {
            let why = crate::pg::error::db_error(&err);
            return (0, vec![format!("the sequences could not be set: {why}")]);
        }
    };
    for sequence in sequences {
        let result = client.execute(
            &statement,
            &[
                &sequence.name.quoted(),
                &sequence.last_value,
                &sequence.is_called,
            ],
        );
        match result {
            Ok(_) => set += 1,
            Err(err) => problems.push(format!(
                "sequence {} could not be set to the source's {}: {}",
                sequence.name,
                sequence.last_value,
                crate::pg::error::db_error(&err)
            )),
        }
    }
    if set > 0 {
        log::info!("set {set} sequences to the source's values");
    }
    (set, problems)
}

/// `setval(...)` as a user would type it, for the dry run.
pub(crate) fn describe(sequence: &Sequence) -> String {
    format!(
        "setval({}, {}, {})",
        crate::pg::sql::quote_literal(&sequence.name.quoted()),
        sequence.last_value,
        sequence.is_called
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(name: &str, owner: Option<&str>) -> Sequence {
        Sequence {
            name: TableName::new("public", name),
            owner: owner.map(|o| TableName::new("public", o)),
            last_value: 1,
            is_called: true,
        }
    }

    #[test]
    fn sets_sequences_of_tables_copied_whole_and_standalone_ones() {
        let sequences = vec![
            seq("a_id_seq", Some("a")),
            seq("b_id_seq", Some("b")),
            seq("p_id_seq", Some("p")),
            seq("loose", None),
        ];
        let (a, b, p1, p2, p) = (
            TableName::new("public", "a"),
            TableName::new("public", "b"),
            TableName::new("public", "p1"),
            TableName::new("public", "p2"),
            TableName::new("public", "p"),
        );
        let tables = [
            (&a, None, true),
            (&b, None, false),
            (&p1, Some(&p), true),
            (&p2, Some(&p), false),
        ];
        let names: Vec<&str> = to_set(&sequences, &tables)
            .iter()
            .map(|s| s.name.name.as_str())
            .collect();
        assert_eq!(names, ["a_id_seq", "loose"]);
    }
}
