//! The verification as the user sees it: a table of source and destination rows with a
//! verdict per table, the same in `--json`, and the exit code it stands for.

use crate::exit::Exit;
use crate::output::format::write_table;
use crate::transfer::compare::{Check, Digest};
use serde_json::json;
use std::io::Write;

/// 0 when every table matches, else `Exit::VerifyMismatch`.
pub(crate) fn exit_code(checks: &[Check]) -> Exit {
    if checks.iter().all(Check::matches) {
        Exit::Success
    } else {
        Exit::VerifyMismatch
    }
}

/// The verification as a table.
pub(crate) fn write_checks(out: &mut impl Write, checks: &[&Check]) -> std::io::Result<()> {
    let rows_of = |d: &Result<Digest, String>| match d {
        Ok(d) => d.rows.to_string(),
        Err(_) => "?".into(),
    };
    let mut rows = vec![vec![
        "table".to_string(),
        "source rows".into(),
        "dest rows".into(),
        "verdict".into(),
    ]];
    for check in checks {
        rows.push(vec![
            check.table.to_string(),
            rows_of(&check.source),
            rows_of(&check.dest),
            check.verdict(),
        ]);
    }
    write_table(out, "lrrl", &rows)
}

pub(crate) fn checks_json(checks: &[Check]) -> Vec<serde_json::Value> {
    let side = |d: &Result<Digest, String>| match d {
        Ok(d) => json!({ "rows": d.rows, "checksum": d.checksum }),
        Err(err) => json!({ "error": err }),
    };
    checks
        .iter()
        .map(|c| {
            json!({
                "schema": c.table.schema,
                "table": c.table.name,
                "match": c.matches(),
                "verdict": c.verdict(),
                "not_checked": c.unchecked,
                "source": side(&c.source),
                "destination": side(&c.dest),
            })
        })
        .collect()
}
