//! Verifying: `pgcopy verify` and `copy --verify` compare row counts and checksums that each
//! server computes itself, whatever the destination's column order or session settings, and
//! `copy --verify` reads the copy's own snapshot, so a busy source still verifies.

use crate::util::{
    assert_exit, both, copy, exit, finish, lock_table, pair, spawn_copy, verify,
    wait_for_blocked_pgcopy,
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
