//! Following a live source (`copy --follow`, built in steps): `status` says whether a source
//! can be followed — `wal_level`, free slots and WAL senders, a role that may replicate and
//! publish, a replication session that opens — and names each selected table without a
//! usable replica identity, with the statement that gives it one. Against the shared
//! `wal_level = replica` source and a `wal_level = logical` cluster of the test's own.

use crate::util::{
    self, assert_exit, assert_nothing_left, cut_over, exit, logical_options, pgbench, test_name,
    wait_following, wait_pgbench, wait_streaming_anew, ClusterOptions,
};

#[test]
fn status_names_what_a_source_lacks_to_be_followed() {
    let logical = util::start_cluster(
        ClusterOptions::default()
            .conf("wal_level", "logical")
            .conf("max_replication_slots", "4")
            .conf("max_wal_senders", "4"),
    );
    let db = logical.create_db(&test_name!());
    let role = "follow_status_app";
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN;
         CREATE TABLE keyed (id int PRIMARY KEY, v text);
         CREATE TABLE full_identity (v text); ALTER TABLE full_identity REPLICA IDENTITY FULL;
         CREATE TABLE \"odd.name\" (code text NOT NULL, v text);
         CREATE UNIQUE INDEX odd_code ON \"odd.name\" (code);
         CREATE TABLE bare (v text);
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         ALTER TABLE keyed OWNER TO {role}"
    ));
    let status = |url: &str, extra: &[&str]| {
        util::run(util::pgcopy().args(["status", "--source", url]).args(extra))
    };

    // A superuser on a logical server: only the tables stand in the way.
    let out = status(&db.url(), &[]);
    assert_exit!(out, exit::USAGE);
    for expected in [
        "wal_level = logical",
        "opens: timeline 1 at ",
        "public.bare (replica identity default, and no primary key): ALTER TABLE \"public\".\"bare\" REPLICA IDENTITY FULL;",
        "public.\"odd.name\" (replica identity default, and no primary key): ALTER TABLE \"public\".\"odd.name\" REPLICA IDENTITY USING INDEX \"odd_code\";",
        "public.nothing (replica identity nothing)",
        "the source is not ready to be followed",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {out:?}");
    }
    assert!(!out.stdout.contains("public.keyed ("), "{out:?}");
    assert!(!out.stdout.contains("public.full_identity ("), "{out:?}");

    let out = status(&db.url(), &["--include-tables", "keyed,full_identity"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("the source is ready to be followed"),
        "{out:?}"
    );

    // The tables' owner, without REPLICATION or CREATE on the database.
    let out = status(&db.url_as(role), &["--include-tables", "keyed", "--json"]);
    assert_exit!(out, exit::USAGE);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ready"], false);
    let unmet: Vec<(&str, &str)> = doc["requirements"]
        .as_array()
        .expect("requirements")
        .iter()
        .filter(|r| r["met"] == false)
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default();
            (text("needs"), text("fix"))
        })
        .collect();
    assert_eq!(unmet.len(), 3, "{unmet:?}");
    assert!(
        unmet[0]
            .1
            .starts_with(&format!("ALTER ROLE {role} REPLICATION")),
        "{unmet:?}"
    );
    assert!(
        unmet[1]
            .1
            .starts_with("CREATE PUBLICATION needs CREATE on the database"),
        "{unmet:?}"
    );
    // The server itself refuses the WAL sender, and says why.
    assert_eq!(unmet[2].0, "a replication session", "{unmet:?}");
    // PostgreSQL 14 on: "must be superuser or replication role"; 13: "Only roles with the
    // REPLICATION attribute may start a WAL sender process".
    assert!(
        unmet[2].1.contains("replication role") || unmet[2].1.contains("REPLICATION attribute"),
        "{unmet:?}"
    );
    db.exec(&format!(
        "ALTER ROLE {role} REPLICATION; GRANT CREATE ON DATABASE {} TO {role}",
        db.quoted_name()
    ));
    let out = status(&db.url_as(role), &["--include-tables", "keyed"]);
    assert_exit!(out, exit::SUCCESS);

    // The shared source runs wal_level = replica.
    let (src, _) = util::pair!();
    src.exec("CREATE TABLE t (id int PRIMARY KEY)");
    let out = status(&src.url(), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stdout
            .contains("ALTER SYSTEM SET wal_level = logical, then restart the server"),
        "{out:?}"
    );
}

/// The tables every following test writes to: pgbench's (its history with a key, so a
/// doubled transaction is a duplicate), a TOASTed value, a table with `REPLICA IDENTITY
/// FULL` and twin rows, two tables truncated together, and one with a second unique key.
const SCHEMA: &str = "
    CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
    CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
    CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
    CREATE TABLE pgbench_history (id bigserial PRIMARY KEY, tid int, bid int, aid int,
                                  delta int, mtime timestamp, filler char(22));
    CREATE TABLE docs (id int PRIMARY KEY, title text, body text, price numeric(30,10));
    ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE tags (label text, n int, doc json, at point);
    ALTER TABLE tags REPLICA IDENTITY FULL;
    CREATE TABLE \"odd.parent\" (id int PRIMARY KEY);
    CREATE TABLE \"odd.child\" (id int PRIMARY KEY, parent int REFERENCES \"odd.parent\");
    CREATE TABLE seats (id int PRIMARY KEY, code int UNIQUE);
    CREATE TYPE mood AS ENUM ('calm', 'odd''s');
    CREATE TABLE kinds (id int PRIMARY KEY, i8 bigint, f8 double precision, f4 real,
                        n numeric, ts timestamptz, t timestamp, d date, tm time, iv interval,
                        b bytea, j json, jb jsonb, u uuid, ip inet, ia int[], ta text[],
                        ok boolean, p point, m mood, bits varbit, r int4range);";

fn load(db: &util::TestDb) {
    db.exec(
        "INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, 2) b;
         INSERT INTO pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, '' FROM generate_series(1, 20) t;
         INSERT INTO pgbench_accounts
             SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, 200000) a;
         INSERT INTO docs
             SELECT d, 'doc ' || d, (SELECT string_agg(md5(d::text || i::text), '')
                                       FROM generate_series(1, 400) i),
                    d * 1.0000000001
               FROM generate_series(1, 50) d;
         INSERT INTO tags VALUES ('twin', 1), ('twin', 1), ('single', 2);
         INSERT INTO seats VALUES (1, 1), (2, 5);
         INSERT INTO \"odd.parent\" SELECT generate_series(1, 10);
         INSERT INTO \"odd.child\" SELECT i, i FROM generate_series(1, 10) i;
         ANALYZE",
    );
}

const TABLES: &[&str] = &[
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_accounts",
    "pgbench_history",
    "docs",
    "tags",
    "\"odd.parent\"",
    "\"odd.child\"",
    "kinds",
    "seats",
];

/// A source cluster to follow and a destination cluster, each with the test's database
/// holding `SCHEMA`, the source's filled by `load`.
fn loaded_pair(name: &str) -> (util::Cluster, util::Cluster, util::TestDb, util::TestDb) {
    let (logical, destination, src, dst) = util::logical_pair(name);
    util::both(&src, &dst, SCHEMA);
    load(&src);
    (logical, destination, src, dst)
}

/// Writes that pgbench does not make: a TOASTed value left unchanged by an update, twin
/// rows of a table without a key, two tables truncated together, a key changed.
const EDITS: &str = "
    UPDATE docs SET title = 'retitled' WHERE id <= 10;
    UPDATE docs SET id = id + 1000 WHERE id = 11;
    DELETE FROM docs WHERE id = 12;
    UPDATE tags SET n = 5 WHERE label = 'single';
    UPDATE seats SET code = 2 WHERE id = 1;
    UPDATE seats SET code = 1 WHERE id = 2;
    UPDATE seats SET code = 5 WHERE id = 1;
    UPDATE tags SET doc = '{\"b\": [1,  2], \"a\": 1}', at = '(1.5,-2)' WHERE label = 'single';
    UPDATE tags SET n = 6 WHERE label = 'single';
    DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags WHERE label = 'twin');
    INSERT INTO tags VALUES (NULL, NULL);
    TRUNCATE \"odd.parent\", \"odd.child\";
    INSERT INTO \"odd.parent\" VALUES (99);
    INSERT INTO \"odd.child\" VALUES (1, 99);
    INSERT INTO kinds VALUES
        (1, 9223372036854775807, 0.1 + 0.2, 1.1, 1.000000000000000000000000000001,
         '2024-02-29 23:59:59.999999+05:30', '1999-12-31 23:59:59.5', '0001-01-01 BC',
         '24:00', '1 year 2 mons -3 days 04:05:06.7', '\\x00ff', '{\"a\": 1.50, \"a\": 2}',
         '{\"n\": 1.50}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '::ffff:10.0.0.1/128',
         '{1,NULL,3}', '{\"a,b\",\"\\\"q\\\"\",NULL}', true, '(1.5,-2)', 'odd''s', B'1011',
         '[1,10)'),
        (2, -1, 'NaN', '-Infinity', 'NaN', 'infinity', '-infinity', 'infinity', '00:00',
         '0', '', 'null', '[]', '00000000-0000-0000-0000-000000000000', '0.0.0.0', '{}',
         '{}', false, '(0,0)', 'calm', B'', 'empty'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    UPDATE kinds SET f8 = 1e-320, n = n * 3 WHERE id = 1;";

#[test]
fn follows_what_the_source_commits_during_and_after_the_copy_until_cutover() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    src.exec("SELECT lo_from_bytea(4242, 'before'); SELECT lo_from_bytea(4243, 'gone')");
    let writers = pgbench(&src, 2, 6);
    let mut follower = util::spawn_copy(&src, &dst, &["--follow", "--json"]);
    wait_following(&dst, &mut follower);
    src.exec(EDITS);
    // Large objects are not in the stream: copied again at cutover.
    src.exec(
        "SELECT lo_put(4242, 0, 'after'); SELECT lo_unlink(4243);
         SELECT lo_from_bytea(4244, 'new')",
    );
    let out = util::run(util::pgcopy().args(["status", "--source", &src.url(), "--json"]));
    assert_exit!(out, exit::SUCCESS);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let followers = doc["followers"].as_array().expect("followers");
    assert_eq!(followers.len(), 1, "{out:?}");
    assert!(followers[0]["slot"]
        .as_str()
        .unwrap_or_default()
        .starts_with("pgcopy_follow_"));
    assert!(followers[0]["wal_held_bytes"].as_u64().is_some(), "{out:?}");
    assert!(followers[0].get("lag_seconds").is_some(), "{out:?}");
    wait_pgbench(writers);
    let history = src.count("pgbench_history");
    assert!(history > 100, "pgbench made {history} transactions");

    let (out, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    assert!(out.stdout.contains("cut over in "), "{out:?}");
    // One document on stdout: the copy's report, and what following did.
    let doc: serde_json::Value = serde_json::from_str(&followed.stdout).expect("one JSON document");
    assert_eq!(doc["status"], "ok", "{followed:?}");
    assert_eq!(
        doc["tables"].as_array().map(Vec::len),
        Some(TABLES.len()),
        "{followed:?}"
    );
    let following = &doc["following"];
    assert_eq!(following["ended"], "cutover", "{followed:?}");
    assert!(
        following["transactions"].as_u64() > Some(100),
        "{followed:?}"
    );
    assert!(following["rows"].as_u64() > Some(100), "{followed:?}");
    assert_eq!(following["sequences_set"], 1, "{followed:?}");
    assert!(following["mark"].as_str().is_some(), "{followed:?}");
    assert!(followed.stderr.contains("cut over at "), "{followed:?}");

    util::assert_same_data(&src, &dst, TABLES);
    let objects = "SELECT string_agg(oid::text || ':' || encode(lo_get(oid), 'escape'), ','
                                     ORDER BY oid)
                     FROM pg_largeobject_metadata";
    assert_eq!(dst.scalar_string(objects), "4242:aftere,4244:new");
    assert_eq!(
        dst.scalar_string("SELECT title FROM docs WHERE id = 3"),
        "retitled"
    );
    assert_eq!(
        dst.scalar_i64("SELECT length(body) FROM docs WHERE id = 3"),
        400 * 32,
        "an update that left the TOASTed body alone kept it"
    );
    // The sequence of the history's key, from the source at cutover.
    assert_eq!(
        dst.scalar_i64("SELECT last_value FROM pgbench_history_id_seq"),
        src.scalar_i64("SELECT last_value FROM pgbench_history_id_seq")
    );
    assert_nothing_left(&src, &dst);
}

#[test]
fn a_follower_killed_mid_transaction_resumes_without_losing_or_doubling_one() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    let writers = pgbench(&src, 2, 14);
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    // Killed first while it applies a transaction of 200,000 rows, then while pgbench's
    // small ones stream in: some of them are committed on the destination and not yet
    // confirmed to the source, which sends them again.
    for round in 0..2 {
        if round == 0 {
            src.exec("UPDATE pgbench_accounts SET filler = 'x'");
            std::thread::sleep(std::time::Duration::from_millis(300));
        } else {
            // Past the big transaction, into the small ones.
            let before = dst.count("pgbench_history");
            let started = std::time::Instant::now();
            while dst.count("pgbench_history") < before + 300 {
                assert!(
                    started.elapsed().as_secs() < 60,
                    "the resumed follower applies nothing"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        follower.kill().expect("kill -9 of the follower");
        let killed = util::finish(follower);
        assert_eq!(killed.code, 128 + 9, "{killed:?}");
        follower = util::spawn_copy(&src, &dst, &["--follow", "--resume"]);
        wait_streaming_anew(&src, &mut follower, 0);
    }
    src.exec(EDITS);
    wait_pgbench(writers);
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &[]);
    assert!(
        followed
            .stderr
            .contains("resuming: the destination holds every source transaction up to"),
        "{followed:?}"
    );
    util::assert_same_data(&src, &dst, TABLES);
    assert_nothing_left(&src, &dst);
}

#[test]
fn table_owners_without_superuser_follow_with_keys_dropped_and_triggers_quiet() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    // On the source: the tables' owner, with REPLICATION and CREATE on the database (for
    // the publication), as `status` asks; no superuser.
    let reader = "follow_source_owner";
    src.exec(&format!(
        "CREATE ROLE {reader} LOGIN REPLICATION; GRANT CREATE ON DATABASE {} TO {reader}",
        src.quoted_name()
    ));
    for table in TABLES {
        src.exec(&format!("ALTER TABLE {table} OWNER TO {reader}"));
    }
    let from_reader = src.url_as(reader);
    let owner = "follow_table_owner";
    // The tables' owner: no superuser, so neither the replica role nor replication
    // origins; not the schema's owner, and no CREATE on it. Its triggers would write into
    // a table the source does not have.
    dst.exec(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE ROLE {owner} LOGIN;
         CREATE TABLE audit (n int);
         GRANT INSERT ON audit TO {owner};
         CREATE FUNCTION audited() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN INSERT INTO public.audit VALUES (1); RETURN NEW; END $$;
         CREATE TRIGGER history_audited AFTER INSERT ON pgbench_history
             FOR EACH ROW EXECUTE FUNCTION audited();
         CREATE TRIGGER accounts_audited AFTER UPDATE ON pgbench_accounts
             FOR EACH ROW EXECUTE FUNCTION audited();
         CREATE TRIGGER child_audited AFTER TRUNCATE ON \"odd.child\"
             FOR EACH STATEMENT EXECUTE FUNCTION audited();"
    ));
    for table in TABLES {
        dst.exec(&format!("ALTER TABLE {table} OWNER TO {owner}"));
    }
    let as_owner = dst.url_as(owner);
    let spawn = |extra: &[&str]| {
        util::copy_command(&from_reader, &as_owner, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting pgcopy")
    };

    // Where to record its progress is decided before anything is created.
    let out = util::run(&mut util::copy_command(
        &from_reader,
        &as_owner,
        &["--follow"],
    ));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(&format!(
            "`GRANT CREATE ON DATABASE {} TO {owner}`",
            dst.name
        )),
        "{out:?}"
    );
    assert_nothing_left(&src, &dst);
    dst.exec(&format!(
        "GRANT CREATE ON DATABASE {} TO {owner}",
        dst.quoted_name()
    ));

    let writers = pgbench(&src, 2, 10);
    let mut follower = spawn(&["--follow"]);
    wait_following(&dst, &mut follower);
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        0,
        "the keys stay dropped while following"
    );
    // Killed while pgbench's transactions stream in; resumed from pgcopy's table.
    let before = dst.count("pgbench_history");
    let started = std::time::Instant::now();
    while dst.count("pgbench_history") < before + 300 {
        if started.elapsed().as_secs() > 60 || follower.try_wait().ok().flatten().is_some() {
            follower.kill().ok();
            panic!("the follower applies nothing: {:?}", util::finish(follower));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    follower.kill().expect("kill -9 of the follower");
    let killed = util::finish(follower);
    assert!(
        killed
            .stderr
            .contains("recording how far following got in pgcopy.follow_progress"),
        "{killed:?}"
    );
    let follower = spawn(&["--follow", "--resume"]);
    src.exec(EDITS);
    wait_pgbench(writers);
    let (out, followed) = cut_over(&from_reader, &as_owner, follower, &["--json"]);
    assert!(
        followed.stderr.contains("put back 1 of 1 constraints"),
        "{followed:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["status"], "ok", "{out:?}");
    assert!(doc["downtime_seconds"].as_f64() > Some(0.0), "{out:?}");
    assert!(doc["mark"].as_str().is_some(), "{out:?}");
    assert_eq!(doc["verified"], serde_json::Value::Null, "{out:?}");
    util::assert_same_data(&src, &dst, TABLES);
    assert_eq!(dst.count("audit"), 0, "a destination trigger fired");
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"),
        1
    );
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'O'"
        ),
        3,
        "the triggers are enabled as they were"
    );
    assert_nothing_left(&src, &dst);
}

#[test]
fn a_slot_waiting_for_a_running_transaction_gives_up_after_the_lock_timeout() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    // A session that wrote and stays idle in its transaction: a new slot's snapshot waits
    // for it to end, while the copy's locks are held.
    let mut writer = src.client();
    writer
        .batch_execute(
            "SET application_name = 'stuck_writer';
             BEGIN; UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1",
        )
        .expect("a writing transaction left open");
    let started = std::time::Instant::now();
    let out = util::copy(&src, &dst, &["--follow", "--lock-timeout", "2"]);
    assert_exit!(out, exit::USAGE);
    assert!(started.elapsed().as_secs() < 60, "{out:?}");
    assert!(
        out.stderr
            .contains("could not create the replication slot within --lock-timeout 2s"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("stuck_writer, idle in transaction"),
        "{out:?}"
    );
    assert_nothing_left(&src, &dst);
    assert_eq!(dst.count("pgbench_accounts"), 0, "nothing was copied");
    // Once it ends, the slot can be made.
    writer.batch_execute("COMMIT").expect("commit");
    let mut follower = util::spawn_copy(&src, &dst, &["--follow", "--lock-timeout", "2"]);
    wait_following(&dst, &mut follower);
    // A cutover started while no follower streams waits a moment for one.
    follower.kill().expect("kill -9 of the follower");
    util::finish(follower);
    let cutover = util::cutover_command(&src.url(), &dst.url(), &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting cutover");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let follower = util::spawn_copy(&src, &dst, &["--follow", "--resume"]);
    let out = util::finish(cutover);
    assert_exit!(out, exit::SUCCESS);
    assert_exit!(util::finish(follower), exit::SUCCESS);
    util::assert_same_data(&src, &dst, TABLES);
}

#[test]
fn a_table_without_replica_identity_is_refused_before_anything_is_created() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(
        &src,
        &dst,
        "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE \"no key\" (v text);",
    );
    let out = util::copy(&src, &dst, &["--follow"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "public.\"no key\" has no usable replica identity (replica identity default, and \
             no primary key)"
        ),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("ALTER TABLE \"public\".\"no key\" REPLICA IDENTITY FULL"),
        "{out:?}"
    );
    assert_nothing_left(&src, &dst);
    // Left out, it is no obstacle.
    let out = util::copy(
        &src,
        &dst,
        &["--follow", "--exclude-tables", "no key", "--dry-run"],
    );
    assert_exit!(out, exit::SUCCESS);
}

#[test]
fn a_source_schema_change_stops_the_follower_until_the_destination_has_it() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    src.exec(
        "BEGIN;
         UPDATE docs SET title = 'before the change' WHERE id = 1;
         ALTER TABLE docs ADD COLUMN tag text;
         INSERT INTO docs (id, title, tag) VALUES (500, 'new', 'tagged');
         COMMIT",
    );
    let stopped = util::finish(follower);
    assert_ne!(stopped.code, 0, "{stopped:?}");
    assert!(
        stopped.stderr.contains(
            "the source's table public.docs has a column \"tag\" that the destination's lacks"
        ),
        "{stopped:?}"
    );
    // Nothing of that transaction, not even what came before the change.
    assert_eq!(
        dst.count("docs WHERE id = 500 OR title = 'before the change'"),
        0
    );

    dst.exec("ALTER TABLE docs ADD COLUMN tag text");
    let mut resumed = util::spawn_copy(&src, &dst, &["--follow", "--resume"]);
    wait_streaming_anew(&src, &mut resumed, 0);
    cut_over(&src.url(), &dst.url(), resumed, &[]);
    util::assert_same_data(&src, &dst, TABLES);
    assert_eq!(
        dst.scalar_string("SELECT tag FROM docs WHERE id = 500"),
        "tagged"
    );
    assert_nothing_left(&src, &dst);
}

/// Following between major versions, the pairs `versions` copies between: the stream is
/// the source's (PostgreSQL 13 streams no cutover mark, so cutover tells the follower where
/// it is through the destination), the statements are the destination's.
#[test]
fn follows_between_major_versions_either_way() {
    for (s, d) in crate::versions::pairs() {
        let logical =
            util::start_cluster(logical_options().server_bindir(&util::server_bindir_of(s)));
        let destination = util::start_cluster(
            ClusterOptions::default().server_bindir(&util::server_bindir_of(d)),
        );
        let src = logical.create_db(&test_name!(format!("{s}_to_{d}")));
        let dst = destination.create_db(&test_name!(format!("{s}_to_{d}")));
        util::both(&src, &dst, SCHEMA);
        load(&src);
        let writers = pgbench(&src, 2, 4);
        let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
        wait_following(&dst, &mut follower);
        src.exec(EDITS);
        wait_pgbench(writers);
        cut_over(&src.url(), &dst.url(), follower, &["--timeout", "60"]);
        for table in TABLES {
            assert_eq!(
                src.checksum(table, &[]),
                dst.checksum(table, &[]),
                "{s} -> {d}: {table}"
            );
        }
        assert_nothing_left(&src, &dst);
    }
}

#[test]
fn a_follower_rides_out_a_destination_restart_and_a_lost_source_connection() {
    let (_logical, destination, src, dst) = loaded_pair(&test_name!());
    let writers = pgbench(&src, 2, 12);
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    std::thread::sleep(std::time::Duration::from_secs(1));
    // Each loss is waited out until a new session streams: the old one may stay a moment.
    let before = util::streaming_pid(&src);
    destination.restart();
    wait_streaming_anew(&src, &mut follower, before);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = util::streaming_pid(&src);
    src.exec("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active");
    wait_streaming_anew(&src, &mut follower, before);
    src.exec(EDITS);
    wait_pgbench(writers);
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &[]);
    util::assert_went_on(&followed, 2);
    util::assert_same_data(&src, &dst, TABLES);
    assert_nothing_left(&src, &dst);
}

#[test]
fn a_follower_killed_before_its_copy_recorded_a_chunk_starts_over_with_a_new_slot() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    let writers = pgbench(&src, 2, 8);
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    let started = std::time::Instant::now();
    // Made, the copy planning (a chunk recorded takes `chunked.rs`'s way: going on).
    while src.scalar_i64(
        "SELECT count(*) FROM pg_replication_slots WHERE confirmed_flush_lsn IS NOT NULL",
    ) == 0
    {
        assert!(started.elapsed().as_secs() < 60, "no slot was made");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    follower.kill().expect("kill -9 of the follower");
    util::finish(follower);
    let first_slot =
        src.scalar_string("SELECT slot_name || ' ' || restart_lsn FROM pg_replication_slots");

    let mut resumed = util::spawn_copy(&src, &dst, &["--follow", "--resume"]);
    wait_following(&dst, &mut resumed);
    assert_ne!(
        src.scalar_string("SELECT slot_name || ' ' || restart_lsn FROM pg_replication_slots"),
        first_slot,
        "a new slot"
    );
    wait_pgbench(writers);
    let (_, followed) = cut_over(&src.url(), &dst.url(), resumed, &[]);
    assert!(
        followed.stderr.contains(
            "the destination has no record of the earlier follower's progress, nor of a chunk \
             it copied: it stopped before its initial copy recorded one"
        ),
        "{followed:?}"
    );
    util::assert_same_data(&src, &dst, TABLES);
    assert_nothing_left(&src, &dst);
}

#[test]
fn an_interrupted_follower_is_named_until_it_is_abandoned() {
    let (_logical, destination, src, dst) = loaded_pair(&test_name!());
    // In drop mode, which keeps the keys dropped until cutover.
    let mut follower = util::spawn_copy(&src, &dst, &["--follow", "--fk-mode", "drop"]);
    wait_following(&dst, &mut follower);
    wait_streaming_anew(&src, &mut follower, 0);
    let keys = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated";
    assert_eq!(dst.scalar_i64(keys), 0);
    let status = std::process::Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let out = util::finish(follower);
    assert_exit!(out, exit::INTERRUPTED);
    assert!(
        out.stderr
            .contains("go on with `pgcopy copy --follow --resume`"),
        "{out:?}"
    );

    // Any later copy from that source names the slot it left.
    let other = destination.create_db(&test_name!("other"));
    other.exec(SCHEMA);
    let out = util::copy(&src, &other, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr
            .contains("that a `pgcopy copy --follow` made is left on the source, holding"),
        "{out:?}"
    );
    let out =
        util::run(util::pgcopy().args(["abandon", "--source", &src.url(), "--dest", &dst.url()]));
    assert_exit!(out, exit::SUCCESS);
    assert_nothing_left(&src, &dst);
    assert_eq!(
        dst.scalar_i64(keys),
        1,
        "abandon puts the dropped key back: {out:?}"
    );
}

#[test]
fn a_change_whose_row_the_destination_lacks_stops_the_follower_naming_it() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    dst.exec("DELETE FROM docs WHERE id = 5");
    src.exec("UPDATE docs SET title = 'moved on' WHERE id IN (4, 5)");
    let stopped = util::finish(follower);
    assert_ne!(stopped.code, 0, "{stopped:?}");
    assert!(
        stopped
            .stderr
            .contains("the destination has no such row for the update of public.docs (id)=(5)"),
        "{stopped:?}"
    );
    // Nothing of that source transaction.
    assert_eq!(dst.count("docs WHERE title = 'moved on'"), 0);
}
