//! What exists in a database: tables, partitions, columns and which types can travel in
//! COPY's binary format. Each function is one catalog query, whatever the number of tables.

use crate::pg::sql::{name_arrays, TableName};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// The first OID a user object can get (`FirstNormalObjectId`); built-in types are below.
const FIRST_NORMAL_OID: u32 = 16384;

/// A table as the source catalog describes it.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) oid: u32,
    pub(crate) name: TableName,
    /// For a partition: the root of its partition tree.
    pub(crate) parent: Option<TableName>,
    /// A partitioned table holds no rows itself; its leaf partitions do.
    pub(crate) partitioned: bool,
    /// The planner's estimate; `None` when the table was never analyzed.
    pub(crate) estimated_rows: Option<u64>,
    /// Heap and TOAST bytes: what a COPY reads.
    pub(crate) data_bytes: u64,
    /// Heap, TOAST and index bytes: what the table takes on disk.
    pub(crate) total_bytes: u64,
    /// An unlogged table: a standby has no rows for it.
    pub(crate) unlogged: bool,
    /// Row-level security filters this table for the connected role
    /// (`row_security_active`): reading it would see only what the policies let through.
    pub(crate) policies_apply: bool,
    /// The connected role may `SELECT` from (and so lock) the whole table.
    pub(crate) readable: bool,
    /// For an extension's configuration table (`pg_extension_config_dump`) whose rows are
    /// partly the extension's own: the `WHERE …` clause that picks the user's rows, the
    /// only ones copied, as pg_dump does.
    pub(crate) extension_rows: Option<String>,
    /// For a child in a (non-partition) inheritance tree: its parent. Copied as a table of
    /// its own, as `COPY` reads a parent alone.
    pub(crate) inherits: Option<TableName>,
}

/// A column of a table, in the table's own order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// `format_type()` of the column: comparable between databases, unlike type OIDs.
    pub(crate) type_name: String,
    pub(crate) type_oid: u32,
    /// `atttypmod`: the type's modifier (`varchar(10)`'s 10, a numeric's digits), or -1.
    pub(crate) type_mod: i32,
    pub(crate) generated: bool,
    /// `NOT NULL` with no default, no identity and not generated: a row must give it a
    /// value.
    pub(crate) required: bool,
}

/// Ordinary tables, partitioned tables and partitions outside the system schemas. Views,
/// materialized views, foreign tables, temporary tables and tables that belong to an
/// extension (the extension creates and fills them) are left out, except the extension's
/// configuration tables, which hold the user's rows (`pg_extension_config_dump`). Reads only the catalog,
/// so it takes no lock on any table and waits for none: sizes are `sizes`' job, once the
/// tables wanted are locked.
pub(crate) fn tables(client: &mut Client) -> Result<Vec<Table>> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname, c.relname, c.relkind = 'p' AS partitioned,
                    c.reltuples::float8 AS reltuples,
                    c.relpersistence = 'u' AS unlogged,
                    row_security_active(c.oid) AS policies_apply,
                    has_table_privilege(c.oid, 'SELECT') AS readable,
                    rn.nspname AS root_schema, rc.relname AS root_name,
                    config.extname, config.condition,
                    inherited.nspname AS inherits_schema, inherited.relname AS inherits_name
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class rc
                    ON c.relispartition AND rc.oid = pg_partition_root(c.oid)
             LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
             LEFT JOIN LATERAL (
                     SELECT e.extname,
                            e.extcondition[array_position(e.extconfig, c.oid)] AS condition
                     FROM pg_extension e WHERE c.oid = ANY (e.extconfig)
                     LIMIT 1) AS config ON true
             LEFT JOIN LATERAL (
                     SELECT pn.nspname, p.relname
                     FROM pg_inherits i
                     JOIN pg_class p ON p.oid = i.inhparent
                     JOIN pg_namespace pn ON pn.oid = p.relnamespace
                     WHERE i.inhrelid = c.oid AND NOT c.relispartition
                     ORDER BY i.inhseqno LIMIT 1) AS inherited ON true
             WHERE c.relkind IN ('r', 'p')
               AND c.relpersistence <> 't'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%'
               AND n.nspname NOT LIKE 'pg\\_temp\\_%'
               AND (config.extname IS NOT NULL
                    OR NOT EXISTS (
                         SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                           AND d.deptype = 'e'))
             ORDER BY n.nspname, c.relname",
            &[],
        )
        .context("listing the source tables")?;
    Ok(rows
        .iter()
        .map(|row| {
            let reltuples: f64 = row.get("reltuples");
            let root_schema: Option<String> = row.get("root_schema");
            let root_name: Option<String> = row.get("root_name");
            Table {
                oid: row.get("oid"),
                name: TableName::new(
                    row.get::<_, String>("nspname"),
                    row.get::<_, String>("relname"),
                ),
                parent: root_schema
                    .zip(root_name)
                    .map(|(s, n)| TableName::new(s, n)),
                partitioned: row.get("partitioned"),
                estimated_rows: (reltuples >= 0.0).then_some(reltuples as u64),
                data_bytes: 0,
                total_bytes: 0,
                unlogged: row.get("unlogged"),
                policies_apply: row.get("policies_apply"),
                readable: row.get("readable"),
                extension_rows: row
                    .get::<_, Option<String>>("extname")
                    .map(|_| {
                        row.get::<_, Option<String>>("condition")
                            .unwrap_or_default()
                    })
                    .filter(|condition| !condition.trim().is_empty()),
                inherits: row
                    .get::<_, Option<String>>("inherits_schema")
                    .zip(row.get::<_, Option<String>>("inherits_name"))
                    .map(|(s, n)| TableName::new(s, n)),
            }
        })
        .collect())
}

/// Fills in the sizes of `tables`. Measuring a table takes a lock on it, so this waits for
/// a session that holds an exclusive one: call it for tables already locked, or where
/// waiting is right. Tables the role may not read (and so did not lock) are left at 0.
pub(crate) fn sizes(client: &mut Client, tables: &mut [Table]) -> Result<()> {
    let oids: Vec<u32> = tables
        .iter()
        .filter(|t| t.readable)
        .map(|t| t.oid)
        .collect();
    let rows = client
        .query(
            "SELECT t.oid, pg_table_size(t.oid), pg_total_relation_size(t.oid)
             FROM unnest($1::oid[]) AS t(oid)",
            &[&oids],
        )
        .context("measuring the source tables")?;
    // NULL for a table dropped meanwhile.
    let sizes: HashMap<u32, (Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    for table in tables {
        if let Some(&(data, total)) = sizes.get(&table.oid) {
            table.data_bytes = data.unwrap_or(0).max(0) as u64;
            table.total_bytes = total.unwrap_or(0).max(0) as u64;
        }
    }
    Ok(())
}

/// Those of `oids` whose data the snapshot of this transaction cannot see any more: the
/// table was truncated or rewritten (`TRUNCATE`, `VACUUM FULL`, `CLUSTER`, a rewriting
/// `ALTER TABLE`) by a transaction that committed after the snapshot was taken. Such a table
/// has a new file, and the old one, which held the rows the snapshot sees, is gone: read in
/// the snapshot it looks empty. The snapshot sees the file it had; `pg_relation_filenode`
/// says which file the table has now (exact once the table is locked).
pub(crate) fn rewritten(client: &mut Client, oids: &[u32]) -> Result<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = ANY($1) AND c.relfilenode <> 0
               AND pg_relation_filenode(c.oid) IS DISTINCT FROM c.relfilenode
             ORDER BY 1, 2",
            &[&oids],
        )
        .context("checking that no source table was truncated after the snapshot")?;
    Ok(rows
        .iter()
        .map(|row| TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

/// The live columns of the given tables, keyed by table OID, in column order.
pub(crate) fn columns(client: &mut Client, oids: &[u32]) -> Result<HashMap<u32, Vec<Column>>> {
    let rows = client
        .query(
            "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) AS type_name,
                    a.atttypid, a.atttypmod, a.attgenerated <> '' AS generated,
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
                      AND a.attgenerated = '' AS required
             FROM pg_attribute a
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .context("reading the source columns")?;
    let mut map: HashMap<u32, Vec<Column>> = HashMap::new();
    for row in rows {
        map.entry(row.get("attrelid")).or_default().push(Column {
            name: row.get("attname"),
            type_name: row.get("type_name"),
            type_oid: row.get("atttypid"),
            type_mod: row.get("atttypmod"),
            generated: row.get("generated"),
            required: row.get("required"),
        });
    }
    Ok(map)
}

/// The object identifier types whose binary form is the bare OID of a table, type, function,
/// role… In text they are names (schema-qualified under the sessions' empty `search_path`),
/// which the destination turns into its own OIDs; in binary another database would get
/// numbers that name another object, or none. (`regcollation` is 13+; an older server has
/// none to match.)
const OID_ALIASES: [&str; 11] = [
    "regclass",
    "regtype",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regrole",
    "regnamespace",
    "regconfig",
    "regdictionary",
    "regcollation",
];

/// The types among `type_oids` whose values cannot travel in binary COPY between two
/// databases: those with no binary send/receive function somewhere inside them (such as
/// `aclitem`), those whose binary form embeds the OID of a user-defined type (arrays
/// record their element type, composites each field's type), because the destination
/// assigned its own OIDs to its types and `array_recv` / `record_recv` reject a mismatch,
/// and the `reg*` types (`OID_ALIASES`), inside arrays, domains and composites too.
pub(crate) fn binary_unsafe_types(client: &mut Client, type_oids: &[u32]) -> Result<HashSet<u32>> {
    let rows = client
        .query(
            "WITH RECURSIVE walk(root, typ, embedded) AS (
                 SELECT t.oid, t.oid, false FROM pg_type t WHERE t.oid = ANY($1)
               UNION
                 SELECT w.root, d.dep, d.embedded
                 FROM walk w
                 JOIN pg_type t ON t.oid = w.typ
                 CROSS JOIN LATERAL (
                     SELECT t.typelem, true WHERE t.typelem <> 0 AND t.typlen = -1
                     UNION ALL
                     SELECT t.typbasetype, false WHERE t.typtype = 'd'
                     UNION ALL
                     SELECT a.atttypid, true FROM pg_attribute a
                     WHERE t.typrelid <> 0 AND a.attrelid = t.typrelid
                       AND a.attnum > 0 AND NOT a.attisdropped
                     UNION ALL
                     SELECT r.rngsubtype, false FROM pg_range r WHERE r.rngtypid = t.oid
                 ) AS d(dep, embedded)
             )
             SELECT DISTINCT w.root
             FROM walk w JOIN pg_type t ON t.oid = w.typ
             WHERE t.typsend = 0 OR t.typreceive = 0
                OR (w.embedded AND w.typ >= $2)
                OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = ANY($3))",
            &[&type_oids, &FIRST_NORMAL_OID, &&OID_ALIASES[..]],
        )
        .context("checking which column types can be copied in binary")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A table on the destination as far as the schema check needs it.
#[derive(Clone, Debug)]
pub(crate) struct DestTable {
    /// `pg_class.relkind`: `r` ordinary, `p` partitioned, `v` view, `f` foreign, ...
    pub(crate) kind: String,
    pub(crate) columns: Vec<Column>,
    /// Row-level security applies to the connected role (`row_security_active`).
    pub(crate) policies_apply: bool,
}

/// The destination's relations with the given names (whatever their kind) and their columns.
pub(crate) fn dest_tables(
    client: &mut Client,
    names: &[TableName],
) -> Result<HashMap<TableName, DestTable>> {
    let (schemas, tables) = name_arrays(names);
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, c.relkind::text AS kind,
                    row_security_active(c.oid) AS policies_apply, a.attname,
                    format_type(a.atttypid, a.atttypmod) AS type_name, a.atttypid,
                    a.atttypmod, a.attgenerated <> '' AS generated,
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
                      AND a.attgenerated = '' AS required
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             LEFT JOIN pg_attribute a
                    ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.oid, a.attnum",
            &[&schemas, &tables],
        )
        .context("reading the destination tables")?;
    let mut map: HashMap<TableName, DestTable> = HashMap::new();
    for row in rows {
        let name = TableName::new(
            row.get::<_, String>("nspname"),
            row.get::<_, String>("relname"),
        );
        let table = map.entry(name).or_insert_with(|| DestTable {
            kind: row.get("kind"),
            columns: Vec::new(),
            policies_apply: row.get("policies_apply"),
        });
        if let Some(column) = row.get::<_, Option<String>>("attname") {
            table.columns.push(Column {
                name: column,
                type_name: row.get("type_name"),
                type_oid: row.get("atttypid"),
                type_mod: row.get("atttypmod"),
                generated: row.get("generated"),
                required: row.get("required"),
            });
        }
    }
    Ok(map)
}

/// What the connected role may do to a destination table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rights {
    /// It owns the table, or is a member of the role that does: `ALTER TABLE` (dropping a
    /// constraint, switching a trigger off, building an index) needs that.
    pub(crate) owner: bool,
    /// `TRUNCATE`, and `INSERT` on at least one column: what replacing the rows needs.
    pub(crate) write: bool,
    /// `CREATE` on the table's schema, which building an index in it needs.
    pub(crate) create_in_schema: bool,
}

/// The rights the connected role has on the given destination tables.
pub(crate) fn rights(
    client: &mut Client,
    names: &[TableName],
) -> Result<HashMap<TableName, Rights>> {
    let (schemas, tables) = name_arrays(names);
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, pg_has_role(c.relowner, 'USAGE'),
                    has_table_privilege(c.oid, 'TRUNCATE')
                      AND has_any_column_privilege(c.oid, 'INSERT'),
                    has_schema_privilege(n.oid, 'CREATE')
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name",
            &[&schemas, &tables],
        )
        .context("reading what the destination role may do")?;
    Ok(rows
        .iter()
        .map(|row| {
            let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            let rights = Rights {
                owner: row.get(2),
                write: row.get(3),
                create_in_schema: row.get(4),
            };
            (name, rights)
        })
        .collect())
}

/// The leaf partitions the destination has of the given partitioned tables: (root, leaf).
pub(crate) fn dest_leaves(
    client: &mut Client,
    roots: &[TableName],
) -> Result<Vec<(TableName, TableName)>> {
    let (schemas, names) = name_arrays(roots);
    let rows = client
        .query(
            "SELECT rn.nspname, r.relname, n.nspname, c.relname
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace rn ON rn.nspname = want.schema_name
             JOIN pg_class r ON r.relnamespace = rn.oid AND r.relname = want.table_name
                            AND r.relkind = 'p'
             CROSS JOIN LATERAL pg_partition_tree(r.oid) AS tree
             JOIN pg_class c ON c.oid = tree.relid AND tree.isleaf AND c.relkind = 'r'
             JOIN pg_namespace n ON n.oid = c.relnamespace
             ORDER BY 1, 2, 3, 4",
            &[&schemas, &names],
        )
        .context("reading the destination's partitions")?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
                TableName::new(row.get::<_, String>(2), row.get::<_, String>(3)),
            )
        })
        .collect())
}

/// The file each of the given destination tables is in now (`pg_relation_filenode`).
pub(crate) fn filenodes(
    client: &mut Client,
    names: &[TableName],
) -> Result<HashMap<TableName, u32>> {
    let (schemas, tables) = name_arrays(names);
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, pg_relation_filenode(c.oid)
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name",
            &[&schemas, &tables],
        )
        .context("reading the destination tables' files")?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            Some((name, row.get::<_, Option<u32>>(2)?))
        })
        .collect())
}
