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

/// Customers with personal data where applications keep it: in text, a `citext` and a
/// domain over `varchar`, a key inside a `jsonb` column, a large object; a view built from
/// them; and the destination holding the real data before (a restore of production), as
/// its statistics do.
const PERSONAL: &str = "
    CREATE EXTENSION IF NOT EXISTS citext;
    CREATE DOMAIN email_address AS varchar(80);
    CREATE TABLE customer (id int PRIMARY KEY, first_name text, last_name text, email citext,
                           work_email email_address, prefs jsonb, category_name text);
    CREATE MATERIALIZED VIEW customer_emails AS SELECT id, email::text AS email FROM customer;";

const PEOPLE: &str = "
    INSERT INTO customer
        SELECT i, 'Ann' || i, 'Lee' || i, 'ann' || i || '@corp.com', 'work' || i || '@corp.com',
               jsonb_build_object('contact', jsonb_build_object('email', 'c' || i || '@corp.com'),
                                  'theme', 'dark'),
               'books'
          FROM generate_series(1, 300) i;
    SELECT lo_from_bytea(0, convert_to('ann1@corp.com', 'UTF8'));
    REFRESH MATERIALIZED VIEW customer_emails;
    ANALYZE";

#[test]
fn nothing_personal_escapes_the_rules() {
    let (src, dst) = pair!();
    util::both(&src, &dst, PERSONAL);
    src.exec(PEOPLE);
    dst.exec(PEOPLE);
    let rules = |name: &str, extra: &str| {
        util::rules_file(
            &src,
            name,
            &format!(
                r#"require = ["*email*", "*name*"]
{extra}
[mask."public.customer"]
first_name = "first_name"
last_name = "last_name"
email = "email"
work_email = "email"
category_name = "keep"
"#
            ),
        )
    };
    // The key inside prefs matches require: refused until a rule reaches it.
    let out = masked_copy(&src, &dst, &rules("unmasked", ""));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "public.customer.prefs.contact.email (a key inside the JSON column) matches the \
             rules' require pattern \"*email*\""
        ),
        "{out:?}"
    );

    let masked = rules("masked", "");
    let masked = {
        let text =
            std::fs::read_to_string(&masked).unwrap() + "\"prefs.contact.email\" = \"email\"\n";
        util::rules_file(&src, "masked", &text)
    };
    let out = masked_copy(&src, &dst, &masked);
    assert_exit!(out, exit::SUCCESS);
    let leaked = |sql: &str| dst.scalar_i64(sql);
    assert_eq!(
        leaked(
            "SELECT count(*) FROM customer WHERE email::text LIKE '%corp.com'
                  OR work_email::text LIKE '%corp.com' OR prefs::text LIKE '%corp.com%'"
        ),
        0
    );
    // The view's statistics are the masked rows', not those the destination had.
    assert_eq!(
        leaked(
            "SELECT count(*) FROM pg_stats WHERE tablename IN ('customer', 'customer_emails')
                AND (most_common_vals::text LIKE '%corp.com%'
                     OR histogram_bounds::text LIKE '%corp.com%')"
        ),
        0
    );
    // No large object came from the source: no rule reaches inside one.
    assert!(
        out.stderr.contains("the large objects are not copied"),
        "{out:?}"
    );
    assert_eq!(
        leaked("SELECT count(*) FROM pg_largeobject_metadata"),
        1,
        "the destination's own, left as it was"
    );
    // One name to a first-name column; the kept column as it was, and verified.
    assert_eq!(
        leaked("SELECT count(*) FROM customer WHERE first_name LIKE '% %'"),
        0
    );
    assert_eq!(
        leaked("SELECT count(*) FROM customer WHERE category_name = 'books'"),
        300
    );
    let mut cmd = util::pgcopy();
    cmd.args([
        "verify",
        "--source",
        &src.url(),
        "--dest",
        &dst.url(),
        "--rules",
        &masked,
    ])
    .env("PGCOPY_MASK_KEY", KEY);
    let out = util::run(&mut cmd);
    assert_exit!(out, exit::SUCCESS);
    assert!(!out.stdout.contains("category_name"), "{out:?}");

    // Told to, the destination's large objects go.
    let emptied = util::rules_file(
        &src,
        "emptied",
        &(std::fs::read_to_string(&masked).unwrap().replacen(
            "require",
            "large_objects = \"empty\"\nrequire",
            1,
        )),
    );
    let out = masked_copy(&src, &dst, &emptied);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(leaked("SELECT count(*) FROM pg_largeobject_metadata"), 0);
}

#[test]
fn a_failing_rule_never_shows_the_value_it_failed_on() {
    let (src, dst) = pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE person (id int PRIMARY KEY, email text)",
    );
    src.exec("INSERT INTO person VALUES (1, 'ann@corp.com')");
    let rules = util::rules_file(
        &src,
        "failing",
        "[mask.\"public.person\"]\nemail = { rule = \"sql\", expr = \"(email::int)::text\" }\n",
    );
    let out = util::copy(&src, &dst, &["--rules", &rules, "--json"]);
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(
        out.stdout
            .contains("the source failed on a row of public.person while applying the rules"),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("corp.com") && !out.stderr.contains("corp.com"),
        "{out:?}"
    );
}

/// A key anyone could guess, and a key file anyone may read, are said so.
#[test]
fn a_weak_or_readable_masking_key_is_warned_about() {
    let (src, dst) = pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE person (id int PRIMARY KEY, email text)",
    );
    let rules = util::rules_file(
        &src,
        "email",
        "[mask.\"public.person\"]\nemail = \"email\"\n",
    );
    let key_file = util::scratch_dir(&format!("{}.key", src.name));
    std::fs::write(&key_file, "                    \n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY_FILE", &key_file));
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains("may be read by others (mode 0644)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("has only 1 distinct bytes"), "{out:?}");
}

/// The rules file a careful user writes for pagila: every personal column masked, the
/// customers' key hashed (which follows to the rentals and payments that reference it),
/// public names kept, and a tenth of the rentals.
const CAREFUL: &str = r#"
require = ["*email*", "*name*", "*phone*", "address", "address2", "postal_code", "password", "picture"]
[mask."public.customer"]
customer_id = "hash"
first_name = "first_name"
last_name = "last_name"
email = "email"
[mask."public.staff"]
first_name = "first_name"
last_name = "last_name"
email = "email"
username = "hash"
password = "null"
picture = "null"
[mask."public.address"]
address = "scramble"
address2 = "null"
postal_code = "scramble"
phone = "phone"
[mask."public.actor"]
first_name = "keep"
last_name = "keep"
[mask."public.category"]
name = "keep"
[mask."public.language"]
name = "keep"
[subset."public.rental"]
where = "rental_id % 10 = 0"
"#;

#[test]
fn a_careful_rules_file_masks_pagila_and_keeps_every_key() {
    let (src, dst) = pair!();
    util::load_pagila(&src);
    util::pagila_schema(&dst);
    let rules = util::rules_file(&src, "careful", CAREFUL);
    let out = masked_copy(&src, &dst, &rules);
    assert_exit!(out, exit::SUCCESS);
    assert_keys_valid(&dst, &out);
    assert!(
        out.stderr
            .contains("public.payment.customer_id references public.customer.customer_id"),
        "{out:?}"
    );
    let leaked = dst.scalar_i64(
        "SELECT (SELECT count(*) FROM customer WHERE email LIKE '%sakilacustomer.org')
              + (SELECT count(*) FROM customer c JOIN (VALUES ('MARY', 'SMITH')) AS v(f, l)
                   ON c.first_name = v.f AND c.last_name = v.l)
              + (SELECT count(*) FROM staff WHERE password IS NOT NULL OR picture IS NOT NULL)",
    );
    assert_eq!(leaked, 0);
    // Every payment still belongs to its rental's customer.
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM payment p JOIN rental r USING (rental_id)
              WHERE p.customer_id <> r.customer_id"
        ),
        src.scalar_i64(
            "SELECT count(*) FROM payment p JOIN rental r USING (rental_id)
              WHERE p.customer_id <> r.customer_id AND r.rental_id % 10 = 0"
        )
    );
}
