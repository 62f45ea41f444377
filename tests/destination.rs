//! The destination as production has it: a table owner or a loader that is no superuser,
//! row-level security forced on a table, an extension's configuration tables, partitions only
//! the destination has, materialized views built from the copied tables, large objects. Each
//! case ends with the source's data and what belongs to the destination kept, or in a refusal
//! that changes nothing.

use crate::util::{
    assert_exit, both, copy, copy_to, exit, make_config_table, pair, verify, TestDb,
};

#[test]
fn the_destination_role_is_asked_only_what_it_may_do() {
    let (src, dst) = pair!();
    let (owner, loader) = ("rights_table_owner", "rights_loader");
    let schema = "CREATE TABLE big (id int PRIMARY KEY, v text); CREATE TABLE audited (id int)";
    both(&src, &dst, schema);
    // About 4 MiB: `--indexes auto` would rebuild its primary key.
    src.exec(
        "INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 30000) i;
         INSERT INTO audited SELECT generate_series(1, 10)",
    );
    // The tables' owner, without CREATE on the schema (PostgreSQL 15's default for public),
    // and a loader that may write the tables but owns none.
    dst.exec(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE ROLE {owner} LOGIN; CREATE ROLE {loader} LOGIN;
         ALTER TABLE big OWNER TO {owner}; ALTER TABLE audited OWNER TO {owner};
         GRANT SELECT, INSERT, TRUNCATE ON big, audited TO {loader};
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER audited_stamp BEFORE INSERT ON audited
             FOR EACH ROW EXECUTE FUNCTION stamp()"
    ));
    let keys = "SELECT count(*) FROM pg_constraint WHERE conname = 'big_pkey'";

    // The owner: auto keeps the indexes it may not build again, and says so.
    let out = copy_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr
            .contains("keeping the indexes of 1 tables as they are"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64(keys), 1);
    assert_eq!(src.checksum("big", &[]), dst.checksum("big", &[]));

    // Asked to rebuild them: refused while planning, with the reason.
    dst.exec("TRUNCATE big");
    let out = copy_to(&src.url(), &dst.url_as(owner), &["--indexes", "rebuild"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("may not build the indexes of these destination tables again")
            && out.stderr.contains("\n  public.big\n"),
        "{out:?}"
    );
    assert_eq!(dst.count("big"), 0, "nothing was changed");

    // The loader may not switch the trigger off: refused, unless it may fire.
    let out = copy_to(&src.url(), &dst.url_as(loader), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("whose triggers would fire")
            && out.stderr.contains("\n  public.audited\n"),
        "{out:?}"
    );
    let out = copy_to(&src.url(), &dst.url_as(loader), &["--enable-triggers"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(src.checksum("big", &[]), dst.checksum("big", &[]));
    assert_eq!(src.checksum("audited", &[]), dst.checksum("audited", &[]));
}

#[test]
fn a_destination_table_under_a_forced_policy_is_refused_while_planning() {
    let (src, dst) = pair!();
    let owner = "forced_policy_owner";
    both(&src, &dst, "CREATE TABLE guarded (id int PRIMARY KEY)");
    src.exec("INSERT INTO guarded SELECT generate_series(1, 50)");
    // The owner of the table, not a superuser, and not the owner of the schema.
    dst.exec(&format!(
        "INSERT INTO guarded VALUES (-1);
         CREATE ROLE {owner} LOGIN;
         ALTER TABLE guarded OWNER TO {owner};
         ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
         ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
         CREATE POLICY everything ON guarded USING (true)"
    ));

    let out = copy_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("row-level security on these destination tables applies to")
            && out.stderr.contains("\n  public.guarded\n"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT min(id) FROM guarded"), -1);

    // Without FORCE its owner is not subject to the policy: copied.
    dst.exec("ALTER TABLE guarded NO FORCE ROW LEVEL SECURITY");
    let out = copy_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(src.checksum("guarded", &[]), dst.checksum("guarded", &[]));
}

#[test]
fn extension_configuration_tables_carry_the_users_rows_and_keep_the_extensions() {
    let (src, dst) = pair!();
    for db in [&src, &dst] {
        db.exec(
            "CREATE TABLE settings (key text PRIMARY KEY, value text,
                                    builtin bool NOT NULL DEFAULT false);
             INSERT INTO settings VALUES ('version', '1', true)",
        );
        make_config_table(db, "settings", "WHERE NOT builtin");
    }
    src.exec("INSERT INTO settings VALUES ('theme', 'dark', false), ('lang', 'fr', false)");
    // The destination's extension has its own version of its own row.
    dst.exec(
        "INSERT INTO settings VALUES ('stale', 'x', false);
         UPDATE settings SET value = '2' WHERE key = 'version'",
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        dst.rows_text("SELECT key, value FROM settings ORDER BY key"),
        [["lang", "fr"], ["theme", "dark"], ["version", "2"]]
            .map(|row| row.map(|v| Some(v.to_string())).to_vec())
            .to_vec(),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("verified: 1 of 1 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn partitions_only_the_destination_has_are_emptied_with_their_table() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events
             FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    );
    dst.exec(
        "CREATE TABLE events_2023 PARTITION OF events
             FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         INSERT INTO events VALUES (1, '2023-05-01'), (2, '2024-05-01')",
    );
    src.exec("INSERT INTO events SELECT i, '2024-01-01'::date + i FROM generate_series(1, 300) i");

    // Naming one partition leaves the others alone.
    let out = copy(&src, &dst, &["--include-tables", "events_2024"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("events_2023"), 1);

    // Naming the partitioned table replaces it whole, its destination-only partition too.
    let out = copy(&src, &dst, &["--include-tables", "events", "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains(
            "public.events_2023 is a partition of public.events only the destination has"
        ),
        "{out:?}"
    );
    assert_eq!(dst.count("events_2023"), 0);
    assert_eq!(src.checksum("events", &[]), dst.checksum("events", &[]));
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn materialized_views_built_from_copied_tables_are_refreshed_in_order() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE sales (id int, amount int);
         CREATE VIEW big_sales AS SELECT * FROM sales WHERE amount > 10;
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS s FROM big_sales;
         CREATE MATERIALIZED VIEW doubled AS SELECT n * 2 AS n2 FROM totals;
         CREATE MATERIALIZED VIEW never AS SELECT count(*) AS n FROM sales WITH NO DATA",
    );
    src.exec(
        "INSERT INTO sales SELECT i, i % 50 FROM generate_series(1, 1000) i;
         REFRESH MATERIALIZED VIEW totals; REFRESH MATERIALIZED VIEW doubled",
    );
    let view = |db: &TestDb, name: &str| db.rows_text(&format!("TABLE {name}"));

    let out = copy(&src, &dst, &["--no-refresh-materialized-views"]);
    assert_exit!(out, exit::SUCCESS);
    assert_ne!(
        view(&dst, "totals"),
        view(&src, "totals"),
        "left stale, as asked"
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("materialized views refreshed: 2"),
        "{out:?}"
    );
    assert_eq!(view(&dst, "totals"), view(&src, "totals"));
    assert_eq!(view(&dst, "doubled"), view(&src, "doubled"), "after totals");
    assert_eq!(
        dst.scalar_string("SELECT relispopulated::text FROM pg_class WHERE relname = 'never'"),
        "false",
        "not populated on the source either"
    );
}

#[test]
fn materialized_views_the_source_populated_are_populated_from_no_table_too() {
    let (src, dst) = pair!();
    // As `pg_dump --schema-only` makes the destination: every view WITH NO DATA.
    let views = |data: &str| {
        format!(
            "CREATE TABLE items (id int);
             CREATE MATERIALIZED VIEW constant AS SELECT 1 AS id {data};
             CREATE MATERIALIZED VIEW series AS SELECT i FROM generate_series(1, 5) i {data};
             CREATE MATERIALIZED VIEW on_views AS
                 SELECT c.id, count(*) AS n FROM constant c, series s GROUP BY c.id {data};
             CREATE MATERIALIZED VIEW on_items AS SELECT count(*) AS n FROM items {data};
             CREATE MATERIALIZED VIEW unused AS SELECT 2 AS id WITH NO DATA"
        )
    };
    src.exec(&views("WITH DATA"));
    src.exec("INSERT INTO items SELECT generate_series(1, 7); REFRESH MATERIALIZED VIEW on_items");
    dst.exec(&views("WITH NO DATA"));

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("materialized views refreshed: 4"),
        "{out:?}"
    );
    for view in ["constant", "series", "on_views", "on_items"] {
        assert_eq!(
            dst.rows_text(&format!("TABLE {view} ORDER BY 1")),
            src.rows_text(&format!("TABLE {view} ORDER BY 1")),
            "{view}"
        );
    }
    assert_eq!(
        dst.scalar_string("SELECT relispopulated::text FROM pg_class WHERE relname = 'unused'"),
        "false",
        "not populated on the source either"
    );
}

#[test]
fn large_objects_are_copied_with_their_oids_owners_and_grants() {
    let (src, dst) = pair!();
    let role = "large_object_reader";
    src.exec(&format!("CREATE ROLE {role}"));
    dst.exec(&format!("CREATE ROLE {role}"));
    both(&src, &dst, "CREATE TABLE docs (id int, content oid)");
    // Three pieces and a bit, to go through in several reads.
    src.exec(&format!(
        "SELECT lo_from_bytea(424242, 'hello');
         SELECT lo_from_bytea(424243, decode(repeat('ab', 3 * 1024 * 1024 + 7), 'hex'));
         SELECT lo_from_bytea(424244, '');
         ALTER LARGE OBJECT 424242 OWNER TO {role};
         GRANT SELECT ON LARGE OBJECT 424243 TO {role};
         INSERT INTO docs VALUES (1, 424242), (2, 424243), (3, 424244)"
    ));
    dst.exec("SELECT lo_from_bytea(424242, 'stale'); SELECT lo_from_bytea(999, 'gone')");
    let objects = "SELECT m.oid::text, pg_get_userbyid(m.lomowner)::text,
                          coalesce(md5(lo_get(m.oid)), ''),
                          (SELECT string_agg(pg_get_userbyid(g.grantee) || ':' || g.privilege_type,
                                             ',' ORDER BY 1)
                           FROM aclexplode(m.lomacl) g WHERE g.grantee <> m.lomowner)
                   FROM pg_largeobject_metadata m ORDER BY m.oid";

    // Narrowed to some tables, the copy leaves them alone, as pg_dump -t does.
    let out = copy(&src, &dst, &["--include-tables", "docs"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        dst.scalar_string("SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("large objects: 3 copied (3.0 MiB)"),
        "{out:?}"
    );
    assert_eq!(dst.rows_text(objects), src.rows_text(objects));
    assert_eq!(
        dst.scalar_string("SELECT convert_from(lo_get(424242), 'UTF8')"),
        "hello"
    );
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "docs and the large objects: {out:?}"
    );
    let out = verify(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("pg_catalog.pg_largeobject"), "{out:?}");

    // --no-large-objects leaves them too; verify then sees the difference.
    dst.exec("SELECT lo_unlink(424244)");
    let out = copy(&src, &dst, &["--no-large-objects"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        dst.scalar_string("SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );
    let out = verify(&src, &dst, &[]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
}
