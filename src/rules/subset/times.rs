//! Making a subset's `where` give the same rows in every session: `now()` and its kin
//! replaced by the snapshot's time (a small lexer skips strings, quoted names, dollar
//! quotes and comments), and functions that differ between sessions refused.

use crate::pg::sql::quote_literal;
use anyhow::{Context, Result};
use postgres::Client;

/// Session-dependent functions a `where` may not call: each reader would get other rows.
pub(super) const VOLATILE: &[&str] = &[
    "random",
    "setseed",
    "clock_timestamp",
    "statement_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "pg_backend_pid",
    "inet_client_port",
];

/// The snapshot's time, put where a `where` asks for the current one, so that every
/// session reads the same rows.
pub(super) struct Times {
    /// (function as written, its value as a typed literal)
    pub(super) values: Vec<(&'static str, bool, String)>,
}

impl Times {
    pub(super) fn of_snapshot(client: &mut Client) -> Result<Times> {
        let row = client
            .query_one(
                "SELECT now()::text, current_date::text, localtimestamp::text,
                        current_time::text, localtime::text",
                &[],
            )
            .context("reading the snapshot's time")?;
        let at = |i: usize, ty: &str| format!("{}::{ty}", quote_literal(&row.get::<_, String>(i)));
        let now = at(0, "timestamptz");
        Ok(Times {
            values: vec![
                ("now", true, now.clone()),
                ("transaction_timestamp", true, now.clone()),
                ("current_timestamp", false, now),
                ("current_date", false, at(1, "date")),
                ("localtimestamp", false, at(2, "timestamp")),
                ("current_time", false, at(3, "timetz")),
                ("localtime", false, at(4, "time")),
            ],
        })
    }

    /// `expr` with the current time replaced by the snapshot's; an error where it calls
    /// a function whose value differs between sessions.
    pub(super) fn pin(&self, expr: &str) -> Result<String> {
        let mut out = String::with_capacity(expr.len());
        let mut rest = expr;
        while let Some(c) = rest.chars().next() {
            let skip = match c {
                '\'' => quoted_len(rest, '\'', rest_is_escaped(&out)),
                '"' => quoted_len(rest, '"', false),
                '$' => dollar_len(rest),
                '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
                '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |i| i + 2),
                c if c.is_alphabetic() || c == '_' => {
                    let len = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                        .unwrap_or(rest.len());
                    let word = rest[..len].to_lowercase();
                    let after = rest[len..].trim_start();
                    let called = after.starts_with('(');
                    if called && VOLATILE.contains(&word.as_str()) {
                        anyhow::bail!(
                            "it calls {word}(), whose value differs from session to session, \
                             so that the copy's readers would keep different rows"
                        );
                    }
                    let pinned = self.values.iter().find(|(name, call, _)| {
                        *name == word && (!call || after.starts_with("()") || empty_call(after))
                    });
                    if let Some((_, call, value)) = pinned {
                        if out.to_lowercase().ends_with("pg_catalog.") {
                            out.truncate(out.len() - "pg_catalog.".len());
                        }
                        out.push('(');
                        out.push_str(value);
                        out.push(')');
                        rest = &rest[len..];
                        if *call {
                            let open = rest.find('(').expect("a call has (");
                            let close = rest.find(')').expect("an empty call has )");
                            debug_assert!(open < close);
                            rest = &rest[close + 1..];
                        }
                        continue;
                    }
                    len
                }
                _ => c.len_utf8(),
            };
            let skip = skip.max(1).min(rest.len());
            out.push_str(&rest[..skip]);
            rest = &rest[skip..];
        }
        Ok(out)
    }
}

/// `(` and `)` with only spaces between.
pub(super) fn empty_call(after: &str) -> bool {
    after
        .strip_prefix('(')
        .is_some_and(|inner| inner.trim_start().starts_with(')'))
}

/// Whether the string about to start is an `E'…'` one (backslash escapes).
pub(super) fn rest_is_escaped(before: &str) -> bool {
    let mut chars = before.chars().rev();
    matches!(chars.next(), Some('e' | 'E'))
        && !chars
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The length of a quoted string or identifier at the start of `text`, doubled quotes
/// (and backslashes, where `escapes`) inside it.
pub(super) fn quoted_len(text: &str, quote: char, escapes: bool) -> usize {
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if escapes && c == '\\' {
            chars.next();
        } else if c == quote {
            if chars.peek().is_some_and(|(_, n)| *n == quote) {
                chars.next();
            } else {
                return i + 1;
            }
        }
    }
    text.len()
}

/// The length of a dollar-quoted string at the start of `text` (`$tag$…$tag$`), or 1
/// where the `$` starts none (a parameter, `$1`).
pub(super) fn dollar_len(text: &str) -> usize {
    let Some(end) = text[1..].find('$') else {
        return 1;
    };
    let tag = &text[..end + 2];
    if !tag[1..tag.len() - 1]
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        || tag[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return 1;
    }
    text[tag.len()..]
        .find(tag)
        .map_or(text.len(), |i| tag.len() + i + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times() -> Times {
        Times {
            values: vec![
                ("now", true, "'T'::timestamptz".into()),
                ("current_timestamp", false, "'T'::timestamptz".into()),
                ("current_date", false, "'D'::date".into()),
            ],
        }
    }

    #[test]
    fn pins_the_current_time_outside_strings_and_names() {
        let t = times();
        assert_eq!(
            t.pin("created_at > now() - interval '30 days'").unwrap(),
            "created_at > ('T'::timestamptz) - interval '30 days'"
        );
        assert_eq!(
            t.pin("a >= pg_catalog.NOW( ) AND b = CURRENT_DATE")
                .unwrap(),
            "a >= ('T'::timestamptz) AND b = ('D'::date)"
        );
        assert_eq!(
            t.pin("note = 'now()' AND \"current_date\" = 1 AND x = $$now()$$ -- now()")
                .unwrap(),
            "note = 'now()' AND \"current_date\" = 1 AND x = $$now()$$ -- now()"
        );
        assert_eq!(t.pin("s = E'it\\'s now()'").unwrap(), "s = E'it\\'s now()'");
        assert_eq!(t.pin("nowhere = 1").unwrap(), "nowhere = 1");
    }

    #[test]
    fn refuses_what_differs_between_sessions() {
        let t = times();
        for expr in [
            "random() < 0.1",
            "id % 10 = (RANDOM ())::int",
            "at < clock_timestamp()",
        ] {
            let err = t.pin(expr).unwrap_err().to_string();
            assert!(
                err.contains("differs from session to session"),
                "{expr}: {err}"
            );
        }
        assert!(t.pin("'random()' = note").is_ok());
    }
}
