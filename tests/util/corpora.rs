//! Third-party schemas and data from `../shared/corpora/`, loaded without client programs:
//! pagila (partitioned payments whose foreign keys are declared on each leaf but the last,
//! personal data in customers, staff and addresses), as its release's files have it.

use super::db::TestDb;
use std::io::Write;
use std::path::PathBuf;

/// The corpora directory, beside the project's clone.
fn corpus(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora")
        .join(name);
    assert!(
        dir.is_dir(),
        "the corpus {} is missing: the tests need ../shared beside the clone",
        dir.display()
    );
    dir
}

fn read(name: &str, file: &str) -> String {
    let path = corpus(name).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// pagila's schema, as `pagila-schema.sql` creates it (a `pg_dump` of it: plain SQL).
pub fn pagila_schema(db: &TestDb) {
    db.exec(&read("pagila", "pagila-schema.sql"));
}

/// pagila's schema and data: the data file's `COPY … FROM stdin` blocks copied in, its
/// other statements run.
pub fn load_pagila(db: &TestDb) {
    pagila_schema(db);
    let data = read("pagila", "pagila-data.sql");
    let mut client = db.client();
    let mut lines = data.lines();
    let mut statements = String::new();
    while let Some(line) = lines.next() {
        if line.starts_with("COPY ") && line.ends_with("FROM stdin;") {
            client
                .batch_execute(&std::mem::take(&mut statements))
                .expect("pagila's statements");
            let mut rows = String::new();
            for row in lines.by_ref() {
                if row == "\\." {
                    break;
                }
                rows.push_str(row);
                rows.push('\n');
            }
            let mut writer = client
                .copy_in(line.trim_end_matches(';'))
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            writer.write_all(rows.as_bytes()).expect("pagila's rows");
            writer.finish().unwrap_or_else(|e| panic!("{line}: {e}"));
        } else {
            statements.push_str(line);
            statements.push('\n');
        }
    }
    client
        .batch_execute(&statements)
        .expect("pagila's last statements");
    client.batch_execute("ANALYZE").expect("ANALYZE");
}
