//! Verifying: `pgcopy verify` and `copy --verify` compare row counts and checksums that each
//! server computes itself, whatever the destination's column order or session settings, and
//! `copy --verify` reads the copy's own snapshot, so a busy source still verifies.

use crate::util::{
    assert_exit, both, copy, copy_to, exit, finish, lock_table, pair, spawn_copy, verify,
    verify_to, wait_for_blocked_pgcopy,
};

#[test]
fn verify_compares_counts_and_checksums_computed_on_each_server() {
    let (src, dst) = pair!();
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, f float8, at timestamptz, j jsonb);
         CREATE TABLE u (id int);
         INSERT INTO t SELECT i, 'v' || i, 1.0 / i, now(), jsonb_build_object('i', i)
         FROM generate_series(1, 3000) i;
         INSERT INTO u SELECT generate_series(1, 10)",
    );
    // The same columns in another physical order on the destination.
    dst.exec(
        "CREATE TABLE t (j jsonb, at timestamptz, f float8, v text, id int PRIMARY KEY);
         CREATE TABLE u (id int);
         SET TimeZone = 'Asia/Tokyo'",
    );
    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);

    let out = verify(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("verified 2 tables: 2 match, 0 differ"),
        "{out:?}"
    );

    dst.exec("UPDATE t SET v = 'changed' WHERE id = 1234");
    let out = verify(&src, &dst, &[]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("public.t "))
        .unwrap_or_default();
    assert!(line.contains("contents differ"), "{out:?}");

    dst.exec("DELETE FROM u WHERE id = 1");
    let out = verify(&src, &dst, &["--json"]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("verify --json parses");
    assert_eq!(doc["status"], "mismatch");
    assert_eq!(doc["mismatches"], 2);
    let u = doc["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["table"] == "u"))
        .expect("u is reported");
    assert_eq!(u["verdict"], "row counts differ");
    assert_eq!(u["source"]["rows"], 10);
    assert_eq!(u["destination"]["rows"], 9);
}

#[test]
fn copy_verify_reads_the_copy_snapshot_so_a_busy_source_still_verifies() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE busy (id int); CREATE TABLE slow (id int)",
    );
    src.exec("INSERT INTO busy SELECT generate_series(1, 100); INSERT INTO slow VALUES (1)");
    let locker = lock_table(&dst, "slow");
    let child = spawn_copy(&src, &dst, &["--verify"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    // Written after the copy's snapshot: the copy does not carry it, and must not see it.
    src.exec("INSERT INTO busy SELECT generate_series(101, 150)");
    drop(locker);
    let out = finish(child);

    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
    assert_eq!(dst.count("busy"), 100);
    let out = verify(&src, &dst, &[]);
    assert_exit!(
        out,
        exit::VERIFY_MISMATCH,
        "a later verify sees the new rows"
    );
}

#[test]
fn large_objects_verify_as_a_non_superuser_destination_role() {
    let (src, dst) = pair!();
    let (owner, gone, kept) = ("lo_verify_owner", "lo_verify_gone", "lo_verify_kept");
    // `gone` owns two objects on the source and does not exist on the destination; `kept`
    // exists on both, but the destination role may not give objects to it.
    src.exec(&format!(
        "CREATE ROLE {gone}; CREATE ROLE {kept};
         CREATE TABLE docs (id int, content oid);
         SELECT lo_from_bytea(515151, 'one'); SELECT lo_from_bytea(515152, 'two');
         SELECT lo_from_bytea(515153, 'three');
         ALTER LARGE OBJECT 515151 OWNER TO {gone}; ALTER LARGE OBJECT 515152 OWNER TO {gone};
         ALTER LARGE OBJECT 515153 OWNER TO {kept};
         INSERT INTO docs VALUES (1, 515151), (2, 515152), (3, 515153)"
    ));
    dst.exec(&format!(
        "CREATE ROLE {kept}; CREATE ROLE {owner} LOGIN;
         CREATE TABLE docs (id int, content oid); ALTER TABLE docs OWNER TO {owner}"
    ));

    let out = copy_to(&src.url(), &dst.url_as(owner), &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("match; not checked: the owner of 3, whose source owner"),
        "the owners it kept on purpose are said, not called different: {out:?}"
    );
    let out = verify_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::SUCCESS);

    // The destination role may not read an object another role owns: not compared, said.
    dst.exec(&format!("ALTER LARGE OBJECT 515153 OWNER TO {kept}"));
    let out = verify_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains("the data of 1, which the source or destination role may not read"),
        "{out:?}"
    );

    // A real difference is still one.
    dst.exec("SELECT lo_put(515151, 0, 'ONE')");
    let out = verify_to(&src.url(), &dst.url_as(owner), &[]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    assert!(
        out.stdout.contains("contents differ: 515151: data"),
        "{out:?}"
    );
}
