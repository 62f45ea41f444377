//! What a test compares before and after a run: the destination's foreign keys, constraints
//! and triggers as the catalog defines them, and the contents of tables on both sides.

use super::db::TestDb;

/// A definition of every foreign key in a database, to compare before and after.
pub fn foreign_keys(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated::text
         FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2",
    )
}

/// Just the names of `foreign_keys()`: what must be back even where a key could not be
/// validated yet.
pub fn key_names(keys: &[Vec<Option<String>>]) -> Vec<Option<String>> {
    keys.iter().map(|k| k[1].clone()).collect()
}

/// Every table constraint of a database: its table, name, definition, whether it is
/// validated, and its comment.
pub fn constraints(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid),
                convalidated::text, obj_description(oid, 'pg_constraint')
         FROM pg_constraint
         WHERE conrelid <> 0 AND connamespace <> 'pg_catalog'::regnamespace ORDER BY 1, 2",
    )
}

/// Every user trigger of a database and how it is enabled.
pub fn triggers(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT tgrelid::regclass::text, tgname, tgenabled::text
         FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    )
}

/// Asserts that each table has the same rows on both sides (`TestDb::checksum` of the whole
/// row), naming the first that differs.
#[track_caller]
pub fn assert_same_data(src: &TestDb, dst: &TestDb, tables: &[&str]) {
    for table in tables {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
}
