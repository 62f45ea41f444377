//! The closure's SQL: the pulled rows as one recursive query, and for each table the
//! condition that keeps its rows (the kept keys of its parents joined, or row by row up a
//! cycle), written for the source to compute inside the copy's snapshot.

use crate::pg::sql::{quote_ident, quote_literal, TableName};
use crate::rules::subset::edges::Edge;
use crate::rules::subset::graph::{row_id, tid_of, Graph, Writer};
use std::collections::BTreeSet;

impl Graph {
    /// Which rows of `table` (as `alias`) are kept, as sets: joins to add after its `FROM`,
    /// and a condition. A table with a rule: its pulled rows, found by their `ctid`. A
    /// follower outside a cycle: joined to the kept keys of what it references, each such
    /// set computed once (hash joins, which spill to disk where they must). A follower in
    /// a cycle: checked row by row (`kept`).
    pub(super) fn kept_rows(
        &self,
        table: &TableName,
        alias: &str,
        writer: &mut Writer,
    ) -> (String, String) {
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            return (
                String::new(),
                format!(
                    "({alias}.tableoid, {alias}.ctid) IN (SELECT rel, {} FROM pgcopy_pull)",
                    tid_of("id")
                ),
            );
        }
        if !self.restricted.contains(table) || self.cyclic.contains(&self.group[table]) {
            return (String::new(), self.kept(table, alias, writer));
        }
        let mut joins = String::new();
        let mut conditions = Vec::new();
        for edge in self
            .edges
            .iter()
            .filter(|e| &e.child == table && self.restricted.contains(&e.parent))
        {
            let k = writer.alias("k");
            let keys = self.kept_keys(&edge.parent, &edge.referenced, &k, writer);
            let theirs: Vec<String> = (0..edge.columns.len())
                .map(|i| format!("{k}.{k}_{i}"))
                .collect();
            let ours: Vec<String> = edge
                .columns
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect();
            joins.push_str(&format!(
                " LEFT JOIN ({keys}) AS {k} ON ({}) = ({})",
                theirs.join(", "),
                ours.join(", ")
            ));
            let mut either: Vec<String> = ours.iter().map(|c| format!("{c} IS NULL")).collect();
            either.push(format!("{k}.{k}_0 IS NOT NULL"));
            conditions.push(format!("({})", either.join(" OR ")));
        }
        if conditions.is_empty() {
            conditions.push("true".into());
        }
        (joins, conditions.join(" AND "))
    }

    /// A query of the distinct `columns` of the kept rows of `table`, named `{name}_0`, ….
    pub(super) fn kept_keys(
        &self,
        table: &TableName,
        columns: &[String],
        name: &str,
        writer: &mut Writer,
    ) -> String {
        let a = writer.alias("r");
        let list: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{a}.{} AS {name}_{i}", quote_ident(c)))
            .collect();
        let list = list.join(", ");
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            let step = writer.alias("w");
            return format!(
                "SELECT DISTINCT {list} FROM pgcopy_pull AS {step} JOIN {} AS {a} ON {}",
                self.from(table),
                self.at_row(table, &a, &step)
            );
        }
        let (joins, condition) = self.kept_rows(table, &a, writer);
        format!(
            "SELECT DISTINCT {list} FROM {} AS {a}{joins} WHERE {condition}",
            self.from(table)
        )
    }

    /// Whether the row `alias` of `table` is kept, tested row by row.
    pub(super) fn kept(&self, table: &TableName, alias: &str, writer: &mut Writer) -> String {
        if !self.restricted.contains(table) {
            return "true".into();
        }
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            return self.is_pulled(table, alias);
        }
        let group = self.group[table];
        if !self.cyclic.contains(&group) {
            return format!("NOT ({})", self.bad(table, alias, writer));
        }
        // In a cycle of followers, a row goes when one of the rows above it in the cycle
        // (itself included) references a dropped row outside it.
        let members: Vec<&TableName> = self
            .group
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(t, _)| t)
            .collect();
        let up = writer.alias("up");
        let step = writer.alias("w");
        let mut branches = Vec::new();
        for edge in self
            .edges
            .iter()
            .filter(|e| members.contains(&&e.child) && members.contains(&&e.parent))
        {
            let c = writer.alias("c");
            let p = writer.alias("p");
            branches.push(format!(
                "SELECT {p}.tableoid, {} FROM {} AS {c} JOIN {} AS {p} ON {} WHERE {}",
                row_id(&p),
                self.from(&edge.child),
                self.from(&edge.parent),
                self.joins(edge, &c, &p),
                self.at_row(&edge.child, &c, &step)
            ));
        }
        let found = writer.alias("w");
        let mut bad = Vec::new();
        for member in &members {
            let y = writer.alias("y");
            let why = self.bad(member, &y, writer);
            if why != "false" {
                bad.push(format!(
                    "EXISTS (SELECT 1 FROM {} AS {y} WHERE {} AND ({why}))",
                    self.from(member),
                    self.at_row(member, &y, &found)
                ));
            }
        }
        if bad.is_empty() {
            return "true".into();
        }
        format!(
            "NOT EXISTS (WITH RECURSIVE {up}(rel, id) AS (SELECT {alias}.tableoid, {} UNION \
             SELECT e.rel, e.id FROM {up} AS {step}, LATERAL ({}) AS e(rel, id)) SELECT 1 \
             FROM {up} AS {found} WHERE {})",
            row_id(alias),
            branches.join(" UNION ALL "),
            bad.join(" OR ")
        )
    }

    /// Whether the row `alias` of `table` is one of the pulled rows. One table's at a time,
    /// each an uncorrelated `IN` that the server hashes once; inside `IS TRUE`, so that it
    /// is not made a join, which the planner would run as a scan of the pulled rows for
    /// each row it tests.
    pub(super) fn is_pulled(&self, table: &TableName, alias: &str) -> String {
        let id = row_id(alias);
        let test = |leaf: &TableName| {
            format!(
                "{id} IN (SELECT id FROM pgcopy_pull WHERE rel = {}::regclass)",
                quote_literal(&leaf.quoted())
            )
        };
        match self.leaves.get(table) {
            None => format!("({}) IS TRUE", test(table)),
            Some(leaves) => {
                let whens: Vec<String> = leaves
                    .iter()
                    .map(|leaf| {
                        format!(
                            "WHEN {}::regclass THEN {}",
                            quote_literal(&leaf.quoted()),
                            test(leaf)
                        )
                    })
                    .collect();
                format!("(CASE {alias}.tableoid {} END) IS TRUE", whens.join(" "))
            }
        }
    }

    /// Whether the row `alias` of the follower `table` references a dropped row outside
    /// its group.
    pub(super) fn bad(&self, table: &TableName, alias: &str, writer: &mut Writer) -> String {
        let group = self.group.get(table);
        let mut reasons = Vec::new();
        for edge in self.edges.iter().filter(|e| {
            &e.child == table
                && self.restricted.contains(&e.parent)
                && (group.is_none() || self.group.get(&e.parent) != group)
        }) {
            let p = writer.alias("p");
            let not_null: Vec<String> = edge
                .columns
                .iter()
                .map(|c| format!("{alias}.{} IS NOT NULL", quote_ident(c)))
                .collect();
            let kept = self.kept(&edge.parent, &p, writer);
            reasons.push(format!(
                "({} AND NOT EXISTS (SELECT 1 FROM {} AS {p} WHERE {} AND {kept}))",
                not_null.join(" AND "),
                self.from(&edge.parent),
                self.joins(edge, alias, &p)
            ));
        }
        if reasons.is_empty() {
            "false".into()
        } else {
            reasons.join(" OR ")
        }
    }

    /// `WITH RECURSIVE pgcopy_pull(rel, id) AS (…)`: the rows the rules pick in the tables
    /// from which `needed` can be reached, and the rows they reference, recursively.
    pub(super) fn pull(&self, needed: &BTreeSet<TableName>) -> String {
        if needed.is_empty() {
            return String::new();
        }
        // Rows are pulled from children to parents among the restricted tables, and from
        // parents to the children the rules ask for: the tables whose pulled rows can
        // reach `needed`…
        let flows: Vec<(&TableName, &TableName, &Edge, bool)> = self
            .edges
            .iter()
            .filter(|e| self.restricted.contains(&e.child) && self.restricted.contains(&e.parent))
            .flat_map(|e| {
                let down = self
                    .asks_children(e)
                    .then_some((&e.parent, &e.child, e, true));
                std::iter::once((&e.child, &e.parent, e, false)).chain(down)
            })
            .collect();
        let spread = |mut set: BTreeSet<TableName>, forward: bool, within: &BTreeSet<TableName>| loop {
            let more: Vec<TableName> = flows
                .iter()
                .map(|(from, to, _, _)| if forward { (*from, *to) } else { (*to, *from) })
                .filter(|(from, to)| {
                    set.contains(*from) && within.contains(*to) && !set.contains(*to)
                })
                .map(|(_, to)| to.clone())
                .collect();
            if more.is_empty() {
                return set;
            }
            set.extend(more);
        };
        let sources = spread(needed.clone(), false, &self.restricted);
        // … and of those, the ones that can hold pulled rows: the rules' tables and the
        // tables their rows reach.
        let seeded = self
            .seeds
            .keys()
            .filter(|t| sources.contains(*t))
            .cloned()
            .collect();
        let sources = spread(seeded, true, &sources);
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .filter(|(t, _)| sources.contains(*t))
            .map(|(_, (sql, _))| format!("({sql})"))
            .collect();
        let mut writer = Writer::default();
        let step = "pgcopy_w";
        let branches: Vec<String> = flows
            .iter()
            .filter(|(from, to, _, _)| sources.contains(*from) && sources.contains(*to))
            .map(|(from, to, edge, _)| {
                let a = writer.alias("a");
                let b = writer.alias("b");
                let (c, p) = if edge.child == **from {
                    (&a, &b)
                } else {
                    (&b, &a)
                };
                format!(
                    "SELECT {b}.tableoid, {} FROM {} AS {a} JOIN {} AS {b} ON {} WHERE {}",
                    row_id(&b),
                    self.from(from),
                    self.from(to),
                    self.joins(edge, c, p),
                    self.at_row(from, &a, step)
                )
            })
            .collect();
        let walk = if branches.is_empty() {
            String::new()
        } else {
            format!(
                " UNION SELECT e.rel, e.id FROM pgcopy_pull AS {step}, LATERAL ({}) AS e(rel, id)",
                branches.join(" UNION ALL ")
            )
        };
        format!(
            "WITH RECURSIVE pgcopy_pull(rel, id) AS ({}{walk})",
            seeds.join(" UNION ALL ")
        )
    }
}
