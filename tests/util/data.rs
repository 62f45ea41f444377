//! Schemas and data the tests share, in SQL (the tests need no client programs, and the same
//! SQL goes to servers of any version): pgbench's tables, a set of foreign keys of every kind
//! with a table whose trigger rejects rows, and the small moves that make two databases look
//! like real ones (OIDs that differ, an extension's configuration table).

use super::db::TestDb;

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

/// Makes `table` a configuration table of the citext extension, as an extension's script
/// does with `pg_extension_config_dump`: a member of the extension, whose rows `condition`
/// picks are the user's (the others the extension's own).
pub fn make_config_table(db: &TestDb, table: &str, condition: &str) {
    db.exec(&format!(
        "CREATE EXTENSION IF NOT EXISTS citext;
         ALTER EXTENSION citext ADD TABLE {table};
         UPDATE pg_extension
         SET extconfig = array_append(extconfig, '{table}'::regclass::oid),
             extcondition = array_append(extcondition, '{}')
         WHERE extname = 'citext'",
        condition.replace('\'', "''")
    ));
}

// ---------------------------------------------------------------------------------------------
// pgbench
// ---------------------------------------------------------------------------------------------

/// pgbench's four tables with their keys, as `pgbench -i --foreign-keys` makes them.
const PGBENCH_SCHEMA: &str = "
    CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp,
                                  filler char(22));
    CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84))
        WITH (fillfactor = 100);
    CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))
        WITH (fillfactor = 100);
    CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88))
        WITH (fillfactor = 100);
    ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
    ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
    ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
    ALTER TABLE pgbench_tellers ADD CONSTRAINT pgbench_tellers_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_tid_fkey
        FOREIGN KEY (tid) REFERENCES pgbench_tellers;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_aid_fkey
        FOREIGN KEY (aid) REFERENCES pgbench_accounts";

/// pgbench's tables, empty: the schema of a `load_pgbench` source.
pub fn pgbench_schema(db: &TestDb) {
    db.exec(PGBENCH_SCHEMA);
}

/// pgbench's tables filled as `pgbench -i -s SCALE --foreign-keys` fills them: 100,000
/// accounts, 10 tellers and a branch per unit of scale.
pub fn load_pgbench(db: &TestDb, scale: u32) {
    pgbench_schema(db);
    db.exec(&format!(
        "INSERT INTO pgbench_branches (bid, bbalance)
             SELECT b, 0 FROM generate_series(1, {scale}) b;
         INSERT INTO pgbench_tellers (tid, bid, tbalance)
             SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, {tellers}) t;
         INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
             SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, {accounts}) a;
         ANALYZE",
        tellers = 10 * scale,
        accounts = 100_000 * scale
    ));
}

// ---------------------------------------------------------------------------------------------
// Keys of every kind
// ---------------------------------------------------------------------------------------------

/// Keys of every kind: a chain a <- b <- c, a cycle x <-> y with deferrable keys, a
/// self-reference, a composite MATCH FULL key.
pub const KEYS_SCHEMA: &str = "
    CREATE TABLE a (id int PRIMARY KEY);
    CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
    CREATE TABLE c (id int PRIMARY KEY, b_id int REFERENCES b ON DELETE CASCADE);
    CREATE TABLE x (id int PRIMARY KEY, y_id int);
    CREATE TABLE y (id int PRIMARY KEY, x_id int REFERENCES x DEFERRABLE INITIALLY DEFERRED);
    ALTER TABLE x ADD CONSTRAINT x_y_fk FOREIGN KEY (y_id) REFERENCES y DEFERRABLE;
    CREATE TABLE node (id int PRIMARY KEY, parent int REFERENCES node ON UPDATE CASCADE);
    CREATE TABLE pair_parent (a int, b int, PRIMARY KEY (a, b));
    CREATE TABLE pair_child (id int, a int, b int,
        FOREIGN KEY (a, b) REFERENCES pair_parent MATCH FULL ON DELETE SET NULL);";

const KEYS_DATA: &str = "
    INSERT INTO a SELECT generate_series(1, 300);
    INSERT INTO b SELECT i, i FROM generate_series(1, 300) i;
    INSERT INTO c SELECT i, 301 - i FROM generate_series(1, 300) i;
    BEGIN;
    SET CONSTRAINTS ALL DEFERRED;
    INSERT INTO y SELECT i, i FROM generate_series(1, 50) i;
    INSERT INTO x SELECT i, i FROM generate_series(1, 50) i;
    COMMIT;
    INSERT INTO node VALUES (1, NULL);
    INSERT INTO node SELECT i, i - 1 FROM generate_series(2, 200) i;
    INSERT INTO pair_parent SELECT i, -i FROM generate_series(1, 40) i;
    INSERT INTO pair_child SELECT i, i, -i FROM generate_series(1, 40) i;
    INSERT INTO pair_child VALUES (41, NULL, NULL);";

/// A table without keys whose trigger rejects every row, so that a load that does not keep
/// the triggers quiet fails.
pub const BLOCKER_SCHEMA: &str = "
    CREATE TABLE blocker (id int);
    CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RAISE EXCEPTION 'rejected by trigger on %', TG_TABLE_NAME; END $$;
    CREATE TRIGGER blocker_reject BEFORE INSERT ON blocker
        FOR EACH ROW EXECUTE FUNCTION reject()";

/// The tables of `KEYS_SCHEMA` and `BLOCKER_SCHEMA`, `blocker` last.
pub const KEY_TABLES: [&str; 9] = [
    "a",
    "b",
    "c",
    "x",
    "y",
    "node",
    "pair_parent",
    "pair_child",
    "blocker",
];

/// A fresh pair (from `pair!()`) given the keys schema on both sides, source data, and
/// different stale rows on the destination. `blocker` has no keys, so a test can lock it
/// without holding up the drop of the keys.
pub fn with_keys((src, dst): (TestDb, TestDb)) -> (TestDb, TestDb) {
    both(&src, &dst, KEYS_SCHEMA);
    both(&src, &dst, BLOCKER_SCHEMA);
    src.exec(KEYS_DATA);
    src.exec("ALTER TABLE blocker DISABLE TRIGGER blocker_reject; INSERT INTO blocker SELECT generate_series(1, 10)");
    src.exec("ALTER TABLE blocker ENABLE TRIGGER blocker_reject");
    dst.exec("INSERT INTO a VALUES (1000); INSERT INTO b VALUES (1000, 1000); INSERT INTO node VALUES (7, 7)");
    dst.exec("ALTER TABLE blocker DISABLE TRIGGER blocker_reject; INSERT INTO blocker VALUES (-1)");
    dst.exec("ALTER TABLE blocker ENABLE TRIGGER blocker_reject");
    (src, dst)
}
