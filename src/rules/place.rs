//! Placing a rules file's masks on a plan: each rule matched to the copied tables and
//! columns (a partitioned table's to its partitions, a JSON path to its column), what
//! cannot be masked refused, and what each table's reader must then do put on the plan in
//! plain terms (`plan::reading`).

use crate::pg::sql::{display_ident, TableName};
use crate::plan::reading::{Reads, Unfit};
use crate::plan::{Format, Plan, TablePlan};
use crate::rules::masks::{MaskRule, Noisy, Placed, Rule};
use crate::rules::rewrite::values::{fits, Kind};
use crate::rules::rewrite::{FieldRules, KeyedField};
use crate::rules::{Kept, Rules};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

impl Rules {
    /// Puts the masks on the plan's tables; what is wrong with the rules for this plan
    /// (a table the source does not have, or a column the table does not have; a column
    /// `require` matches that no rule masks) comes back as refusals. `on_source` are the
    /// source's tables: a rule for one this copy leaves out is no mistake.
    pub(super) fn apply(
        &self,
        plan: &mut Plan,
        on_source: &HashSet<TableName>,
        masks: &[MaskRule],
        partition_keys: &BTreeMap<TableName, Vec<String>>,
        bases: &BTreeMap<String, String>,
    ) -> (Vec<String>, Kept) {
        let mut refusals = Vec::new();
        let mut kept = HashSet::new();
        let mut placed: BTreeMap<TableName, Vec<Placed>> = BTreeMap::new();
        for mask in masks {
            // A partitioned table's rule is its partitions', which are what is copied.
            let mut tables = plan
                .tables
                .iter_mut()
                .filter(|t| t.on_source)
                .filter(|t| t.name == mask.table || t.parent.as_ref() == Some(&mask.table))
                .peekable();
            if tables.peek().is_none() {
                if !on_source.contains(&mask.table) {
                    refusals.push(format!(
                        "the rules mask {}.{}, but the source has no table {} (renamed or \
                         dropped?)",
                        mask.table,
                        display_ident(&mask.column),
                        mask.table
                    ));
                }
                continue;
            }
            for table in tables {
                let Some((column, path)) = resolve(&table.columns, &mask.column) else {
                    refusals.push(format!(
                        "the rules mask the column {} of {}, which it does not have (renamed \
                         or dropped?): its data would be copied unmasked under the new name",
                        display_ident(&mask.column),
                        table.name
                    ));
                    continue;
                };
                let target = format!("{}.{}", table.name, display_ident(&mask.column));
                if !path.is_empty() {
                    if let Err(why) = json_path_fits(&column.type_name, &path, &mask.rule) {
                        refusals.push(format!("the rule for {target}: {why}"));
                        continue;
                    }
                    let clash = table.masks.iter().find(|m| {
                        m.column == column.name
                            && (m.path.is_empty()
                                || m.path.starts_with(&path)
                                || path.starts_with(&m.path))
                    });
                    if let Some(other) = clash {
                        refusals.push(format!(
                            "the rules mask {target} and {}.{}, one inside the other: keep one",
                            table.name,
                            other.target()
                        ));
                        continue;
                    }
                } else if let Some(other) = table.masks.iter().find(|m| m.column == column.name) {
                    refusals.push(format!(
                        "the rules mask {target} and {}.{}, one inside the other: keep one",
                        table.name,
                        other.target()
                    ));
                    continue;
                }
                if partition_keys
                    .get(&table.name)
                    .is_some_and(|keys| keys.contains(&column.name))
                {
                    refusals.push(format!(
                        "the rules mask {target}, which is in the partition key of {}: a row \
                         whose masked value belongs in another partition could not be loaded \
                         into this one; leave the partition key unmasked",
                        table.parent.as_ref().unwrap_or(&table.name)
                    ));
                    continue;
                }
                let column = column.clone();
                if let (Rule::Noise(range), true) = (&mask.rule, path.is_empty()) {
                    if let Err(why) = Noisy::check(&column.type_name, range) {
                        refusals.push(format!(
                            "the rule noise for {}.{}: {why}",
                            table.name,
                            display_ident(&column.name)
                        ));
                        continue;
                    }
                }
                let base_type = bases.get(&column.type_name).cloned();
                if let Rule::Keyed(keyed) = mask.rule {
                    let kind = Kind::of(&column.type_name)
                        .or_else(|| base_type.as_deref().and_then(Kind::of));
                    if let (Err(why), true) = (fits(keyed, kind), path.is_empty()) {
                        refusals.push(format!(
                            "the rule {} cannot produce {}.{}'s type {}: {why}",
                            keyed.name(),
                            table.name,
                            display_ident(&column.name),
                            column.type_name
                        ));
                        continue;
                    }
                    if table.format != Format::Binary {
                        refusals.push(format!(
                            "{} travels as text ({}), where pgcopy cannot hash a column: use \
                             an sql rule there",
                            table.name,
                            table.text_reason.as_deref().unwrap_or("its types")
                        ));
                        continue;
                    }
                }
                if mask.rule == Rule::Keep {
                    kept.insert((table.name.clone(), column.name.clone(), path));
                    continue;
                }
                let mask = Placed {
                    column: column.name.clone(),
                    path,
                    rule: mask.rule.clone(),
                    key: self.key.clone().filter(|_| mask.rule.in_client()),
                    base_type,
                };
                table.masks.push(mask.plain());
                placed.entry(table.name.clone()).or_default().push(mask);
            }
        }
        for table in &mut plan.tables {
            if let Some(placed) = placed.get(&table.name) {
                table.reads = reads(table, placed);
            }
        }
        for table in &plan.tables {
            for column in &table.columns {
                let masked = table.masks.iter().any(|m| m.column == column.name)
                    || kept
                        .iter()
                        .any(|(t, c, _)| t == &table.name && c == &column.name);
                let lowered = column.name.to_lowercase();
                if let Some(pattern) = self.require.iter().find(|p| p.matches(&lowered)) {
                    if !masked {
                        refusals.push(format!(
                            "{}.{} matches the rules' require pattern {:?} but no rule masks \
                             it: add one under [mask.\"{}\"], or exclude the table",
                            table.name,
                            display_ident(&column.name),
                            pattern.as_string(),
                            table.name.dotted()
                        ));
                    }
                }
            }
        }
        (refusals, kept)
    }
}

/// The types the copied columns' domains are domains over (through domains over domains),
/// by the domain's name as `format_type` writes a column's type.
pub(super) fn domain_bases(
    client: &mut postgres::Client,
    plan: &Plan,
) -> Result<BTreeMap<String, String>> {
    let mut oids: Vec<u32> = plan
        .tables
        .iter()
        .flat_map(|t| t.columns.iter().map(|c| c.type_oid))
        .collect();
    oids.sort_unstable();
    oids.dedup();
    let rows = client
        .query(
            "WITH RECURSIVE d(oid, base, typmod) AS (
                 SELECT t.oid, t.typbasetype, t.typtypmod FROM pg_catalog.pg_type t
                  WHERE t.oid = ANY ($1) AND t.typtype = 'd'
               UNION ALL
                 SELECT d.oid, t.typbasetype,
                        CASE WHEN d.typmod <> -1 THEN d.typmod ELSE t.typtypmod END
                   FROM d JOIN pg_catalog.pg_type t ON t.oid = d.base AND t.typtype = 'd')
             SELECT format_type(d.oid, NULL), format_type(d.base, d.typmod)
               FROM d JOIN pg_catalog.pg_type b ON b.oid = d.base AND b.typtype <> 'd'",
            &[&oids],
        )
        .context("reading the copied columns' domains")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns of the partition keys (of every level) that each copied partition's rows are
/// routed by: a row loads into its partition only while those keep their values.
pub(super) fn partition_keys(
    client: &mut postgres::Client,
    plan: &Plan,
) -> Result<BTreeMap<TableName, Vec<String>>> {
    let names: Vec<String> = plan
        .tables
        .iter()
        .filter(|t| t.parent.is_some() && t.on_source)
        .map(|t| t.name.quoted())
        .collect();
    let mut keys: BTreeMap<TableName, Vec<String>> = BTreeMap::new();
    if names.is_empty() {
        return Ok(keys);
    }
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text
               FROM unnest($1::text[]) AS leaf(name)
               JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(leaf.name)
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(c.oid) AS up(relid)
               JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = up.relid
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = p.partrelid AND a.attnum = ANY (p.partattrs)",
            &[&names],
        )
        .context("reading the partition keys of the copied partitions")?;
    for row in rows {
        keys.entry(TableName::new(
            row.get::<_, String>(0),
            row.get::<_, String>(1),
        ))
        .or_default()
        .push(row.get(2));
    }
    Ok(keys)
}

/// The column a rule's key names and the JSON path inside it: the column of that name,
/// else the longest column name the key starts with before a dot, the rest split at dots.
fn resolve<'a>(
    columns: &'a [crate::schema::catalog::Column],
    key: &str,
) -> Option<(&'a crate::schema::catalog::Column, Vec<String>)> {
    if let Some(column) = columns.iter().find(|c| c.name == key) {
        return Some((column, Vec::new()));
    }
    columns
        .iter()
        .filter_map(|c| {
            let rest = key.strip_prefix(c.name.as_str())?.strip_prefix('.')?;
            Some((c, rest))
        })
        .max_by_key(|(c, _)| c.name.len())
        .map(|(c, rest)| {
            (
                c,
                rest.split('.').map(str::to_string).collect::<Vec<String>>(),
            )
        })
        .filter(|(_, path)| path.iter().all(|step| !step.is_empty()))
}

/// Whether a rule may reach to `path` inside a column of `type_name`.
fn json_path_fits(
    type_name: &str,
    path: &[String],
    rule: &Rule,
) -> std::result::Result<(), String> {
    if type_name != "json" && type_name != "jsonb" {
        return Err(format!(
            "a path reaches inside json and jsonb columns, and the column is {type_name}"
        ));
    }
    if !rule.in_client() && path.iter().any(|step| step == "*") {
        return Err(
            "the source sets one path at a time: a * is for the keyed rules, which pgcopy \
             applies"
                .into(),
        );
    }
    if let Rule::Noise(range) = rule {
        return Noisy::check("numeric", range)
            .map_err(|why| format!("{why} (inside JSON, noise moves numbers)"));
    }
    Ok(())
}

/// How the reader of `table` reads the masks `placed` on it: the source's expressions,
/// and pgcopy's rewrite of the fields the keyed rules mask.
fn reads(table: &TablePlan, placed: &[Placed]) -> Reads {
    let mut reads = Reads::default();
    for column in &table.columns {
        let masks: Vec<&Placed> = placed.iter().filter(|m| m.column == column.name).collect();
        if masks.is_empty() {
            continue;
        }
        let whole = masks.iter().find(|m| m.path.is_empty());
        let inside = Placed::json_expr(&column.name, &column.type_name, &masks);
        if let Some(expr) = whole.map(|m| m.source_expr(&column.type_name)).or(inside) {
            reads.source.push((column.name.clone(), expr));
        }
        if let Some(field) = keyed_field(&masks) {
            reads.rewrite.push((column.name.clone(), Arc::new(field)));
        }
    }
    reads
}

/// pgcopy's rewrite of the keyed rules among one column's `masks`; `None` when none is.
fn keyed_field(masks: &[&Placed]) -> Option<KeyedField> {
    let mut key = None;
    let mut whole = None;
    let mut targets = Vec::new();
    for mask in masks {
        let Rule::Keyed(keyed) = mask.rule else {
            continue;
        };
        key = mask.key.clone();
        if mask.path.is_empty() {
            whole = Some(FieldRules::Whole {
                keyed,
                base_type: mask.base_type.clone(),
                target: mask.target(),
            });
        } else {
            targets.push((mask.path.clone(), keyed, mask.target()));
        }
    }
    let rules = whole.or_else(|| (!targets.is_empty()).then_some(FieldRules::Json(targets)))?;
    Some(KeyedField::new(key?.bytes(), rules))
}

/// The keyed masks that cannot make the type their column travels as, which is the
/// destination's where the two sides' types differ: known once the destination is read.
pub(crate) fn wire_refusals(plan: &Plan) -> Vec<String> {
    let mut refusals = Vec::new();
    for table in &plan.tables {
        for (name, field) in &table.reads.rewrite {
            let Some(column) = table.columns.iter().find(|c| &c.name == name) else {
                continue;
            };
            let wire = table.wire_type(column);
            let Err(unfit) = field.bind(wire) else {
                continue;
            };
            for Unfit { rule, target, why } in unfit {
                refusals.push(format!(
                    "the rule {rule} cannot produce {}.{target} as the destination takes it, \
                     {wire}: {why}",
                    table.name,
                ));
            }
        }
    }
    refusals
}
