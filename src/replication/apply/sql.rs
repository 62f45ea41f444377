//! The statements the applier runs for the source's changes of rows, as text. A statement
//! is prepared once per shape: a table, a kind of change, which columns it sets, which find
//! the row and which guard it; a run of inserts may go as one `COPY` instead.
//!
//! Identity columns `GENERATED ALWAYS` take the source's values as sent: inserts say
//! `OVERRIDING SYSTEM VALUE`; updates leave them alone where unchanged (the server refuses
//! any value there but `DEFAULT`), compare them where the stream does not say whether they
//! changed, and set them, with the column made `BY DEFAULT` for that statement, where it
//! says they did (`UPDATE … SET id = DEFAULT` on the source).
//!
//! A `REPLICA IDENTITY FULL` row is found by all its old values. Rows can be equal by `=`
//! without being the same (`0` and `-0`, `1.0` and `1.00`, two boxes of one area): among
//! the equal rows, one whose every value has the text form of the value the source sent is
//! taken, both forms written by the destination in one session, so its settings do not
//! matter; an equal one only where no row is identical. (The record image comparison `*=`
//! cannot be used here: a row of the columns the stream sent is not a stored record, and
//! the parser compares two row constructors column by column.)

use super::table::Target;
use crate::pg::sql::quote_ident;
use crate::replication::decode::{Old, Value};
use anyhow::{bail, Result};
use std::fmt::Write as _;

/// The statements prepared so far are told apart by their shape: the table (and the
/// generation of its description), the kind, which columns they set, match and guard, and
/// the rows of a multi-row insert (1 for the others).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) relation: u32,
    pub(crate) generation: u32,
    /// `I`, `U`, `D`; `u` and `d` for a row found by its whole old row.
    pub(crate) kind: u8,
    /// The columns an insert or update sets, from the new row.
    pub(crate) set: Vec<bool>,
    /// The columns that find the row, from the old row (or the new one, where the key
    /// kept its value).
    pub(crate) matched: Vec<bool>,
    /// Identity columns `GENERATED ALWAYS` an update does not set, and of which the stream
    /// does not say whether they changed: the row must still have the new value.
    pub(crate) guard: Vec<bool>,
    pub(crate) rows: usize,
}

impl Shape {
    /// The identity columns `GENERATED ALWAYS` this update sets: made `BY DEFAULT` for it.
    pub(crate) fn overridden<'t>(&self, target: &'t Target) -> Vec<&'t str> {
        if !matches!(self.kind, b'U' | b'u') {
            return Vec::new();
        }
        target
            .relation
            .columns
            .iter()
            .zip(&target.columns)
            .zip(&self.set)
            .filter(|((_, dest), set)| dest.always && **set)
            .map(|((column, _), _)| column.name.as_str())
            .collect()
    }
}

/// Which columns an update sets and which it guards, from its new values and the old ones
/// where the stream sent them (`old`: the whole old row, or the old key with the other
/// columns unknown).
pub(crate) fn update_columns(
    target: &Target,
    new: &[Value],
    old: Option<&Old>,
) -> (Vec<bool>, Vec<bool>) {
    let mut set = Vec::with_capacity(new.len());
    let mut guard = Vec::with_capacity(new.len());
    for (i, (value, dest)) in new.iter().zip(&target.columns).enumerate() {
        let sent = !matches!(value, Value::Unchanged);
        if !dest.always || !sent {
            set.push(sent);
            guard.push(false);
            continue;
        }
        let before = match old {
            Some(Old::Row(values)) => values.get(i),
            Some(Old::Key(values)) if target.relation.columns[i].key => values.get(i),
            // No old key: the key kept its values, and the new row has them.
            None if target.relation.columns[i].key => Some(value),
            _ => None,
        };
        match before {
            Some(before) if !matches!(before, Value::Unchanged) => {
                set.push(before != value);
                guard.push(false);
            }
            _ => {
                set.push(false);
                guard.push(true);
            }
        }
    }
    (set, guard)
}

/// The statement of a shape, and its parameters' types: the set columns' values, then the
/// matched columns', then the guarded columns', each in the table's column order.
pub(crate) fn statement_sql(target: &Target, shape: &Shape) -> Result<(String, Vec<u32>)> {
    let columns = &target.relation.columns;
    let table = target.name.quoted();
    let mut types = Vec::new();
    let mut next = |i: usize| {
        types.push(target.columns[i].type_oid);
        format!("${}", types.len())
    };
    let marked = |which: &[bool]| -> Vec<usize> {
        which
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| i)
            .collect()
    };
    let set = marked(&shape.set);
    let mut sql = String::new();
    match shape.kind {
        b'I' => {
            let names: Vec<String> = set.iter().map(|&i| quote_ident(&columns[i].name)).collect();
            let rows: Vec<String> = (0..shape.rows.max(1))
                .map(|_| {
                    let values: Vec<String> = set.iter().map(|&i| next(i)).collect();
                    format!("({})", values.join(", "))
                })
                .collect();
            let overriding = if set.iter().any(|&i| target.columns[i].always) {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            write!(
                sql,
                "INSERT INTO {table} ({}){overriding} VALUES {}",
                names.join(", "),
                rows.join(", ")
            )?;
        }
        kind @ (b'U' | b'u' | b'D' | b'd') => {
            let assignments: Vec<String> = set
                .iter()
                .map(|&i| format!("{} = {}", quote_ident(&columns[i].name), next(i)))
                .collect();
            let full = kind == b'u' || kind == b'd';
            let matched = marked(&shape.matched);
            if matched.is_empty() {
                bail!("{table} has no columns to find a changed row by");
            }
            let mut conditions = Vec::new();
            let mut old = Vec::new();
            let mut params = Vec::new();
            for &i in &matched {
                let name = quote_ident(&columns[i].name);
                let param = next(i);
                conditions.push(match (full, target.columns[i].by_text) {
                    (false, _) => format!("{name} = {param}"),
                    (true, false) => format!("{name} IS NOT DISTINCT FROM {param}"),
                    (true, true) => format!("{name}::text IS NOT DISTINCT FROM {param}::text"),
                });
                old.push(name);
                params.push(param);
            }
            for i in marked(&shape.guard) {
                let name = quote_ident(&columns[i].name);
                conditions.push(format!("{name} IS NOT DISTINCT FROM {}", next(i)));
            }
            let mut condition = conditions.join(" AND ");
            if full {
                // Of the rows equal to the old one (twins), one with its very bytes.
                condition = format!(
                    "ctid = (SELECT ctid FROM {table} WHERE {condition} \
                     ORDER BY ({}) DESC LIMIT 1)",
                    old.iter()
                        .zip(&params)
                        .map(|(name, param)| {
                            format!("{name}::text IS NOT DISTINCT FROM {param}::text")
                        })
                        .collect::<Vec<_>>()
                        .join(" AND ")
                );
            }
            if kind == b'U' || kind == b'u' {
                write!(
                    sql,
                    "UPDATE {table} SET {} WHERE {condition}",
                    assignments.join(", ")
                )?;
            } else {
                write!(sql, "DELETE FROM {table} WHERE {condition}")?;
            }
        }
        other => bail!("no statement for changes of kind {}", other as char),
    }
    Ok((sql, types))
}

/// `COPY … FROM STDIN` into the table, of the columns the source sends: how a run of
/// inserts goes where nothing on the destination sees the difference from `INSERT` (no
/// rule, which `COPY` ignores; no trigger that fires). Identity columns `GENERATED ALWAYS`
/// take the values given, as `OVERRIDING SYSTEM VALUE` makes an insert take them.
pub(crate) fn copy_sql(target: &Target) -> String {
    let columns: Vec<String> = target
        .relation
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    format!(
        "COPY {} ({}) FROM STDIN",
        target.name.quoted(),
        columns.join(", ")
    )
}

/// Rows in `COPY`'s text format: the values as the source's output functions wrote them,
/// which the destination's input functions read, as an insert's text parameters are read.
pub(crate) fn copy_rows<'r>(rows: impl IntoIterator<Item = &'r Vec<Value>>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match value {
                Value::Null => out.extend_from_slice(b"\\N"),
                Value::Text(bytes) => {
                    for &b in bytes {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            _ => out.push(b),
                        }
                    }
                }
                Value::Unchanged => bail!("the stream left out a value of an inserted row"),
                Value::Binary(_) => {
                    bail!("the stream sent a value in binary, which was not asked for")
                }
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::sql::TableName;
    use crate::replication::apply::table::DestColumn;
    use crate::replication::decode::{Column, Relation};

    fn column(name: &str, key: bool) -> Column {
        Column {
            key,
            name: name.into(),
            type_oid: 23,
            type_mod: -1,
        }
    }

    fn shape(kind: u8, set: &[bool], matched: &[bool]) -> Shape {
        Shape {
            relation: 1,
            generation: 0,
            kind,
            set: set.to_vec(),
            matched: matched.to_vec(),
            guard: vec![false; set.len().max(matched.len())],
            rows: 1,
        }
    }

    fn target(columns: Vec<Column>, dest: Vec<DestColumn>) -> Target {
        Target {
            name: TableName::new("public", "t"),
            relation: Relation {
                oid: 1,
                namespace: "public".into(),
                name: "t".into(),
                replica_identity: b'f',
                columns,
            },
            columns: dest,
        }
    }

    fn int(always: bool) -> DestColumn {
        DestColumn {
            type_oid: 23,
            by_text: false,
            always,
        }
    }

    #[test]
    fn writes_a_statement_for_each_shape() {
        let columns = vec![column("id", true), column("b", false), column("c", false)];
        let table = target(columns, vec![int(false), int(false), int(false)]);
        let sql = |s| statement_sql(&table, &s).unwrap().0;
        assert_eq!(
            sql(shape(b'I', &[true, true, true], &[])),
            r#"INSERT INTO "public"."t" ("id", "b", "c") VALUES ($1, $2, $3)"#
        );
        // An unchanged TOASTed value is left out of the update, not set to NULL.
        assert_eq!(
            sql(shape(b'U', &[true, true, false], &[true, false, false])),
            r#"UPDATE "public"."t" SET "id" = $1, "b" = $2 WHERE "id" = $3"#
        );
        assert_eq!(
            sql(shape(b'D', &[], &[true, false, false])),
            r#"DELETE FROM "public"."t" WHERE "id" = $1"#
        );
        // Of twins, the one with the old row's bytes.
        assert_eq!(
            sql(shape(b'd', &[], &[true, true, true])),
            r#"DELETE FROM "public"."t" WHERE ctid = (SELECT ctid FROM "public"."t" WHERE "id" IS NOT DISTINCT FROM $1 AND "b" IS NOT DISTINCT FROM $2 AND "c" IS NOT DISTINCT FROM $3 ORDER BY ("id"::text IS NOT DISTINCT FROM $1::text AND "b"::text IS NOT DISTINCT FROM $2::text AND "c"::text IS NOT DISTINCT FROM $3::text) DESC LIMIT 1)"#
        );
        assert!(statement_sql(&table, &shape(b'D', &[], &[false, false, false])).is_err());
        // A run of inserts, several rows to a statement.
        let three = Shape {
            rows: 3,
            ..shape(b'I', &[true, true, true], &[])
        };
        assert_eq!(
            sql(three),
            r#"INSERT INTO "public"."t" ("id", "b", "c") VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)"#
        );
        // A column whose type has no `=` (json, point) finds the row by its text.
        let mut doc = int(false);
        doc.by_text = true;
        doc.type_oid = 114;
        let table = target(
            vec![column("id", false), column("doc", false)],
            vec![int(false), doc],
        );
        let (sql, types) =
            statement_sql(&table, &shape(b'u', &[true, true], &[true, true])).unwrap();
        assert_eq!(
            sql,
            r#"UPDATE "public"."t" SET "id" = $1, "doc" = $2 WHERE ctid = (SELECT ctid FROM "public"."t" WHERE "id" IS NOT DISTINCT FROM $3 AND "doc"::text IS NOT DISTINCT FROM $4::text ORDER BY ("id"::text IS NOT DISTINCT FROM $3::text AND "doc"::text IS NOT DISTINCT FROM $4::text) DESC LIMIT 1)"#
        );
        assert_eq!(types, vec![23, 114, 23, 114]);
    }

    #[test]
    fn takes_identity_columns_generated_always_as_the_source_sent_them() {
        let columns = vec![column("id", true), column("seq", false), column("v", false)];
        let table = target(columns, vec![int(true), int(true), int(false)]);
        let (sql, _) = statement_sql(&table, &shape(b'I', &[true, true, true], &[])).unwrap();
        assert_eq!(
            sql,
            r#"INSERT INTO "public"."t" ("id", "seq", "v") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3)"#
        );
        let text = |s: &str| Value::Text(s.as_bytes().to_vec());
        let new = [text("1"), text("7"), text("x")];
        // The key kept its value; of `seq` the stream says nothing: compared, not set.
        let (set, guard) = update_columns(&table, &new, None);
        assert_eq!(
            (set.clone(), guard.clone()),
            (vec![false, false, true], vec![false, true, false])
        );
        let update = Shape {
            guard,
            ..shape(b'U', &set, &[true, false, false])
        };
        assert_eq!(
            statement_sql(&table, &update).unwrap().0,
            r#"UPDATE "public"."t" SET "v" = $1 WHERE "id" = $2 AND "seq" IS NOT DISTINCT FROM $3"#
        );
        assert!(update.overridden(&table).is_empty());
        // The whole old row: `seq` changed (set to DEFAULT on the source), so it is set.
        let old = Old::Row(vec![text("1"), text("6"), text("x")]);
        let (set, guard) = update_columns(&table, &new, Some(&old));
        assert_eq!(
            (set.clone(), guard),
            (vec![false, true, true], vec![false; 3])
        );
        assert_eq!(
            shape(b'u', &set, &[true; 3]).overridden(&table),
            vec!["seq"]
        );
    }

    #[test]
    fn writes_rows_in_copys_text_format() {
        let text = |s: &str| Value::Text(s.as_bytes().to_vec());
        let rows = vec![
            vec![text("1"), text("a\tb\\c\nd\re"), Value::Null],
            vec![text("2"), text(""), text("\\N")],
        ];
        assert_eq!(
            copy_rows(&rows).unwrap(),
            b"1\ta\\tb\\\\c\\nd\\re\t\\N\n2\t\t\\\\N\n".to_vec()
        );
        assert!(copy_rows(&[vec![Value::Unchanged]]).is_err());
        let table = target(
            vec![column("id", true), column("v", false)],
            vec![int(true), int(false)],
        );
        assert_eq!(
            copy_sql(&table),
            r#"COPY "public"."t" ("id", "v") FROM STDIN"#
        );
    }
}
