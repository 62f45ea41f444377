//! Whether the destination can take the plan, checked before anything is written: every
//! table there as an ordinary table with every copied column, not generated, of a type
//! that takes the source's values (`conversions`); no row-level security in the way of
//! `COPY FROM`; the rights the load needs; and the one error that lists every reason at
//! once.

use crate::pg::sql::{display_ident, TableName};
use crate::plan::conversions::{self, Changed, How};
use crate::plan::{Format, Plan, TablePlan};
use crate::schema::catalog::{self, Column, DestTable, Rights};
use crate::schema::constraints::Constraint;
use anyhow::Result;
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// What the destination check found.
pub(crate) struct DestCheck {
    /// Tables and columns that are missing or differ, one line each.
    pub(crate) mismatches: Vec<String>,
    /// Columns whose destination type may not take every source value, one line each:
    /// refused unless the user allows narrowing.
    pub(crate) narrowed: Vec<String>,
    /// Tables that row-level security applies to for the destination role: `COPY FROM`
    /// refuses them.
    pub(crate) policies_apply: Vec<TableName>,
}

/// Checks that every planned table exists on the destination as an ordinary table with
/// every copied column, not generated there, and that `COPY FROM` may write it; and decides
/// how each column whose type differs travels (`conversions`), setting the plan's
/// conversions and formats. Reads only.
pub(crate) fn check_destination(
    source: &mut Client,
    client: &mut Client,
    plan: &mut Plan,
) -> Result<DestCheck> {
    let dest = catalog::dest_tables(client, &plan.names())?;
    let mut changed = Vec::new();
    for (i, table) in plan.tables.iter().enumerate() {
        let Some(d) = dest.get(&table.name).filter(|_| table.on_source) else {
            continue;
        };
        for column in &table.columns {
            if let Some(dc) = d.columns.iter().find(|c| c.name == column.name) {
                if dc.type_name != column.type_name {
                    changed.push(Changed {
                        table: i,
                        source: column,
                        dest: dc,
                    });
                }
            }
        }
    }
    let decided = conversions::decide(source, client, &changed)?;
    let places: Vec<usize> = changed.iter().map(|c| c.table).collect();
    let mut narrowed = Vec::new();
    for (i, (conversion, binary)) in places.into_iter().zip(decided) {
        let table = &mut plan.tables[i];
        if !conversion.exact {
            narrowed.push(format!(
                "{}: column {:?} is {} on the source but {} on the destination ({})",
                table.name, conversion.column, conversion.from, conversion.to, conversion.why
            ));
        }
        if table.format == Format::Binary && (!binary || conversion.how == How::Text) {
            table.format = Format::Text;
            table.text_reason = Some(format!(
                "the destination reads {:?} ({} → {}) from text",
                conversion.column, conversion.from, conversion.to
            ));
        }
        table.conversions.push(conversion);
    }
    Ok(DestCheck {
        mismatches: plan
            .tables
            .iter()
            .flat_map(|table| mismatches(table, dest.get(&table.name)))
            .collect(),
        narrowed,
        policies_apply: plan
            .tables
            .iter()
            .filter(|t| dest.get(&t.name).is_some_and(|d| d.policies_apply))
            .map(|t| t.name.clone())
            .collect(),
    })
}

impl DestCheck {
    /// What the destination refuses, one paragraph per kind (as `snapshot::refusals`);
    /// `more_mismatches` are the sequences', `role` names the destination's role, and
    /// narrowed columns are refused unless `allow_narrowing`.
    pub(crate) fn refusals(
        self,
        more_mismatches: Vec<String>,
        role: &str,
        allow_narrowing: bool,
    ) -> Vec<String> {
        let mut found = Vec::new();
        if !allow_narrowing && !self.narrowed.is_empty() {
            found.push(format!(
                "the destination's types of these columns may not take every source value:\n  \
                 {}\nwiden them on the destination, or pass --allow-narrowing to copy them \
                 anyway: a value that does not fit then fails its table, which keeps its old \
                 rows",
                self.narrowed.join("\n  ")
            ));
        }
        let mismatches: Vec<String> = self.mismatches.into_iter().chain(more_mismatches).collect();
        if !mismatches.is_empty() {
            found.push(format!(
                "the destination schema does not match the source:\n  {}",
                mismatches.join("\n  ")
            ));
        }
        if !self.policies_apply.is_empty() {
            let names: Vec<String> = self
                .policies_apply
                .iter()
                .map(ToString::to_string)
                .collect();
            found.push(format!(
                "row-level security on these destination tables applies to {role}, and COPY \
                 FROM refuses such tables:\n  {}\ncopy as a role with BYPASSRLS (or a \
                 superuser), or as the tables' owner where they do not FORCE ROW LEVEL \
                 SECURITY, or leave them out with --exclude-tables",
                names.join("\n  ")
            ));
        }
        found
    }
}

/// What the destination role may not do that the plan needs, one paragraph per kind, as
/// `DestCheck::refusals`: write (truncate and insert into) the copied tables, drop and add
/// the constraints in the way (the owner of their tables), switch the triggers off and
/// build the indexes again (the owner, and `CREATE` on the schema for indexes). Tables
/// missing from `rights` are refused elsewhere.
pub(crate) fn rights_refusals(
    plan: &Plan,
    keys: &[Constraint],
    rights: &HashMap<TableName, Rights>,
    role: &str,
) -> Vec<String> {
    let lacking = |name: &TableName, wants: &dyn Fn(&Rights) -> bool| {
        rights.get(name).is_some_and(|r| !wants(r))
    };
    let mut found = Vec::new();
    let mut refuse = |names: Vec<String>, why: String, way_out: &str| {
        if !names.is_empty() {
            found.push(format!("{why}:\n  {}\n{way_out}", names.join("\n  ")));
        }
    };
    let tables = |wants: &dyn Fn(&TablePlan) -> bool, right: &dyn Fn(&Rights) -> bool| {
        plan.tables
            .iter()
            .filter(|t| wants(t) && lacking(&t.name, right))
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    refuse(
        tables(&|_| true, &|r| r.write),
        format!("{role} may not TRUNCATE or INSERT into these destination tables"),
        "GRANT TRUNCATE, INSERT on them to the role, connect as their owner, or leave them out \
         with --exclude-tables",
    );
    let mut keys_in_the_way: Vec<String> = keys
        .iter()
        .filter(|k| lacking(&k.table, &|r| r.owner))
        .map(|k| format!("{} on {}", display_ident(&k.name), k.table))
        .collect();
    keys_in_the_way.dedup();
    refuse(
        keys_in_the_way,
        format!(
            "{role} does not own the tables of these constraints, which the load must drop and \
             put back"
        ),
        "connect as the tables' owner, or pass --fk-mode none if the load order needs no \
         keys out of the way",
    );
    refuse(
        tables(&|t| !t.triggers.is_empty(), &|r| r.owner),
        format!(
            "{role} does not own these destination tables, whose triggers would fire for the \
             copied rows and must be switched off for the load"
        ),
        "connect as the owner, use --fk-mode replica (a superuser, or SET granted on \
         session_replication_role), or let the triggers fire with --enable-triggers",
    );
    refuse(
        tables(&|t| !t.indexes.is_empty(), &|r| {
            r.owner && r.create_in_schema
        }),
        format!(
            "{role} may not build the indexes of these destination tables again (that needs \
             the table's owner and CREATE on its schema)"
        ),
        "use --indexes auto (which keeps the indexes it cannot rebuild) or keep, or connect \
         as the owner with CREATE on the schema",
    );
    found
}

/// The error for a plan that cannot go ahead: every refusal, and that nothing changed.
pub(crate) fn refuse(what: &str, refusals: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing to {what}; nothing was changed:\n{}",
        refusals.join("\n")
    )
}

fn mismatches(table: &TablePlan, dest: Option<&DestTable>) -> Vec<String> {
    if !table.on_source {
        return Vec::new();
    }
    let name = &table.name;
    let dest = match dest {
        None => return vec![format!("{name}: table is missing on the destination")],
        Some(dest) if dest.kind != "r" => {
            return vec![format!(
                "{name}: is {} on the destination, not an ordinary table or partition",
                kind_name(&dest.kind)
            )]
        }
        Some(dest) => dest,
    };
    let by_name: HashMap<&str, &Column> =
        dest.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let copied: HashSet<&str> = table.column_names().collect();
    // A column only the destination has gets its default; without one, NOT NULL refuses
    // every row.
    let unfilled = dest
        .columns
        .iter()
        .filter(|c| c.required && !copied.contains(c.name.as_str()))
        .map(|c| {
            format!(
                "{name}: column {:?} is NOT NULL without a default on the destination, and the \
                 copy gives it no value (the source has no such column, or generates it)",
                c.name
            )
        });
    table
        .columns
        .iter()
        .filter_map(|column| {
            let col = &column.name;
            match by_name.get(col.as_str()) {
                None => Some(format!(
                    "{name}: column {col:?} is missing on the destination"
                )),
                Some(d) if d.generated => Some(format!(
                    "{name}: column {col:?} is generated on the destination but not on the source"
                )),
                _ => None,
            }
        })
        .chain(unfilled)
        .collect()
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "p" => "a partitioned table",
        "v" => "a view",
        "m" => "a materialized view",
        "f" => "a foreign table",
        "S" => "a sequence",
        _ => "another kind of relation",
    }
}
