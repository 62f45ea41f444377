//! Following a live source (`copy --follow`, built in steps): `status` says whether a source
//! can be followed — `wal_level`, free slots and WAL senders, a role that may replicate and
//! publish, a replication session that opens — and names each selected table without a
//! usable replica identity, with the statement that gives it one. Against the shared
//! `wal_level = replica` source and a `wal_level = logical` cluster of the test's own.

use crate::util::{self, assert_exit, exit, test_name, ClusterOptions};

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
    assert!(unmet[2].1.contains("replication role"), "{unmet:?}");
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
