//! A test's databases: named after the test (`test_name!`, `pair!`), made fresh on the shared
//! clusters, and `TestDb`, a handle with helpers that panic with the SQL and the server's whole
//! error.
//!
//! Each test gets databases of its own so that tests run in parallel on the shared clusters. A
//! name comes from the test's function, not from its thread (under `--test-threads 1` every
//! test runs on the main thread), and two tests can never be handed the same database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use postgres::{NoTls, SimpleQueryMessage};

use super::cluster::{dest, source, PG_USER};

/// The name of the test it is written in (the last segment of the enclosing function's path),
/// or with an argument that name with `_argument` after it, for a test that needs several
/// databases on one cluster: `test_name!()`, `test_name!("source")`.
macro_rules! test_name {
    ($($suffix:expr)?) => {{
        fn here() {}
        $crate::util::name_for_test(
            ::std::any::type_name_of_val(&here),
            &[$(::std::string::ToString::to_string(&$suffix))?],
        )
    }};
}
pub(crate) use test_name;

/// A fresh database named after the test (`test_name!`, with the same optional suffix) on each
/// shared cluster: `let (src, dst) = pair!();`.
macro_rules! pair {
    ($($suffix:expr)?) => {
        $crate::util::pair_named(&$crate::util::test_name!($($suffix)?))
    };
}
pub(crate) use pair;

/// What `test_name!` expands to. `here` is the path of a function nested in the test, such as
/// `tests::copying::copies_x::{{closure}}::here`. Panics if another test already has the name.
pub fn name_for_test(here: &str, suffix: &[String]) -> String {
    let test_path: Vec<&str> = here
        .split("::")
        .filter(|segment| !segment.starts_with("{{"))
        .collect();
    let test_path = match test_path.split_last() {
        Some((&"here", path)) if !path.is_empty() => path,
        _ => panic!("test_name!() cannot read the test's name from {here:?}"),
    };
    let test = test_path[test_path.len() - 1];
    let name = match suffix {
        [] => test.to_string(),
        [suffix] => format!("{test}_{suffix}"),
        _ => unreachable!("test_name! takes one suffix at most"),
    };
    claim(&db_name(&name), &test_path.join("::"));
    name
}

/// Records that `test` uses the database `db`: two tests of the same name in two modules, or a
/// name and a suffix that add up to another test's name, would drop each other's databases.
fn claim(db: &str, test: &str) {
    static CLAIMS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let mut claims = CLAIMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let owner = claims
        .entry(db.to_string())
        .or_insert_with(|| test.to_string());
    if owner != test {
        let owner = owner.clone();
        drop(claims);
        panic!("{test} and {owner} would both use the database {db}: rename one");
    }
}

/// A fresh, empty database of this name on the source cluster and another on the destination
/// cluster; an earlier database of that name is dropped first. Tests call `pair!()`.
pub fn pair_named(name: &str) -> (TestDb, TestDb) {
    // Both clusters start on first use; start them side by side to halve the wait.
    thread::scope(|scope| {
        let src = scope.spawn(source);
        dest();
        if let Err(panic) = src.join() {
            std::panic::resume_unwind(panic);
        }
    });
    (source().create_db(name), dest().create_db(name))
}

/// One database on one cluster, with helpers that panic with the SQL and the server's error.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    pub port: u16,
    pub(super) socket_dir: PathBuf,
}

impl TestDb {
    /// The URL a user would pass to pgcopy: TCP on 127.0.0.1, user postgres, no password.
    pub fn url(&self) -> String {
        self.url_as(PG_USER)
    }

    /// `url` for another role (the clusters trust every role on 127.0.0.1).
    pub fn url_as(&self, role: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// The name quoted for SQL, as in `ALTER DATABASE … SET`.
    pub fn quoted_name(&self) -> String {
        quote_ident(&self.name)
    }

    /// The directory of the cluster's unix-domain socket, for `host=` or `PGHOST`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A new connection over the unix socket, which works whatever pg_hba.conf says about TCP.
    pub fn client(&self) -> postgres::Client {
        connect(&self.socket_dir, self.port, &self.name)
    }

    /// Runs one or more statements.
    pub fn exec(&self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            panic!(
                "SQL failed on {}: {}\n--- SQL ---\n{sql}",
                self.name,
                describe(&e)
            );
        }
    }

    /// The first column of the first row, parsed as an integer (any integer type will do).
    pub fn scalar_i64(&self, sql: &str) -> i64 {
        let text = self.scalar_string(sql);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}\nreturned {text:?}, not an integer: {e}"))
    }

    /// The first column of the first row as text; panics on no row or NULL.
    pub fn scalar_string(&self, sql: &str) -> String {
        let rows = self.rows_text(sql);
        let first = rows
            .first()
            .unwrap_or_else(|| panic!("{sql}\nreturned no rows on {}", self.name));
        match first.first() {
            Some(Some(value)) => value.clone(),
            Some(None) => panic!("{sql}\nreturned NULL on {}", self.name),
            None => panic!("{sql}\nreturned no columns on {}", self.name),
        }
    }

    /// All rows of the last statement, every value in its text form (NULL as `None`).
    pub fn rows_text(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        simple_rows(&mut self.client(), sql, &self.name)
    }

    /// `count(*)` of an already quoted, possibly schema-qualified table.
    pub fn count(&self, table: &str) -> i64 {
        self.scalar_i64(&format!("SELECT count(*) FROM {table}"))
    }

    /// An order-independent checksum of a table's content, `"count:md5"`.
    ///
    /// Rows are rendered as `ROW(col, ...)::text` with the given, already quoted columns, so
    /// two tables whose physical column order differs compare equal when the columns are named
    /// in the same order. An empty `columns` uses the whole row in physical order. Output
    /// settings that change the text of floats, dates and intervals are pinned first.
    pub fn checksum(&self, table: &str, columns: &[&str]) -> String {
        let row = if columns.is_empty() {
            "t::text".to_string()
        } else {
            format!("ROW({})::text", columns.join(", "))
        };
        let sql = format!(
            "SET extra_float_digits = 3;
             SET DateStyle = 'ISO, MDY';
             SET IntervalStyle = postgres;
             SET TimeZone = 'UTC';
             SELECT count(*) || ':' || md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), ''))
             FROM (SELECT {row} AS r FROM {table} AS t) AS rows"
        );
        self.scalar_string(&sql)
    }
}

/// A superuser connection to `db` over the unix socket in `socket_dir`.
pub(super) fn connect(socket_dir: &Path, port: u16, db: &str) -> postgres::Client {
    let mut config = postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(PG_USER)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    config
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connecting to {db} on port {port}: {}", describe(&e)))
}

fn simple_rows(client: &mut postgres::Client, sql: &str, db: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("SQL failed on {db}: {}\n--- SQL ---\n{sql}", describe(&e)));
    // With several statements only the last one's rows count; a new RowDescription starts them.
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            SimpleQueryMessage::RowDescription(_) => rows.clear(),
            _ => {}
        }
    }
    rows
}

/// The server's whole message (severity, text, detail, hint, position) or the client error.
pub(super) fn describe(e: &postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("{e:#}");
    };
    let mut text = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("\nHINT: {hint}"));
    }
    if let Some(context) = db.where_() {
        text.push_str(&format!("\nCONTEXT: {context}"));
    }
    text
}

/// A database name from a test name: lower case letters, digits and `_`, at most 63 bytes
/// (PostgreSQL's limit), with a hash suffix when it had to be cut so names stay distinct.
pub(super) fn db_name(test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 63 {
        return clean;
    }
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher.
    let hash = test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{:08x}", &clean[..54], hash as u32)
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
