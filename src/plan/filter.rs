//! Table selection: the `--include-*` / `--exclude-*` glob patterns and how a table matches them.

use crate::pg::sql::TableName;

/// A glob pattern with `*` (any run of characters) and `?` (one character), matched
/// case-sensitively because PostgreSQL stores names case-sensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.chars().collect(),
        }
    }

    pub(crate) fn as_string(&self) -> String {
        self.pattern.iter().collect()
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // Iterative wildcard matching with backtracking to the last `*`: linear in practice.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

/// Splits a comma-separated LIST into patterns; empty items are ignored.
pub(crate) fn parse_list(lists: &[String]) -> Vec<Glob> {
    lists
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(Glob::new)
        .collect()
}

/// Which tables a command works on. Include lists narrow the selection (empty means all),
/// then exclude lists remove from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct TableFilter {
    pub(crate) include_tables: Vec<Glob>,
    pub(crate) exclude_tables: Vec<Glob>,
    pub(crate) include_schemas: Vec<Glob>,
    pub(crate) exclude_schemas: Vec<Glob>,
}

impl TableFilter {
    /// Whether `table` is selected. `parent` is the partitioned table a leaf partition belongs
    /// to (its root): naming the parent selects or excludes all of its partitions.
    pub(crate) fn selects(&self, table: &TableName, parent: Option<&TableName>) -> bool {
        let schema_ok = (self.include_schemas.is_empty()
            || self
                .include_schemas
                .iter()
                .any(|g| g.matches(&table.schema)))
            && !self
                .exclude_schemas
                .iter()
                .any(|g| g.matches(&table.schema));
        if !schema_ok {
            return false;
        }
        let names = [Some(table), parent];
        let hit = |globs: &[Glob]| {
            names
                .iter()
                .flatten()
                .any(|name| globs.iter().any(|g| table_matches(g, name)))
        };
        (self.include_tables.is_empty() || hit(&self.include_tables)) && !hit(&self.exclude_tables)
    }

    /// Whether include patterns narrow the selection to some tables or schemas (exclude
    /// patterns alone leave it the whole database, less some).
    pub(crate) fn narrowed(&self) -> bool {
        !self.include_tables.is_empty() || !self.include_schemas.is_empty()
    }

    /// Whether any pattern was given, include or exclude.
    pub(crate) fn given(&self) -> bool {
        self.narrowed() || !self.exclude_tables.is_empty() || !self.exclude_schemas.is_empty()
    }

    /// Include patterns that select none of `tables`: most likely typing mistakes.
    pub(crate) fn unmatched_includes<'a>(
        &'a self,
        tables: &[(TableName, Option<TableName>)],
    ) -> Vec<&'a Glob> {
        let table_hits = self.include_tables.iter().filter(|g| {
            !tables.iter().any(|(t, parent)| {
                table_matches(g, t) || parent.as_ref().is_some_and(|p| table_matches(g, p))
            })
        });
        let schema_hits = self
            .include_schemas
            .iter()
            .filter(|g| !tables.iter().any(|(t, _)| g.matches(&t.schema)));
        table_hits.chain(schema_hits).collect()
    }
}

impl TableFilter {
    /// The patterns as JSON, to be read back by `from_json`: how a follower records what it
    /// follows, for `cutover` and a resumed follower.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let list = |globs: &[Glob]| globs.iter().map(Glob::as_string).collect::<Vec<_>>();
        serde_json::json!({
            "include_tables": list(&self.include_tables),
            "exclude_tables": list(&self.exclude_tables),
            "include_schemas": list(&self.include_schemas),
            "exclude_schemas": list(&self.exclude_schemas),
        })
    }

    /// The patterns `to_json` wrote; `None` for anything else.
    pub(crate) fn from_json(value: &serde_json::Value) -> Option<TableFilter> {
        let list = |key: &str| -> Option<Vec<Glob>> {
            value
                .get(key)?
                .as_array()?
                .iter()
                .map(|g| g.as_str().map(Glob::new))
                .collect()
        };
        Some(TableFilter {
            include_tables: list("include_tables")?,
            exclude_tables: list("exclude_tables")?,
            include_schemas: list("include_schemas")?,
            exclude_schemas: list("exclude_schemas")?,
        })
    }
}

/// A table pattern matches the bare table name or `schema.table`.
fn table_matches(glob: &Glob, table: &TableName) -> bool {
    glob.matches(&table.name) || glob.matches(&table.dotted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_and_question_marks() {
        assert!(Glob::new("pgbench_*").matches("pgbench_accounts"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*_log_*").matches("app_log_2024"));
        assert!(!Glob::new("*_log_*").matches("app_log"));
        assert!(Glob::new("a*b*c").matches("axxbyybzc"));
        assert!(!Glob::new("a*b*c").matches("axxbyyb"));
    }

    #[test]
    fn glob_is_case_sensitive() {
        assert!(!Glob::new("users").matches("Users"));
        assert!(Glob::new("Users").matches("Users"));
    }

    #[test]
    fn parses_comma_separated_lists() {
        let globs = parse_list(&["a, b,".to_string(), "c".to_string()]);
        let texts: Vec<String> = globs.iter().map(Glob::as_string).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }

    fn filter(it: &str, et: &str, is: &str, es: &str) -> TableFilter {
        TableFilter {
            include_tables: parse_list(&[it.to_string()]),
            exclude_tables: parse_list(&[et.to_string()]),
            include_schemas: parse_list(&[is.to_string()]),
            exclude_schemas: parse_list(&[es.to_string()]),
        }
    }

    #[test]
    fn include_then_exclude() {
        let f = filter("pgbench_*", "*_history", "", "");
        assert!(f.selects(&TableName::new("public", "pgbench_accounts"), None));
        assert!(!f.selects(&TableName::new("public", "pgbench_history"), None));
        assert!(!f.selects(&TableName::new("public", "other"), None));
    }

    #[test]
    fn matches_qualified_names_and_schemas() {
        let f = filter("sales.*", "", "", "");
        assert!(f.selects(&TableName::new("sales", "orders"), None));
        assert!(!f.selects(&TableName::new("public", "orders"), None));
        let f = filter("", "", "", "audit");
        assert!(!f.selects(&TableName::new("audit", "log"), None));
        assert!(f.selects(&TableName::new("public", "log"), None));
        let f = filter("", "", "s?", "");
        assert!(f.selects(&TableName::new("s1", "t"), None));
        assert!(!f.selects(&TableName::new("s10", "t"), None));
    }

    #[test]
    fn reads_back_the_patterns_it_wrote() {
        let f = filter("a*,b", "*_log", "s?", "audit");
        let back = TableFilter::from_json(&f.to_json()).unwrap();
        assert_eq!(back.include_tables, f.include_tables);
        assert_eq!(back.exclude_schemas, f.exclude_schemas);
        assert!(TableFilter::from_json(&serde_json::json!({"x": 1})).is_none());
    }

    #[test]
    fn partitions_follow_their_parent() {
        let parent = TableName::new("public", "measurements");
        let leaf = TableName::new("public", "measurements_2024");
        assert!(filter("measurements", "", "", "").selects(&leaf, Some(&parent)));
        assert!(!filter("", "measurements", "", "").selects(&leaf, Some(&parent)));
    }

    #[test]
    fn reports_includes_that_match_nothing() {
        let f = filter("users,ghost", "", "nope", "");
        let tables = vec![(TableName::new("public", "users"), None)];
        let missing: Vec<String> = f
            .unmatched_includes(&tables)
            .iter()
            .map(|g| g.as_string())
            .collect();
        assert_eq!(missing, ["ghost", "nope"]);
    }
}
