//! Integration tests: the real `pgcopy` binary against throwaway PostgreSQL clusters. One
//! test crate (as ripgrep does), with a module per area and the shared helpers here.

mod copying;
mod integrity;
mod operator;
mod util;

use util::{Output, TestDb};

/// `pgcopy copy --yes` from `src` to `dst` with extra arguments.
pub fn copy(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Output {
    util::run(
        util::pgcopy()
            .args([
                "copy",
                "--source",
                &src.url(),
                "--dest",
                &dst.url(),
                "--yes",
            ])
            .args(extra),
    )
}

/// Runs the same SQL on both databases: the schema both sides share.
pub fn both(src: &TestDb, dst: &TestDb, sql: &str) {
    src.exec(sql);
    dst.exec(sql);
}

/// Shifts the destination's OID counter so that types created next get other OIDs than on
/// the source, as they do between real databases.
pub fn shift_oids(dst: &TestDb) {
    dst.exec("CREATE TYPE shift_oids AS ENUM ('x'); CREATE TABLE shift_oids_t (a int)");
}

/// A definition of every foreign key in a database, to compare before and after.
pub fn foreign_keys(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated::text
         FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2",
    )
}

/// Every user trigger of a database and how it is enabled.
pub fn triggers(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT tgrelid::regclass::text, tgname, tgenabled::text
         FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    )
}
