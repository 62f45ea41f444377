//! `require` inside JSON: personal data is as often a key of a `json` or `jsonb` column
//! (`{"email": …}`) as a column of its own. The keys a sample of each copied JSON column's
//! documents hold (nested ones as `column.key.key`, array elements as `*`) are matched
//! against the `require` patterns, the whole path (`"*.email"`) and the last key alone
//! (`"*email*"`, as a column name would be); one that matches and that no mask reaches (the
//! whole column, or a path leading to it) refuses the copy, naming the path to mask. A
//! pattern the column's own name matches is met as for any column: by a rule on it.

use crate::pg::sql::{display_ident, quote_ident};
use crate::plan::filter::Glob;
use crate::plan::Plan;
use crate::rules::Kept;
use anyhow::{Context, Result};
use postgres::Client;

/// Documents of a column looked at.
const SAMPLE: usize = 1000;

/// How deep inside a document keys are looked for.
const DEPTH: i32 = 8;

/// The refusals for JSON keys that `require` matches and no mask reaches, in the copied
/// tables' JSON columns, read in the copy's snapshot (`client`).
pub(crate) fn refusals(
    client: &mut Client,
    plan: &Plan,
    require: &[Glob],
    kept: &Kept,
) -> Result<Vec<String>> {
    let mut refusals = Vec::new();
    if require.is_empty() {
        return Ok(refusals);
    }
    for table in plan.tables.iter().filter(|t| t.on_source) {
        for column in table
            .columns
            .iter()
            .filter(|c| c.type_name == "json" || c.type_name == "jsonb")
        {
            // What masks or keeps a path of it (or all of it).
            let covered: Vec<&[String]> = table
                .masks
                .iter()
                .filter(|m| m.column == column.name)
                .map(|m| m.path.as_slice())
                .chain(
                    kept.iter()
                        .filter(|(t, c, _)| t == &table.name && c == &column.name)
                        .map(|(_, _, path)| path.as_slice()),
                )
                .collect();
            if covered.iter().any(|p| p.is_empty()) {
                continue;
            }
            for path in keys(client, &table.name.quoted(), &column.name)? {
                let steps: Vec<&str> = path.split('.').collect();
                let whole = format!("{}.{}", column.name, path).to_lowercase();
                let last = steps.last().copied().unwrap_or_default().to_lowercase();
                // A pattern that the column's own name matches is met as for any column.
                let own = column.name.to_lowercase();
                let Some(pattern) = require
                    .iter()
                    .find(|p| !p.matches(&own) && (p.matches(&whole) || p.matches(&last)))
                else {
                    continue;
                };
                if covered.iter().any(|p| reaches(p, &steps)) {
                    continue;
                }
                refusals.push(format!(
                    "{}.{}.{path} (a key inside the JSON column) matches the rules' require \
                     pattern {:?} but no rule masks it: add \"{}.{path}\" under [mask.\"{}\"]",
                    table.name,
                    display_ident(&column.name),
                    pattern.as_string(),
                    column.name,
                    table.name.dotted()
                ));
            }
        }
    }
    Ok(refusals)
}

/// Whether a mask's path leads to the key path `steps` (or past it): each of its steps the
/// key's, or `*`.
fn reaches(mask: &[String], steps: &[&str]) -> bool {
    mask.len() <= steps.len()
        && mask
            .iter()
            .zip(steps)
            .all(|(m, s)| m == "*" || m == s || *s == "*")
}

/// The key paths a sample of the column's documents hold, `a.b`, `a.*.c` for the elements
/// of an array. A column whose documents cannot be read as jsonb has none (a `json`
/// document jsonb refuses, with `\u0000` in it).
fn keys(client: &mut Client, table: &str, column: &str) -> Result<Vec<String>> {
    let column = quote_ident(column);
    let sql = format!(
        "WITH RECURSIVE walk(path, v, depth) AS (
             SELECT NULL::text, d.v, 0
               FROM (SELECT {column}::jsonb AS v FROM {table}
                      WHERE {column} IS NOT NULL LIMIT {SAMPLE}) AS d
           UNION ALL
             SELECT CASE WHEN w.path IS NULL THEN e.k ELSE w.path || '.' || e.k END, e.v,
                    w.depth + 1
               FROM walk AS w
              CROSS JOIN LATERAL (
                  SELECT key, value FROM jsonb_each(
                      CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v ELSE '{{}}' END)
                  UNION ALL
                  SELECT '*', value FROM jsonb_array_elements(
                      CASE WHEN jsonb_typeof(w.v) = 'array' THEN w.v ELSE '[]' END)
              ) AS e(k, v)
              WHERE w.depth < {DEPTH})
         SELECT DISTINCT path FROM walk WHERE path IS NOT NULL ORDER BY 1 LIMIT 10000"
    );
    client.batch_execute("SAVEPOINT pgcopy_json_keys")?;
    match client.query(&sql, &[]) {
        Ok(rows) => {
            client.batch_execute("RELEASE pgcopy_json_keys")?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        }
        Err(err) => {
            client
                .batch_execute("ROLLBACK TO pgcopy_json_keys")
                .context("after reading a JSON column's keys")?;
            log::warn!("could not read the keys of {table}.{column} for the rules' require: {err}");
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_path_reaches_the_keys_below_it() {
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert!(reaches(&path("user.email"), &["user", "email"]));
        assert!(reaches(&path("user"), &["user", "email"]));
        assert!(reaches(
            &path("contacts.*.email"),
            &["contacts", "*", "email"]
        ));
        assert!(reaches(&path("*.email"), &["user", "email"]));
        assert!(!reaches(&path("user.phone"), &["user", "email"]));
        assert!(!reaches(&path("user.email.x"), &["user", "email"]));
    }
}
