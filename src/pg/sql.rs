//! Quoting of identifiers and literals for the SQL pgcopy builds, so no call site quotes by hand.

use std::fmt;

/// Session settings that fix how values are written as text, so that text out of one server
/// reads back (or hashes) identically on another whatever their configured defaults. For
/// use inside a transaction.
pub(crate) const TEXT_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, MDY';
     SET LOCAL IntervalStyle = 'postgres';
     SET LOCAL TimeZone = 'UTC';
     SET LOCAL extra_float_digits = 3;
     SET LOCAL bytea_output = 'hex'";

/// Quotes an identifier the way PostgreSQL's `quote_ident` does when in doubt: always.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Keywords that PostgreSQL's `quote_ident` quotes: every one not in the unreserved
/// category (`pg_get_keywords()` of PostgreSQL 15), sorted for a binary search.
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// An identifier as SQL needs it written: as it is when PostgreSQL would read it back
/// unchanged (lower case letters, digits, `_` and `$`, not starting with a digit or `$`,
/// not a keyword), else quoted. For messages, the report and logs, where `public.a.b`
/// would be ambiguous.
pub(crate) fn display_ident(name: &str) -> std::borrow::Cow<'_, str> {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && KEYWORDS.binary_search(&name).is_err();
    if plain {
        std::borrow::Cow::Borrowed(name)
    } else if name.chars().any(char::is_control) {
        // On one line, as a Unicode escape identifier: U&"line\000abreak".
        let mut escaped = String::from("U&\"");
        for c in name.chars() {
            match c {
                '"' => escaped.push_str("\"\""),
                '\\' => escaped.push_str("\\\\"),
                c if c.is_control() => escaped.push_str(&format!("\\{:04x}", u32::from(c))),
                c => escaped.push(c),
            }
        }
        escaped.push('"');
        std::borrow::Cow::Owned(escaped)
    } else {
        std::borrow::Cow::Owned(quote_ident(name))
    }
}

/// Quotes a string literal (standard_conforming_strings is on in every supported server).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A schema-qualified table name as PostgreSQL stores it (unquoted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TableName {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl TableName {
    pub(crate) fn new(schema: impl Into<String>, name: impl Into<String>) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `schema.table` as stored, unquoted: what filter patterns are matched against.
    pub(crate) fn dotted(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The name quoted for use in SQL: `"schema"."table"`.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Displays as SQL would need it written, `schema.table` with each part quoted where it
/// must be (`public."odd.name"`): in messages, the report and the logs.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

/// The schemas and the names of `tables`, as the two arrays a query takes a list of tables
/// by: `unnest($1::text[], $2::text[]) AS want(schema_name, table_name)`.
pub(crate) fn name_arrays<'a>(
    tables: impl IntoIterator<Item = &'a TableName>,
) -> (Vec<&'a str>, Vec<&'a str>) {
    tables
        .into_iter()
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .unzip()
}

/// A comma-separated list of quoted column names.
pub(crate) fn column_list<'a>(columns: impl IntoIterator<Item = &'a str>) -> String {
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
        assert_eq!(t.to_string(), "\"My Schema\".\"t\"\"1\"");
        assert_eq!(t.dotted(), "My Schema.t\"1");
    }

    #[test]
    fn displays_identifiers_quoted_only_where_sql_needs_it() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]), "sorted");
        for plain in ["accounts", "_x", "t1", "a$b", "pgbench_accounts"] {
            assert_eq!(display_ident(plain), plain);
        }
        for (name, shown) in [
            ("Users", "\"Users\""),
            ("a.b", "\"a.b\""),
            ("1st", "\"1st\""),
            ("user", "\"user\""),
            ("with space", "\"with space\""),
            ("line\nbreak", "U&\"line\\000abreak\""),
            ("tab\t\\\"", "U&\"tab\\0009\\\\\"\"\""),
            ("", "\"\""),
        ] {
            assert_eq!(display_ident(name), shown);
        }
        assert_eq!(
            TableName::new("public", "etl.daily").to_string(),
            "public.\"etl.daily\""
        );
    }

    #[test]
    fn joins_column_lists() {
        assert_eq!(column_list(["a", "B c"]), "\"a\", \"B c\"");
    }
}
