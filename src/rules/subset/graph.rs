//! The closure's graph: the copied tables, the keys between them, the tables with a rule,
//! their followers and the cycles among those; what each table's subset is made of.

use crate::pg::sql::{quote_ident, quote_literal, TableName};
use crate::plan::reading::{Subset, ROW};
use crate::rules::subset::edges::Edge;
use std::collections::{BTreeMap, BTreeSet};

/// The copied tables and the foreign keys between them, and what the rules make of them.
pub(super) struct Graph {
    /// Each copied table (as a partitioned one where it is a partition), and whether it is
    /// partitioned.
    pub(super) tables: BTreeMap<TableName, bool>,
    /// The leaf partitions of each partitioned one, on the source.
    pub(super) leaves: BTreeMap<TableName, Vec<TableName>>,
    pub(super) edges: Vec<Edge>,
    /// The tables with a rule: the query of the rows it starts from, and its words.
    pub(super) seeds: BTreeMap<TableName, (String, String)>,
    /// The tables a rule has, and those that reference one of them, transitively.
    pub(super) restricted: BTreeSet<TableName>,
    /// For a table with a rule, the tables whose rows that reference its kept rows the
    /// rules keep too (`children`).
    pub(super) children: BTreeMap<TableName, Vec<TableName>>,
    /// Each follower's group: the followers that reference each other in a cycle with it.
    pub(super) group: BTreeMap<TableName, usize>,
    /// The groups with a cycle (a self-reference is one).
    pub(super) cyclic: BTreeSet<usize>,
}

/// What one query being written needs: fresh aliases, the tables whose pulled rows it
/// tests.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) aliases: usize,
    pub(super) pulled: BTreeSet<TableName>,
}

impl Writer {
    pub(super) fn alias(&mut self, stem: &str) -> String {
        self.aliases += 1;
        format!("pgcopy_{stem}{}", self.aliases)
    }
}

impl Graph {
    pub(super) fn new(
        tables: BTreeMap<TableName, bool>,
        leaves: BTreeMap<TableName, Vec<TableName>>,
        edges: Vec<Edge>,
        seeds: BTreeMap<TableName, (String, String)>,
        children: BTreeMap<TableName, Vec<TableName>>,
    ) -> Graph {
        let mut restricted: BTreeSet<TableName> = seeds.keys().cloned().collect();
        loop {
            let more: Vec<TableName> = edges
                .iter()
                .filter(|e| restricted.contains(&e.parent) && !restricted.contains(&e.child))
                .map(|e| e.child.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            restricted.extend(more);
        }
        // Followers in one group reach each other through followers' keys.
        let followers: Vec<&TableName> = restricted
            .iter()
            .filter(|t| !seeds.contains_key(*t))
            .collect();
        let reach = |from: &TableName| -> BTreeSet<TableName> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(t) = todo.pop() {
                for e in edges.iter().filter(|e| e.child == t) {
                    if followers.contains(&&e.parent) && seen.insert(e.parent.clone()) {
                        todo.push(e.parent.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&TableName, BTreeSet<TableName>> =
            followers.iter().map(|t| (*t, reach(t))).collect();
        let mut group = BTreeMap::new();
        let mut cyclic = BTreeSet::new();
        for (n, table) in followers.iter().enumerate() {
            if group.contains_key(*table) {
                continue;
            }
            for other in &followers {
                let same = *other == *table
                    || (reaches[table].contains(*other) && reaches[other].contains(*table));
                if same {
                    group.insert((*other).clone(), n);
                }
            }
            if reaches[table].contains(*table) {
                cyclic.insert(n);
            }
        }
        Graph {
            tables,
            leaves,
            edges,
            seeds,
            restricted,
            children,
            group,
            cyclic,
        }
    }

    pub(super) fn from(&self, table: &TableName) -> String {
        from(table, self.tables[table])
    }

    /// The rows of `table` (a restricted one) the copy keeps.
    pub(super) fn subset(&self, table: &TableName) -> Subset {
        let mut writer = Writer::default();
        let (joins, condition) = self.kept_rows(table, ROW, &mut writer);
        Subset {
            with: self.pull(&writer.pulled),
            joins,
            condition,
            describe: match self.seeds.get(table) {
                Some((_, words)) => format!("{words}; and the rows kept rows reference"),
                None => {
                    let parents: BTreeSet<String> = self
                        .edges
                        .iter()
                        .filter(|e| &e.child == table && self.restricted.contains(&e.parent))
                        .map(|e| e.parent.to_string())
                        .collect();
                    format!(
                        "the rows whose references to {} are kept",
                        parents.into_iter().collect::<Vec<_>>().join(", ")
                    )
                }
            },
            counted: None,
            // The closure reads only restricted tables.
            reads: self
                .restricted
                .iter()
                .filter(|t| *t != table)
                .map(|t| self.from(t))
                .collect(),
        }
    }

    /// Whether the rules ask for the rows of the edge's child that reference kept rows of
    /// its parent.
    pub(super) fn asks_children(&self, edge: &Edge) -> bool {
        self.children
            .get(&edge.parent)
            .is_some_and(|children| children.contains(&edge.child))
    }

    /// `(p.k…) = (c.fk…)`.
    pub(super) fn joins(&self, edge: &Edge, child: &str, parent: &str) -> String {
        let side = |alias: &str, columns: &[String]| {
            columns
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "({}) = ({})",
            side(parent, &edge.referenced),
            side(child, &edge.columns)
        )
    }

    /// That `alias` of `table` is the row `step` names.
    pub(super) fn at_row(&self, table: &TableName, alias: &str, step: &str) -> String {
        let tag = if self.tables[table] {
            String::new()
        } else {
            format!(
                "{step}.rel = {}::regclass AND ",
                quote_literal(&table.quoted())
            )
        };
        format!(
            "{tag}{alias}.tableoid = {step}.rel AND {alias}.ctid = {}",
            tid_of(&format!("{step}.id"))
        )
    }
}

/// `FROM` of a table, its partitions included where it is partitioned, else alone.
pub(super) fn from(table: &TableName, partitioned: bool) -> String {
    if partitioned {
        table.quoted()
    } else {
        format!("ONLY {}", table.quoted())
    }
}

/// A row's `ctid` as a number (`tid` cannot be hashed before PostgreSQL 14).
pub(super) fn row_id(alias: &str) -> String {
    let ctid = if alias.is_empty() {
        "ctid".to_string()
    } else {
        format!("{alias}.ctid")
    };
    format!("(({ctid}::text::point)[0]::int8 * 65536 + ({ctid}::text::point)[1]::int8)")
}

/// The `ctid` of a number `row_id` made.
pub(super) fn tid_of(id: &str) -> String {
    format!("format('(%s,%s)', {id} / 65536, {id} % 65536)::tid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> TableName {
        TableName::new("public", n)
    }

    fn edge(child: &str, column: &str, parent: &str) -> Edge {
        Edge {
            child: name(child),
            columns: vec![column.into()],
            parent: name(parent),
            referenced: vec!["id".into()],
        }
    }

    #[test]
    fn followers_and_their_groups() {
        let tables = ["customer", "rental", "payment", "comment", "store", "film"]
            .iter()
            .map(|t| (name(t), false))
            .collect();
        let edges = vec![
            edge("rental", "customer_id", "customer"),
            edge("rental", "store_id", "store"),
            edge("customer", "referred_by", "customer"),
            edge("payment", "rental_id", "rental"),
            edge("comment", "rental_id", "rental"),
            edge("comment", "reply_to", "comment"),
            edge("store", "film_id", "film"),
        ];
        let seeds = BTreeMap::from([(name("rental"), ("SEED".to_string(), String::new()))]);
        let graph = Graph::new(tables, BTreeMap::new(), edges, seeds, BTreeMap::new());
        let restricted: Vec<&str> = graph.restricted.iter().map(|t| t.name.as_str()).collect();
        // The customer table is referenced by the subset, not referencing it: it comes whole.
        assert_eq!(restricted, ["comment", "payment", "rental"]);
        assert!(graph.cyclic.contains(&graph.group[&name("comment")]));
        assert!(!graph.cyclic.contains(&graph.group[&name("payment")]));
        let payment = graph.subset(&name("payment"));
        assert!(payment.with.starts_with("WITH RECURSIVE pgcopy_pull"));
        // Outside a cycle, a follower is joined to its parents' kept keys.
        assert!(
            payment.joins.starts_with(" LEFT JOIN (SELECT DISTINCT"),
            "{}",
            payment.joins
        );
        assert!(
            payment.condition.contains("IS NOT NULL"),
            "{}",
            payment.condition
        );
        let comment = graph.subset(&name("comment"));
        assert!(comment.condition.contains("WITH RECURSIVE pgcopy_up"));
        // Rows are pulled only into restricted tables: the edge to store is not walked.
        assert!(!graph.subset(&name("rental")).with.contains("store"));
    }
}
