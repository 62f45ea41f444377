//! Reading a rules file: its TOML, every table, rule and field checked for what it can
//! mean, before any database is asked.

use crate::pg::sql::TableName;
use crate::plan::filter::Glob;
use crate::rules::masks::{MaskRule, Rule};
use crate::rules::rewrite::values::Keyed;
use crate::rules::subset::{DeclaredKey, SubsetRule};
use crate::rules::{LargeObjects, Rules};
use anyhow::{bail, Context, Result};

/// Parses a rules file's text.
pub(super) fn parse(text: &str) -> Result<Rules> {
    let doc: toml::Table = text.parse().context("not valid TOML")?;
    let mut rules = Rules::default();
    for (key, value) in &doc {
        match key.as_str() {
            "require" => {
                for pattern in strings(value, "require must be a list of column name patterns")? {
                    rules.require.push(Glob::new(&pattern.to_lowercase()));
                }
            }
            "mask" => {
                let tables = value
                    .as_table()
                    .context("mask must be tables: [mask.\"schema.table\"]")?;
                for (name, columns) in tables {
                    let table = table_name(name)?;
                    let columns = columns
                        .as_table()
                        .with_context(|| format!("[mask.\"{name}\"] must map columns to rules"))?;
                    for (column, rule) in columns {
                        rules.masks.push(MaskRule {
                            table: table.clone(),
                            column: column.clone(),
                            rule: rule_of(rule)
                                .with_context(|| format!("the rule for {name}.{column}"))?,
                        });
                    }
                }
            }
            "subset" => {
                let tables = value
                    .as_table()
                    .context("subset must be tables: [subset.\"schema.table\"]")?;
                for (name, fields) in tables {
                    rules.subsets.push(
                        subset_of(table_name(name)?, fields)
                            .with_context(|| format!("in [subset.\"{name}\"]"))?,
                    );
                }
            }
            "foreign_key" => {
                let keys = value
                    .as_array()
                    .context("foreign_key must be a list: [[foreign_key]]")?;
                for key in keys {
                    rules
                        .keys
                        .push(declared_key(key).context("in a [[foreign_key]]")?);
                }
            }
            "large_objects" => {
                rules.large_objects = Some(match value.as_str() {
                    Some("copy") => LargeObjects::Copy,
                    Some("empty") => LargeObjects::Empty,
                    _ => bail!(
                        "large_objects must be \"copy\" (as they are: no rule reaches inside \
                         one) or \"empty\" (the destination's removed, none copied)"
                    ),
                })
            }
            other => bail!(
                "unknown key {other:?}: a rules file has require, large_objects, [mask.…], \
                 [subset.…] and [[foreign_key]]"
            ),
        }
    }
    Ok(rules)
}

/// `schema.table`, split at the first dot (a table's name may hold dots, as pgcopy
/// displays it).
fn table_name(key: &str) -> Result<TableName> {
    match key.split_once('.') {
        Some((schema, name)) if !schema.is_empty() && !name.is_empty() => {
            Ok(TableName::new(schema, name))
        }
        _ => bail!("name the table as \"schema.table\", not {key:?}"),
    }
}

/// A `[subset."…"]` table's fields.
fn subset_of(table: TableName, fields: &toml::Value) -> Result<SubsetRule> {
    let fields = fields
        .as_table()
        .context("a subset is a table of where, percent, limit and order_by")?;
    let mut rule = SubsetRule {
        table,
        filter: None,
        percent: None,
        limit: None,
        order_by: None,
        children: Vec::new(),
    };
    for (key, value) in fields {
        match key.as_str() {
            "where" => rule.filter = Some(text_of(key, value)?),
            "order_by" => rule.order_by = Some(text_of(key, value)?),
            "percent" => {
                rule.percent = Some(match value {
                    toml::Value::Integer(n) => *n as f64,
                    toml::Value::Float(x) => *x,
                    _ => bail!("percent must be a number"),
                })
            }
            "children" => {
                for name in strings(value, "children must be a list of \"schema.table\" names")? {
                    rule.children.push(table_name(name)?);
                }
            }
            "limit" => match value.as_integer() {
                Some(n) if n >= 0 => rule.limit = Some(n as u64),
                _ => bail!("limit must be a number of rows"),
            },
            other => {
                bail!(
                    "unknown field {other:?}: a subset takes where, percent, limit, order_by \
                     and children"
                )
            }
        }
    }
    if rule.order_by.is_some() && rule.limit.is_none() {
        bail!("order_by orders the rows a limit keeps: give limit too");
    }
    Ok(rule)
}

/// A `[[foreign_key]]`: `table`, `columns`, `references` and `referenced` (the same
/// names as `columns` when left out).
fn declared_key(value: &toml::Value) -> Result<DeclaredKey> {
    let fields = value
        .as_table()
        .context("a foreign key is a table: table, columns, references, referenced")?;
    let names = |key: &str| -> Result<Option<Vec<String>>> {
        let Some(value) = fields.get(key) else {
            return Ok(None);
        };
        let list = strings(value, &format!("{key} must be a list of column names"))?;
        Ok(Some(list.into_iter().map(str::to_string).collect()))
    };
    for key in fields.keys() {
        if !["table", "columns", "references", "referenced"].contains(&key.as_str()) {
            bail!("unknown field {key:?}: a foreign key takes table, columns, references and referenced");
        }
    }
    let table = |key: &str| -> Result<TableName> {
        table_name(
            fields
                .get(key)
                .and_then(toml::Value::as_str)
                .with_context(|| format!("a foreign key needs {key} = \"schema.table\""))?,
        )
    };
    let columns = names("columns")?.context("a foreign key needs columns = [\"…\"]")?;
    Ok(DeclaredKey {
        table: table("table")?,
        referenced: names("referenced")?.unwrap_or_else(|| columns.clone()),
        columns,
        references: table("references")?,
    })
}

/// A list of strings, else the error `what`.
fn strings<'a>(value: &'a toml::Value, what: &str) -> Result<Vec<&'a str>> {
    let list = value.as_array().with_context(|| what.to_string())?;
    list.iter()
        .map(|v| v.as_str().with_context(|| what.to_string()))
        .collect()
}

/// A field that takes SQL text.
fn text_of(key: &str, value: &toml::Value) -> Result<String> {
    match value.as_str() {
        Some(text) if !text.trim().is_empty() => Ok(text.to_string()),
        _ => bail!("{key} must be SQL text"),
    }
}

/// A rule: its name, or a table `{ rule = "…", … }`.
fn rule_of(value: &toml::Value) -> Result<Rule> {
    let (name, table) = match value {
        toml::Value::String(name) => (name.as_str(), None),
        toml::Value::Table(table) => (
            table
                .get("rule")
                .and_then(toml::Value::as_str)
                .context("a rule table needs rule = \"…\"")?,
            Some(table),
        ),
        _ => bail!("a rule is a name (\"null\") or a table ({{ rule = \"sql\", expr = \"…\" }})"),
    };
    let field = |key: &str| -> Result<String> {
        match table.and_then(|t| t.get(key)) {
            Some(toml::Value::String(text)) => Ok(text.clone()),
            Some(toml::Value::Integer(n)) => Ok(n.to_string()),
            Some(toml::Value::Float(x)) => Ok(x.to_string()),
            Some(toml::Value::Boolean(b)) => Ok(b.to_string()),
            _ => bail!("the rule {name} needs {key} = \"…\""),
        }
    };
    let rule = match name {
        "null" => Rule::Null,
        "fixed" => Rule::Fixed(field("value")?),
        "sql" => Rule::Sql(field("expr")?),
        "noise" => {
            let range = field("range")?;
            if range.trim().is_empty() {
                bail!("the rule noise needs range = a number or an interval");
            }
            Rule::Noise(range)
        }
        "hash" => Rule::Keyed(Keyed::Hash),
        "email" => Rule::Keyed(Keyed::Email),
        "name" => Rule::Keyed(Keyed::Name),
        "first_name" => Rule::Keyed(Keyed::FirstName),
        "last_name" => Rule::Keyed(Keyed::LastName),
        "keep" => Rule::Keep,
        "phone" => Rule::Keyed(Keyed::Phone),
        "scramble" => Rule::Keyed(Keyed::Scramble),
        other => bail!(
            "unknown rule {other:?}: this pgcopy masks with null, fixed (value = …), sql \
             (expr = …), noise (range = …), hash, email, name, first_name, last_name, phone \
             and scramble, and keep leaves a column as it is"
        ),
    };
    if let Some(table) = table {
        for key in table.keys() {
            let expected = match rule {
                Rule::Null | Rule::Keyed(_) | Rule::Keep => &["rule"][..],
                Rule::Fixed(_) => &["rule", "value"],
                Rule::Sql(_) => &["rule", "expr"],
                Rule::Noise(_) => &["rule", "range"],
            };
            if !expected.contains(&key.as_str()) {
                bail!("the rule {name} takes no {key}");
            }
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_require_and_masks() {
        let rules = parse(
            r#"
            require = ["*Email*", "phone"]
            [mask."public.customer"]
            email = "null"
            note = { rule = "fixed", value = "redacted" }
            initials = { rule = "sql", expr = "left(first_name, 1)" }
            [mask."public.odd.name"]
            n = { rule = "fixed", value = 0 }
            "#,
        )
        .unwrap();
        assert_eq!(rules.require.len(), 2);
        assert!(rules.require[0].matches("work_email"));
        let customer = TableName::new("public", "customer");
        assert!(rules.masks.contains(&MaskRule {
            table: customer.clone(),
            column: "email".into(),
            rule: Rule::Null,
        }));
        assert!(rules.masks.contains(&MaskRule {
            table: customer,
            column: "initials".into(),
            rule: Rule::Sql("left(first_name, 1)".into()),
        }));
        assert!(rules.masks.contains(&MaskRule {
            table: TableName::new("public", "odd.name"),
            column: "n".into(),
            rule: Rule::Fixed("0".into()),
        }));
    }

    #[test]
    fn reads_the_example_in_conf() {
        let rules = parse(include_str!("../../conf/rules.example.toml")).unwrap();
        assert_eq!(rules.require.len(), 5);
        assert!(rules
            .masks
            .iter()
            .any(|m| m.rule == Rule::Keyed(Keyed::Email)));
        assert_eq!(rules.subsets.len(), 2);
        assert_eq!(rules.keys.len(), 1);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for (text, says) in [
            ("[mask.customer]\nemail = \"null\"", "schema.table"),
            (
                "[mask.\"public.c\"]\nemail = \"shuffle\"",
                "unknown rule \"shuffle\"",
            ),
            (
                "[mask.\"public.c\"]\nemail = { rule = \"fixed\" }",
                "needs value",
            ),
            (
                "[mask.\"public.c\"]\ne = { rule = \"null\", value = 1 }",
                "takes no value",
            ),
            ("requires = []", "unknown key \"requires\""),
            ("require = \"*email*\"", "list of column name patterns"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
