//! Staging refreshes of schemas nobody here wrote: a subset of pagila, whose payments are
//! partitioned with their foreign keys declared on each leaf but the last; integer keys
//! masked by a keyed permutation, distinct staying distinct; masks that follow the keys
//! that reference them, and pairs whose masked values could no longer join refused before
//! anything changes.

use crate::util::{self, assert_exit, exit, pair};

/// Every foreign key on the destination validated, none left `NOT VALID`.
fn assert_keys_valid(dst: &util::TestDb, out: &util::Output) {
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        ),
        0,
        "{out:?}"
    );
}

#[test]
fn a_subset_of_pagila_keeps_to_the_keys_its_partitions_declare() {
    let (src, dst) = pair!();
    util::load_pagila(&src);
    util::pagila_schema(&dst);
    let rules = util::rules_file(
        &src,
        "rental",
        "[subset.\"public.rental\"]\nwhere = \"rental_id % 10 = 0\"\n",
    );
    let out = util::copy(&src, &dst, &["--rules", &rules, "--dry-run"]);
    assert_exit!(out, exit::SUCCESS);
    // The leaves are subsets too, the one without a key of its own as well.
    for leaf in ["payment_p2022_01", "payment_p2022_07"] {
        let said = format!("subset public.{leaf}: the rows whose references to public.rental");
        assert!(out.stdout.contains(&said), "{leaf}: {out:?}");
    }

    let out = util::copy(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    assert_keys_valid(&dst, &out);
    // No payment of a dropped rental, in any leaf: also the last, which declares no key.
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM payment p
              WHERE NOT EXISTS (SELECT FROM rental r WHERE r.rental_id = p.rental_id)"
        ),
        0
    );
    assert_eq!(
        dst.count("payment"),
        src.scalar_i64("SELECT count(*) FROM payment WHERE rental_id % 10 = 0")
    );
    assert_eq!(
        dst.count("payment_p2022_07"),
        src.scalar_i64("SELECT count(*) FROM payment_p2022_07 WHERE rental_id % 10 = 0")
    );
    assert_eq!(
        dst.count("rental"),
        src.count("rental WHERE rental_id % 10 = 0")
    );

    // A key the rules declare on a leaf is one of the partitioned table's.
    let declared = util::rules_file(
        &src,
        "declared",
        "[subset.\"public.rental\"]\nwhere = \"rental_id % 10 = 0\"\n\
         [[foreign_key]]\ntable = \"public.payment_p2022_07\"\ncolumns = [\"staff_id\"]\n\
         references = \"public.staff\"\n",
    );
    let out = util::copy(&src, &dst, &["--rules", &declared]);
    assert_exit!(out, exit::SUCCESS);
    assert_keys_valid(&dst, &out);
}

/// The masking key of these tests (never a flag: the environment).
const KEY: &str = "a staging key, thirty-two bytes!";

/// `pgcopy copy --rules RULES` with the key in the environment.
fn masked_copy(src: &util::TestDb, dst: &util::TestDb, rules: &str) -> util::Output {
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", rules]);
    util::run(cmd.env("PGCOPY_MASK_KEY", KEY))
}

#[test]
fn hashed_integer_keys_stay_distinct_and_follow_to_what_references_them() {
    let (src, dst) = pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE account (id int PRIMARY KEY, tag smallint, big bigint UNIQUE);
         CREATE TABLE ledger (id bigint PRIMARY KEY,
                              account_id int NOT NULL REFERENCES account);",
    );
    src.exec(
        "INSERT INTO account SELECT i, (i % 30000)::smallint, i::bigint * 1000003
           FROM generate_series(1, 1000000) i;
         INSERT INTO ledger SELECT i, 1 + (i * 7) % 1000000 FROM generate_series(1, 100000) i;
         ANALYZE",
    );
    let rules = util::rules_file(
        &src,
        "ints",
        "[mask.\"public.account\"]\nid = \"hash\"\nbig = \"hash\"\ntag = \"hash\"\n",
    );
    let out = masked_copy(&src, &dst, &rules);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains(
            "public.ledger.account_id references public.account.id, which is masked (hash \
             (keyed, by pgcopy)): masked the same way, so that they still join"
        ),
        "{out:?}"
    );
    assert_keys_valid(&dst, &out);
    for (column, distinct) in [("id", 1_000_000), ("big", 1_000_000), ("tag", 30_000)] {
        assert_eq!(
            dst.scalar_i64(&format!("SELECT count(DISTINCT {column}) FROM account")),
            distinct,
            "{column}"
        );
    }
    // Positive ids stay positive, and few land where an unmasked id was.
    assert_eq!(dst.count("account WHERE id <= 0 OR big <= 0 OR tag < 0"), 0);
    assert!(dst.count("account WHERE id <= 1000000") < 5000);
    assert_eq!(dst.count("ledger"), 100_000);
}

#[test]
fn masked_keys_that_could_no_longer_join_are_refused_before_anything_changes() {
    let (src, dst) = pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE person (id bigint PRIMARY KEY, code varchar(12) UNIQUE, email text UNIQUE);
         CREATE TABLE visit (id int PRIMARY KEY, person_id int REFERENCES person (id),
                             code text REFERENCES person (code));
         CREATE TABLE note (id int, email text REFERENCES person (email), at date)
             PARTITION BY RANGE (at);
         CREATE TABLE note_2026 PARTITION OF note
             FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    );
    src.exec(
        "INSERT INTO person VALUES (1, 'c1', 'a@x'); INSERT INTO visit VALUES (1, 1, 'c1');
         INSERT INTO note VALUES (1, 'a@x', '2026-05-01')",
    );
    let rules = util::rules_file(
        &src,
        "pairs",
        r#"
[mask."public.person"]
id = "hash"
code = "hash"
[mask."public.note"]
email = "email"
at = { rule = "noise", range = "400 days" }
[[foreign_key]]
table = "public.visit"
columns = ["no_such_column"]
references = "public.person"
referenced = ["id"]
"#,
    );
    let out = masked_copy(&src, &dst, &rules);
    assert_exit!(out, exit::USAGE);
    for expected in [
        "public.visit.person_id references public.person.id, and masked they could no longer \
         join: hash makes different values of integer and of bigint",
        "public.visit.code references public.person.code, and masked they could no longer \
         join: hash makes different values of text and of character varying(12)",
        "public.note.email references public.person.email, and masked they could no longer \
         join: only the referencing column is masked",
        "the rules mask public.note_2026.at, which is in the partition key of public.note",
        "the rules declare a foreign key on public.visit.no_such_column, a column it does not \
         have",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
    for table in ["person", "visit", "note"] {
        assert_eq!(dst.count(table), 0, "{table}: nothing was copied");
    }
}

/// A copy whose `blocked` table fails leaves the rest to resume; resumed under another
/// masking key, its tables would hold two keys' masks, which join nothing.
#[test]
fn resuming_a_masked_copy_under_another_key_is_refused() {
    let (src, dst) = pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE person (id int PRIMARY KEY, email text); CREATE TABLE blocked (v int)",
    );
    dst.exec("ALTER TABLE blocked ADD CONSTRAINT small CHECK (v < 100)");
    src.exec(
        "INSERT INTO person SELECT i, 'p' || i || '@corp.com' FROM generate_series(1, 50) i;
         INSERT INTO blocked VALUES (500)",
    );
    let rules = util::rules_file(
        &src,
        "email",
        "[mask.\"public.person\"]\nemail = \"email\"\n",
    );
    let out = masked_copy(&src, &dst, &rules);
    assert_exit!(out, exit::TABLES_FAILED);
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules, "--resume"]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", "another key, also thirty-two!!"));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("the rules or the masking key changed"),
        "{out:?}"
    );
    assert!(!out.stderr.contains(KEY), "{out:?}");
    // Under the same key it goes on (and fails the same table again).
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules, "--resume"]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", KEY));
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(out.stderr.contains("resuming:"), "{out:?}");
}
