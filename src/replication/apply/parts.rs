//! A change of rows taken apart for its statement: its table, its kind, the new values and
//! the values that find the row; the columns that find it; the values as text parameters;
//! and the row's key in words, for messages.

use crate::replication::decode::{Message, Old, Relation, Value};
use anyhow::{bail, Result};

/// A change of rows, taken apart: its table, its kind (`I`, `U`, `D`; `u` and `d` when
/// the row is found by the whole old row, `REPLICA IDENTITY FULL`), the new values, the
/// values that find the row, and the old row or key as the stream sent it.
pub(crate) struct Parts<'m> {
    pub(crate) relation: u32,
    pub(crate) kind: u8,
    pub(crate) new: Option<&'m [Value]>,
    pub(crate) by: Option<&'m [Value]>,
    pub(crate) old: Option<&'m Old>,
}

pub(crate) fn parts(message: &Message) -> Option<Parts<'_>> {
    let (relation, kind, new, by, old) = match message {
        Message::Insert { relation, new } => (relation, b'I', Some(new), None, None),
        Message::Update { relation, old, new } => match old {
            Some(o @ Old::Key(values)) => (relation, b'U', Some(new), Some(values), Some(o)),
            Some(o @ Old::Row(values)) => (relation, b'u', Some(new), Some(values), Some(o)),
            // The key did not change: the new row finds it.
            None => (relation, b'U', Some(new), Some(new), None),
        },
        Message::Delete { relation, old } => match old {
            Old::Key(values) => (relation, b'D', None, Some(values), Some(old)),
            Old::Row(values) => (relation, b'd', None, Some(values), Some(old)),
        },
        _ => return None,
    };
    Some(Parts {
        relation: *relation,
        kind,
        new: new.map(Vec::as_slice),
        by: by.map(Vec::as_slice),
        old,
    })
}

/// The values of the columns marked in `which`, as text parameters.
pub(crate) fn present<'v>(values: &'v [Value], which: &[bool]) -> Result<Vec<Option<&'v [u8]>>> {
    let mut params = Vec::new();
    for (value, wanted) in values.iter().zip(which) {
        if !wanted {
            continue;
        }
        params.push(match value {
            Value::Null => None,
            Value::Text(bytes) => Some(bytes.as_slice()),
            Value::Unchanged => bail!("the stream left out a value pgcopy needs"),
            Value::Binary(_) => bail!("the stream sent a value in binary, which was not asked for"),
        });
    }
    Ok(params)
}

/// Which columns find the row: the replica identity's (marked in the table's description),
/// or with `REPLICA IDENTITY FULL` every column whose old value was sent.
pub(crate) fn match_columns(relation: &Relation, by: &[Value], full: bool) -> Vec<bool> {
    relation
        .columns
        .iter()
        .zip(by)
        .map(|(column, value)| {
            if full {
                !matches!(value, Value::Unchanged)
            } else {
                column.key
            }
        })
        .collect()
}

/// `(id)=(5)`, for messages.
pub(crate) fn key_text(relation: &Relation, by: &[Value], matched: &[bool]) -> String {
    let mut names = Vec::new();
    let mut values = Vec::new();
    for ((column, value), wanted) in relation.columns.iter().zip(by).zip(matched) {
        if *wanted {
            names.push(column.name.as_str());
            values.push(match value {
                Value::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "NULL".into(),
            });
        }
    }
    format!("({})=({})", names.join(", "), values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_text_values_and_nulls_and_refuses_a_missing_one() {
        let values = [Value::Text(b"1".to_vec()), Value::Null, Value::Unchanged];
        let params = present(&values, &[true, true, false]).unwrap();
        assert_eq!(params, vec![Some(&b"1"[..]), None]);
        assert!(present(&values, &[true, true, true]).is_err());
    }
}
