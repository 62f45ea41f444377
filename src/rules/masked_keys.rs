//! Masks and the foreign keys between masked columns: masked keys must still join. A rule
//! on a referenced column follows to every column that references it (a key the source
//! declares, on a partition too, or one the rules declare), unless the rules give that
//! column a rule of its own; then, for every pair of a referencing and a referenced
//! column, the masked values must be able to be equal, else the copy is refused while
//! planning, naming both columns: the same rule on both (or `null` on the referencing
//! side, a reference to nothing), and for the keyed rules the same type made on both sides
//! (an `integer` and a `bigint` are permuted differently; a `varchar(12)` takes 12 of the
//! hash's hex digits, a `text` all of them).

use crate::pg::sql::{display_ident, TableName};
use crate::plan::Plan;
use crate::rules::masks::{MaskRule, Rule};
use crate::rules::rewrite::values::Kind;
use crate::rules::subset::Edge;

/// What following the keys did to the rules' masks.
pub(crate) struct Followed {
    /// The masks, those that followed a key added.
    pub(crate) masks: Vec<MaskRule>,
    /// Each mask that followed a key, in words, for the log and the dry run.
    pub(crate) notes: Vec<String>,
    pub(crate) refusals: Vec<String>,
}

/// The rules' masks with those that follow the keys `edges` added, and the pairs whose
/// masked values could not be equal refused.
pub(crate) fn follow(masks: &[MaskRule], edges: &[Edge], plan: &Plan) -> Followed {
    let mut masks = masks.to_vec();
    let mut notes = Vec::new();
    // A rule may follow a key to a column that is itself referenced: again, until nothing
    // more follows.
    loop {
        let mut added = Vec::new();
        for (edge, child, parent) in pairs(edges) {
            let (Some(from), None) = (
                find(&masks, &edge.parent, parent),
                find(&masks, &edge.child, child),
            ) else {
                continue;
            };
            if !follows(&from.rule)
                || added
                    .iter()
                    .any(|m: &MaskRule| m.table == edge.child && m.column == child)
            {
                continue;
            }
            notes.push(format!(
                "{}.{} references {}.{}, which is masked ({}): masked the same way, so that they \
                 still join",
                edge.child,
                display_ident(child),
                edge.parent,
                display_ident(parent),
                from.rule.describe()
            ));
            added.push(MaskRule {
                table: edge.child.clone(),
                column: child.to_string(),
                rule: from.rule.clone(),
            });
        }
        if added.is_empty() {
            break;
        }
        masks.extend(added);
    }
    let mut refusals = Vec::new();
    for (edge, child, parent) in pairs(edges) {
        // `keep` is a column left as it is, on purpose.
        let rule = |table, column| {
            find(&masks, table, column)
                .map(|m| &m.rule)
                .filter(|r| **r != Rule::Keep)
        };
        let referencing = rule(&edge.child, child);
        let referenced = rule(&edge.parent, parent);
        let why = match (referencing, referenced) {
            (None, None) | (Some(Rule::Null), _) => None,
            (None, Some(rule)) => Some(format!(
                "its rule {} cannot follow to the column that references it (make the \
                 referencing column's values yourself, or leave the key unmasked)",
                rule.describe()
            )),
            (Some(rule), None) => Some(format!(
                "only the referencing column is masked ({}): its values would match none; \
                 mask both with one rule",
                rule.describe()
            )),
            (Some(a), Some(b)) if a != b => Some(format!(
                "they are masked differently ({} and {}): give both one rule",
                a.describe(),
                b.describe()
            )),
            (Some(Rule::Sql(_) | Rule::Noise(_)), Some(_)) => Some(
                "sql and noise rules give each row its own value: a key masked so joins \
                 nothing; use a keyed rule (hash) on both"
                    .to_string(),
            ),
            (Some(Rule::Keyed(keyed)), Some(_)) => {
                let (a, b) = (
                    type_of(plan, &edge.child, child),
                    type_of(plan, &edge.parent, parent),
                );
                match (a, b) {
                    (Some(a), Some(b)) if Kind::of(a) != Kind::of(b) => Some(format!(
                        "{} makes different values of {a} and of {b}: give both columns one \
                         type",
                        keyed.name()
                    )),
                    _ => None,
                }
            }
            (Some(_), Some(_)) => None,
        };
        if let Some(why) = why {
            refusals.push(format!(
                "{}.{} references {}.{}, and masked they could no longer join: {why}",
                edge.child,
                display_ident(child),
                edge.parent,
                display_ident(parent)
            ));
        }
    }
    Followed {
        masks,
        notes,
        refusals,
    }
}

/// Every (key, referencing column, referenced column).
fn pairs(edges: &[Edge]) -> impl Iterator<Item = (&Edge, &str, &str)> {
    edges.iter().flat_map(|edge| {
        edge.columns
            .iter()
            .zip(&edge.referenced)
            .map(move |(child, parent)| (edge, child.as_str(), parent.as_str()))
    })
}

/// The rule for a column of a table (as keys name it: a partitioned table for its
/// partitions).
fn find<'m>(masks: &'m [MaskRule], table: &TableName, column: &str) -> Option<&'m MaskRule> {
    masks
        .iter()
        .find(|m| &m.table == table && m.column == column)
}

/// Whether a referenced column's rule may be given to the columns that reference it: those
/// that make the same value from the same value (or none at all).
fn follows(rule: &Rule) -> bool {
    matches!(rule, Rule::Keyed(_) | Rule::Null | Rule::Fixed(_))
}

/// A column's type as the source has it, in the planned table (or one of its partitions).
fn type_of<'p>(plan: &'p Plan, table: &TableName, column: &str) -> Option<&'p str> {
    plan.tables
        .iter()
        .filter(|t| &t.name == table || t.parent.as_ref() == Some(table))
        .flat_map(|t| t.columns.iter())
        .find(|c| c.name == column)
        .map(|c| c.type_name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::rewrite::values::Keyed;

    fn rule(table: &str, column: &str, rule: Rule) -> MaskRule {
        MaskRule {
            table: TableName::new("public", table),
            column: column.into(),
            rule,
        }
    }

    fn edge(child: &str, column: &str, parent: &str, referenced: &str) -> Edge {
        Edge {
            child: TableName::new("public", child),
            columns: vec![column.into()],
            parent: TableName::new("public", parent),
            referenced: vec![referenced.into()],
        }
    }

    #[test]
    fn a_keyed_rule_follows_down_chains_of_keys_unless_the_rules_say_otherwise() {
        let plan = Plan { tables: Vec::new() };
        let edges = [
            edge("rental", "customer_id", "customer", "id"),
            edge("payment", "customer_id", "rental", "customer_id"),
            edge("note", "customer_id", "customer", "id"),
        ];
        let masks = [
            rule("customer", "id", Rule::Keyed(Keyed::Hash)),
            rule("note", "customer_id", Rule::Keep),
        ];
        let followed = follow(&masks, &edges, &plan);
        let has = |table: &str, column: &str| {
            followed
                .masks
                .iter()
                .any(|m| m.table.name == table && m.column == column && m.rule == masks[0].rule)
        };
        assert!(has("rental", "customer_id") && has("payment", "customer_id"));
        assert_eq!(followed.notes.len(), 2);
        // Kept as it is by the rules: its references would match nothing.
        assert_eq!(followed.refusals.len(), 1, "{:?}", followed.refusals);
        assert!(followed.refusals[0].starts_with("public.note.customer_id references"));
    }
}
