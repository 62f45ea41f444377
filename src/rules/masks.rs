//! The rules a column can be masked by, and what each makes: the source's expressions
//! (`null`, `fixed`, `sql`, `noise`, JSON paths by `jsonb_set`) and which types the keyed
//! rules can produce.

use crate::pg::sql::{display_ident, quote_ident, quote_literal, TableName};
use crate::rules::rewrite::values::Keyed;
use crate::rules::MaskKey;

/// One column's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MaskRule {
    pub(crate) table: TableName,
    pub(crate) column: String,
    pub(crate) rule: Rule,
}

/// How a masked column's value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Always NULL.
    Null,
    /// This value, in the column's type.
    Fixed(String),
    /// An SQL expression over the row's columns, evaluated by the source.
    Sql(String),
    /// The value moved by a random amount of at most `range` either way (a number, or an
    /// interval for dates and times), by the source.
    Noise(String),
    /// Derived from the value's HMAC-SHA256 under the key, applied by pgcopy: the same
    /// value, the same output.
    Keyed(Keyed),
    /// Left as it is, on purpose: it meets `require` (a `*name*` pattern that catches
    /// `category.name`), and `verify` still compares it.
    Keep,
}

impl Rule {
    /// In a few words, for the dry run.
    pub(crate) fn describe(&self) -> String {
        match self {
            Rule::Null => "null".into(),
            Rule::Fixed(value) => format!("fixed {}", quote_literal(value)),
            Rule::Sql(expr) => format!("sql {expr}"),
            Rule::Noise(range) => format!("noise ±{range}"),
            Rule::Keyed(keyed) => format!("{} (keyed, by pgcopy)", keyed.name()),
            Rule::Keep => "keep (as it is)".into(),
        }
    }

    /// Whether pgcopy applies it, not the source.
    pub(crate) fn in_client(&self) -> bool {
        matches!(self, Rule::Keyed(_))
    }
}

/// A masked column of a planned table, with its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    pub(crate) column: String,
    /// Inside a `json` or `jsonb` column: the keys (or array indexes, `*` any) down to the
    /// masked value. Empty: the whole column.
    pub(crate) path: Vec<String>,
    pub(crate) rule: Rule,
    /// The key, for a rule pgcopy applies.
    pub(crate) key: Option<MaskKey>,
    /// For a column of a domain: the type it is a domain over, which the keyed rules make
    /// (its binary form is the domain's).
    pub(crate) base_type: Option<String>,
}

impl Placed {
    /// What the plan says of it.
    pub(crate) fn plain(&self) -> crate::plan::reading::Mask {
        crate::plan::reading::Mask {
            column: self.column.clone(),
            path: self.path.clone(),
            describe: self.rule.describe(),
            in_client: self.rule.in_client(),
            key: self.key.as_ref().map(MaskKey::fingerprint),
        }
    }

    /// What it masks, `column` or `column.key.key`, as messages and the dry run show it.
    pub(crate) fn target(&self) -> String {
        let mut target = display_ident(&self.column).into_owned();
        for step in &self.path {
            target.push('.');
            target.push_str(step);
        }
        target
    }

    /// A JSON column with the source's rules for paths inside it applied, as the source
    /// reads it (`jsonb_set` for each; a path the document does not have, or a JSON `null`
    /// there, left as it is); `None` when no such rule is among `masks`.
    pub(crate) fn json_expr(column: &str, type_name: &str, masks: &[&Placed]) -> Option<String> {
        let col = quote_ident(column);
        let mut expr = format!("{col}::jsonb");
        let mut any = false;
        for mask in masks
            .iter()
            .filter(|m| !m.path.is_empty() && !m.rule.in_client())
        {
            any = true;
            let steps: Vec<String> = mask.path.iter().map(|s| quote_literal(s)).collect();
            let path = format!("ARRAY[{}]::text[]", steps.join(", "));
            let at = format!("({col}::jsonb #> {path})");
            let new = match &mask.rule {
                Rule::Null | Rule::Keyed(_) => "'null'::jsonb".to_string(),
                Rule::Keep => at.clone(),
                Rule::Fixed(value) => format!("to_jsonb({}::text)", quote_literal(value)),
                Rule::Sql(expr) => format!("to_jsonb(({expr}))"),
                Rule::Noise(range) => format!(
                    "CASE jsonb_typeof({at}) WHEN 'number' THEN \
                     to_jsonb(({at} #>> '{{}}')::numeric + (random() * 2 - 1) * {range}) \
                     ELSE 'null'::jsonb END"
                ),
            };
            expr = format!(
                "jsonb_set({expr}, {path}, CASE WHEN jsonb_typeof({at}) = 'null' THEN \
                 'null'::jsonb ELSE coalesce({new}, 'null'::jsonb) END, false)"
            );
        }
        any.then(|| format!("({expr})::{type_name}"))
    }

    /// The masked value as the source reads it, in the column's own type `type_name`;
    /// NULL where the column is NULL.
    pub(crate) fn source_expr(&self, type_name: &str) -> String {
        let column = quote_ident(&self.column);
        let value = match &self.rule {
            Rule::Keyed(_) | Rule::Keep => return column,
            Rule::Null => return format!("NULL::{type_name}"),
            Rule::Fixed(value) => quote_literal(value),
            Rule::Sql(expr) => format!("({expr})"),
            Rule::Noise(range) => match Noisy::of(type_name) {
                Some(Noisy::Number) => format!("{column} + (random() * 2 - 1) * {range}"),
                _ => format!(
                    "{column} + (random() * 2 - 1) * {}::interval",
                    quote_literal(range)
                ),
            },
        };
        format!("CASE WHEN {column} IS NULL THEN NULL ELSE {value} END::{type_name}")
    }
}

/// What `noise` moves a column by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noisy {
    /// A number (`integer`, `numeric(…)`, `double precision`, …).
    Number,
    /// An interval (`date`, `timestamp`, `timestamptz`, `time`).
    Interval,
}

impl Noisy {
    pub(crate) fn of(type_name: &str) -> Option<Noisy> {
        let base = type_name.split('(').next().unwrap_or(type_name).trim();
        match base {
            "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
                Some(Noisy::Number)
            }
            "date"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "time without time zone" => Some(Noisy::Interval),
            _ if type_name.starts_with("timestamp") => Some(Noisy::Interval),
            _ => None,
        }
    }

    /// Whether `range` suits a column of `type_name`: a positive number for numbers; for
    /// dates and times an interval, of which only its form is checked here: digits and
    /// unit words (`30 days`, `2 hours 30 minutes`).
    pub(crate) fn check(type_name: &str, range: &str) -> std::result::Result<(), String> {
        match Noisy::of(type_name) {
            None => Err(format!(
                "it moves numbers, dates and times, not {type_name}"
            )),
            Some(Noisy::Number) => match range.parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Ok(()),
                _ => Err(format!("range must be a positive number, not {range:?}")),
            },
            Some(Noisy::Interval) => {
                let plain = range
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '.' || c == ':');
                if plain && range.chars().any(|c| c.is_ascii_digit()) {
                    Ok(())
                } else {
                    Err(format!(
                        "range must be an interval (\"30 days\"), not {range:?}"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_nulls_and_the_columns_type() {
        let mask = |rule| Placed {
            column: "e".into(),
            path: Vec::new(),
            rule,
            key: None,
            base_type: None,
        };
        assert_eq!(mask(Rule::Null).source_expr("text"), "NULL::text");
        assert_eq!(
            mask(Rule::Fixed("it's".into())).source_expr("character varying(20)"),
            "CASE WHEN \"e\" IS NULL THEN NULL ELSE 'it''s' END::character varying(20)"
        );
        assert_eq!(
            mask(Rule::Sql("md5(e)".into())).source_expr("text"),
            "CASE WHEN \"e\" IS NULL THEN NULL ELSE (md5(e)) END::text"
        );
    }
}
