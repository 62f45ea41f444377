//! Net changes: what a group of source transactions does to each row of a table, folded
//! into one change per row (pgbench's ten branch rows take thousands of updates a second;
//! the destination needs ten), so that the applier sends one statement per row and the
//! inserts many rows to a statement. The applier decides where (`apply::state::Folding`,
//! chosen in `apply::relations`): rows folded by key only where rows of different keys
//! cannot see each other (the key the only unique index, no trigger or rule that fires), so
//! that the net change of every row, in any order, leaves the table as the changes one by
//! one would; elsewhere only inserts, each under a number of its own.

use crate::replication::decode::Value;
use std::collections::HashMap;

/// One change of a row, found by its key.
pub(crate) enum Change {
    /// The new row's values.
    Insert(Vec<Value>),
    /// The row's new values; `Value::Unchanged` where the column keeps its value.
    Update(Vec<Value>),
    Delete,
}

/// What a row's changes come to.
#[derive(Debug, PartialEq, Eq)]
enum Net {
    /// A row that was not there.
    Insert(Vec<Value>),
    /// A row that was there, with these values (`Unchanged` where it keeps its own).
    Update(Vec<Value>),
    /// A row that was there and is gone.
    Delete,
    /// A row that was there, deleted, and one with the same key inserted.
    Replace(Vec<Value>),
}

/// The net changes of one table's rows, by key.
#[derive(Default)]
pub(crate) struct Rows {
    nets: HashMap<Vec<Value>, Net>,
}

/// The statements a table's net changes come to: deletes (by key), then updates (key and
/// new values), then inserts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    pub(crate) deletes: Vec<Vec<Value>>,
    pub(crate) updates: Vec<(Vec<Value>, Vec<Value>)>,
    pub(crate) inserts: Vec<Vec<Value>>,
}

impl Rows {
    /// Whether a change of `kind` (`I`, `U`, `D`) to the row `key` folds into what is
    /// staged: not when the row's staged state says the source could not have sent it (an
    /// insert of a row that is there); the caller then applies what is staged first, and
    /// the change as it is, which fails as it would have.
    pub(crate) fn accepts(&self, key: &[Value], kind: u8) -> bool {
        match (self.nets.get(key), kind) {
            (None, _) => true,
            (Some(Net::Delete), b'I') => true,
            (Some(Net::Delete), _) => false,
            (Some(_), b'I') => false,
            (Some(_), _) => true,
        }
    }

    /// Folds a change that `accepts` took.
    pub(crate) fn fold(&mut self, key: Vec<Value>, change: Change) {
        let net = match (self.nets.remove(&key), change) {
            (None, Change::Insert(values)) => Net::Insert(values),
            (None, Change::Update(values)) => Net::Update(values),
            (None, Change::Delete) => Net::Delete,
            (Some(Net::Insert(mut values)), Change::Update(later)) => {
                merge(&mut values, later);
                Net::Insert(values)
            }
            // Inserted and deleted in the same group: nothing for the destination.
            (Some(Net::Insert(_)), Change::Delete) => return,
            (Some(Net::Update(mut values)), Change::Update(later)) => {
                merge(&mut values, later);
                Net::Update(values)
            }
            (Some(Net::Update(_) | Net::Replace(_)), Change::Delete) => Net::Delete,
            (Some(Net::Delete), Change::Insert(values)) => Net::Replace(values),
            (Some(Net::Replace(mut values)), Change::Update(later)) => {
                merge(&mut values, later);
                Net::Replace(values)
            }
            (Some(net), _) => net,
        };
        self.nets.insert(key, net);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// How many rows are staged.
    pub(crate) fn len(&self) -> usize {
        self.nets.len()
    }

    pub(crate) fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        for (key, net) in self.nets.drain() {
            match net {
                Net::Insert(values) => drained.inserts.push(values),
                Net::Update(values) => drained.updates.push((key, values)),
                Net::Delete => drained.deletes.push(key),
                Net::Replace(values) => {
                    drained.deletes.push(key);
                    drained.inserts.push(values);
                }
            }
        }
        drained
    }
}

/// A later change's values over earlier ones: a column it leaves unchanged keeps the
/// earlier value (or stays unchanged).
fn merge(values: &mut [Value], later: Vec<Value>) {
    for (value, newer) in values.iter_mut().zip(later) {
        if newer != Value::Unchanged {
            *value = newer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    fn row(values: &[&str]) -> Vec<Value> {
        values
            .iter()
            .map(|v| match *v {
                "u" => Value::Unchanged,
                "null" => Value::Null,
                v => text(v),
            })
            .collect()
    }

    fn fold(rows: &mut Rows, key: &str, kind: u8, values: &[&str]) {
        let key = vec![text(key)];
        assert!(rows.accepts(&key, kind));
        let change = match kind {
            b'I' => Change::Insert(row(values)),
            b'U' => Change::Update(row(values)),
            _ => Change::Delete,
        };
        rows.fold(key, change);
    }

    #[test]
    fn folds_each_rows_changes_into_one() {
        let mut rows = Rows::default();
        // Updated many times: the last value of each column, TOAST left alone stays so.
        fold(&mut rows, "1", b'U', &["1", "10", "u"]);
        fold(&mut rows, "1", b'U', &["1", "11", "u"]);
        fold(&mut rows, "1", b'U', &["1", "u", "x"]);
        // Inserted, then updated: one insert of the updated row.
        fold(&mut rows, "2", b'I', &["2", "20", "a"]);
        fold(&mut rows, "2", b'U', &["2", "21", "u"]);
        // Inserted, then deleted: nothing.
        fold(&mut rows, "3", b'I', &["3", "30", "b"]);
        fold(&mut rows, "3", b'D', &[]);
        // Updated, then deleted: a delete.
        fold(&mut rows, "4", b'U', &["4", "40", "u"]);
        fold(&mut rows, "4", b'D', &[]);
        // Deleted, inserted again, updated: the old row goes, the new one comes.
        fold(&mut rows, "5", b'D', &[]);
        fold(&mut rows, "5", b'I', &["5", "50", "c"]);
        fold(&mut rows, "5", b'U', &["5", "51", "u"]);
        let mut drained = rows.drain();
        drained.deletes.sort_by_key(|k| format!("{k:?}"));
        drained.inserts.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            drained,
            Drained {
                deletes: vec![vec![text("4")], vec![text("5")]],
                updates: vec![(vec![text("1")], row(&["1", "11", "x"]))],
                inserts: vec![row(&["2", "21", "a"]), row(&["5", "51", "c"])],
            }
        );
        assert!(rows.is_empty());
    }

    #[test]
    fn refuses_what_the_source_cannot_have_sent() {
        let mut rows = Rows::default();
        fold(&mut rows, "1", b'I', &["1"]);
        assert!(!rows.accepts(&[text("1")], b'I'));
        fold(&mut rows, "2", b'D', &[]);
        assert!(!rows.accepts(&[text("2")], b'U'));
        assert!(!rows.accepts(&[text("2")], b'D'));
        assert!(rows.accepts(&[text("2")], b'I'));
        assert!(rows.accepts(&[text("3")], b'D'));
    }
}
