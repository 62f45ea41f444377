//! Quoting of identifiers and literals for the SQL pgcopy builds, so no call site quotes by hand.

use std::fmt;

/// Session settings that fix how values are written as text, so that text out of one server
/// reads back (or hashes) identically on another whatever their configured defaults. For
/// use inside a transaction.
pub const TEXT_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, MDY';
     SET LOCAL IntervalStyle = 'postgres';
     SET LOCAL TimeZone = 'UTC';
     SET LOCAL extra_float_digits = 3;
     SET LOCAL bytea_output = 'hex'";

/// Quotes an identifier the way PostgreSQL's `quote_ident` does when in doubt: always.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (standard_conforming_strings is on in every supported server).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A schema-qualified table name as PostgreSQL stores it (unquoted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name quoted for use in SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Displays as `schema.table`, the way users write it in filters and read it in reports.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A comma-separated list of quoted column names.
pub fn column_list<'a>(columns: impl IntoIterator<Item = &'a str>) -> String {
    columns
        .into_iter()
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_with_quotes_spaces_and_capitals() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn qualifies_table_names() {
        let t = TableName::new("My Schema", "t\"1");
        assert_eq!(t.quoted(), "\"My Schema\".\"t\"\"1\"");
        assert_eq!(t.to_string(), "My Schema.t\"1");
    }

    #[test]
    fn joins_column_lists() {
        assert_eq!(column_list(["a", "B c"]), "\"a\", \"B c\"");
    }
}
