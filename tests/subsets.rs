//! Referentially complete subsets (`[subset."…"]` in a rules file): the rows a rule picks,
//! every row they reference (through a cycle and self-references), the rows of tables that
//! reference a subset only where what they reference is kept, transitively, other tables
//! whole; checked row by row against the closure computed here, and by every foreign key
//! validating on the destination. From a hot standby too; `verify` compares the subset;
//! rules that do not fit are refused before anything changes.

use crate::util::{self, assert_exit, exit, test_name, TestDb};
use std::collections::{BTreeMap, BTreeSet};

/// customer references itself and address, address references customer (a cycle);
/// rental references customer and store; payment and note follow rental, note replies to
/// notes (a self-reference among followers); refund references payment by a key only the
/// rules declare.
const SCHEMA: &str = "
    CREATE TABLE store (id int PRIMARY KEY, name text);
    CREATE TABLE customer (id int PRIMARY KEY, referred_by int REFERENCES customer,
                           home int, name text);
    CREATE TABLE address (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer);
    ALTER TABLE customer ADD CONSTRAINT customer_home FOREIGN KEY (home) REFERENCES address
        DEFERRABLE INITIALLY DEFERRED;
    CREATE TABLE rental (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer,
                         store_id int REFERENCES store, day date);
    CREATE TABLE payment (id int PRIMARY KEY, rental_id int REFERENCES rental, amount int);
    CREATE TABLE \"odd.note\" (id int PRIMARY KEY, rental_id int REFERENCES rental,
                               reply_to int REFERENCES \"odd.note\");
    CREATE TABLE refund (id int PRIMARY KEY, payment_ref int);
    CREATE TABLE visit (id int, rental_id int REFERENCES rental, at date)
        PARTITION BY RANGE (at);
    CREATE TABLE visit_2024 PARTITION OF visit FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE visit_2025 PARTITION OF visit FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');";

const DATA: &str = "
    INSERT INTO store SELECT i, 'store ' || i FROM generate_series(1, 3) i;
    INSERT INTO customer SELECT i, CASE WHEN i > 3 THEN i / 2 END, NULL, 'c' || i
      FROM generate_series(1, 60) i;
    INSERT INTO address SELECT i, 1 + i % 60 FROM generate_series(1, 90) i;
    UPDATE customer SET home = id WHERE id % 4 = 0;
    INSERT INTO rental SELECT i, 1 + (i * 7) % 60, 1 + i % 3, date '2024-01-01' + i
      FROM generate_series(1, 300) i;
    INSERT INTO payment SELECT i, CASE WHEN i % 10 <> 0 THEN 1 + i % 300 END, i
      FROM generate_series(1, 400) i;
    INSERT INTO \"odd.note\" SELECT i, 1 + (i * 3) % 300,
                                  CASE WHEN i > 20 AND i % 2 = 0 THEN i - 20 END
      FROM generate_series(1, 200) i;
    INSERT INTO refund SELECT i, 1 + (i * 4) % 400 FROM generate_series(1, 100) i;
    INSERT INTO visit SELECT i, i * 3, date '2024-06-01' + i * 5 FROM generate_series(1, 100) i;
    ANALYZE";

/// Rentals from October, the first five customers, and the key refund has by name only.
const RULES: &str = r#"
[subset."public.rental"]
where = "day >= date '2024-10-01'"
[subset."public.customer"]
limit = 5
[[foreign_key]]
table = "public.refund"
columns = ["payment_ref"]
references = "public.payment"
referenced = ["id"]
"#;

const TABLES: [&str; 8] = [
    "store",
    "customer",
    "address",
    "rental",
    "payment",
    "\"odd.note\"",
    "refund",
    "visit",
];

/// A table's rows as (id, the other integer columns in order; NULL as None).
fn rows(db: &TestDb, table: &str, columns: &str) -> BTreeMap<i64, Vec<Option<i64>>> {
    db.rows_text(&format!("SELECT id, {columns} FROM {table}"))
        .into_iter()
        .map(|row| {
            let id = row[0].as_deref().unwrap().parse().unwrap();
            let rest = row[1..]
                .iter()
                .map(|v| v.as_deref().map(|v| v.parse().unwrap()))
                .collect();
            (id, rest)
        })
        .collect()
}

fn ids(db: &TestDb, table: &str) -> BTreeSet<i64> {
    rows(db, table, "1").into_keys().collect()
}

/// The ids of `table`'s rows whose `column` is NULL or one of `kept`.
fn follow(db: &TestDb, table: &str, column: &str, kept: &BTreeSet<i64>) -> BTreeSet<i64> {
    rows(db, table, column)
        .into_iter()
        .filter(|(_, row)| row[0].is_none_or(|r| kept.contains(&r)))
        .map(|(id, _)| id)
        .collect()
}

/// What RULES keeps of each table, computed from the source's rows here.
fn expected(src: &TestDb) -> BTreeMap<&'static str, BTreeSet<i64>> {
    let customer = rows(src, "customer", "referred_by, home");
    let address = rows(src, "address", "customer_id");
    let rental = rows(src, "rental", "customer_id");
    let payment = rows(src, "payment", "rental_id");
    let note = rows(src, "\"odd.note\"", "rental_id, reply_to");
    let refund = rows(src, "refund", "payment_ref");
    let october: BTreeSet<i64> = src
        .rows_text("SELECT id FROM rental WHERE day >= date '2024-10-01'")
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();

    // Pulled: the picked rows and everything they reference, to a fixed point.
    let kept_rental = october;
    let mut kept_customer: BTreeSet<i64> = customer.keys().take(5).copied().collect();
    let mut kept_address = BTreeSet::new();
    loop {
        let before = (kept_customer.len(), kept_address.len());
        for r in &kept_rental {
            kept_customer.insert(rental[r][0].unwrap());
        }
        for c in kept_customer.clone() {
            if let Some(parent) = customer[&c][0] {
                kept_customer.insert(parent);
            }
            if let Some(home) = customer[&c][1] {
                kept_address.insert(home);
            }
        }
        for a in &kept_address {
            kept_customer.insert(address[a][0].unwrap());
        }
        if before == (kept_customer.len(), kept_address.len()) {
            break;
        }
    }
    // Followers: the rows whose references are all kept (or NULL).
    for (a, row) in &address {
        if kept_customer.contains(&row[0].unwrap()) {
            kept_address.insert(*a);
        }
    }
    let kept_payment: BTreeSet<i64> = payment
        .iter()
        .filter(|(_, row)| row[0].is_none_or(|r| kept_rental.contains(&r)))
        .map(|(id, _)| *id)
        .collect();
    // Replies come after what they reply to: one pass in id order is the fixed point.
    let mut kept_note = BTreeSet::new();
    for (id, row) in &note {
        let rental_kept = row[0].is_none_or(|r| kept_rental.contains(&r));
        let reply_kept = row[1].is_none_or(|n| kept_note.contains(&n));
        if rental_kept && reply_kept {
            kept_note.insert(*id);
        }
    }
    let kept_refund: BTreeSet<i64> = refund
        .iter()
        .filter(|(_, row)| row[0].is_none_or(|p| kept_payment.contains(&p)))
        .map(|(id, _)| *id)
        .collect();
    let kept_visit = follow(src, "visit", "rental_id", &kept_rental);
    BTreeMap::from([
        ("visit", kept_visit),
        ("store", ids(src, "store")),
        ("customer", kept_customer),
        ("address", kept_address),
        ("rental", kept_rental),
        ("payment", kept_payment),
        ("\"odd.note\"", kept_note),
        ("refund", kept_refund),
    ])
}

/// The destination holds exactly the expected rows, with the source's values, and every
/// foreign key is there and valid.
/// `whole`: the tables that come whole; the others must be subsets.
fn assert_subset(src: &TestDb, dst: &TestDb, want: &BTreeMap<&str, BTreeSet<i64>>, whole: &[&str]) {
    for table in TABLES {
        let got = ids(dst, table);
        assert_eq!(&got, &want[table], "the rows of {table}");
        let all = ids(src, table).len();
        if whole.contains(&table) {
            assert_eq!(got.len(), all, "{table} comes whole");
        } else {
            assert!(
                !got.is_empty() && got.len() < all,
                "{table}: {} of {all} rows is no subset",
                got.len()
            );
        }
        let list: Vec<String> = got.iter().map(i64::to_string).collect();
        let same = format!("id IN ({})", list.join(","));
        let query = format!("SELECT * FROM {table} WHERE {same} ORDER BY id");
        assert_eq!(
            src.rows_text(&query),
            dst.rows_text(&query),
            "{table}'s values"
        );
    }
    let keys = dst.rows_text(
        "SELECT conname, convalidated::text FROM pg_constraint
         WHERE contype = 'f' AND conparentid = 0 ORDER BY 1",
    );
    assert_eq!(keys.len(), 9, "{keys:?}");
    assert!(
        keys.iter().all(|k| k[1].as_deref() == Some("true")),
        "every key is valid: {keys:?}"
    );
    // And checked once more by the server, row by row.
    for key in &keys {
        let name = key[0].as_deref().unwrap();
        let table = dst.scalar_string(&format!(
            "SELECT conrelid::regclass::text FROM pg_constraint
             WHERE conname = '{name}' AND conparentid = 0"
        ));
        let definition = dst.scalar_string(&format!(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conname = '{name}' AND conparentid = 0"
        ));
        dst.exec(&format!(
            "BEGIN; ALTER TABLE {table} DROP CONSTRAINT \"{name}\";
             ALTER TABLE {table} ADD CONSTRAINT \"{name}\" {definition}; ROLLBACK"
        ));
    }
}

#[test]
fn a_subset_keeps_what_its_rows_reference_and_drops_what_references_dropped_rows() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    src.exec(DATA);
    // Stale rows on the destination go, a partition only it has emptied too.
    dst.exec(
        "INSERT INTO store VALUES (99, 'stale');
         CREATE TABLE visit_2026 PARTITION OF visit
             FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO visit VALUES (-1, NULL, '2026-06-01')",
    );
    let rules = util::rules_file(&src, "rules", RULES);
    let want = expected(&src);

    let out = util::copy(&src, &dst, &["--rules", &rules, "--dry-run"]);
    assert_exit!(out, exit::SUCCESS);
    for (table, words) in [
        (
            "rental",
            "where day >= date '2024-10-01'; and the rows kept rows reference",
        ),
        ("customer", "the first 5; and the rows kept rows reference"),
        (
            "payment",
            "the rows whose references to public.rental are kept",
        ),
        (
            "refund",
            "the rows whose references to public.payment are kept",
        ),
    ] {
        let line = format!(
            "subset public.{table}: {words} ({} rows)",
            want[table].len()
        );
        assert!(out.stdout.contains(&line), "{line}\n{out:?}");
    }
    assert!(!out.stdout.contains("subset public.store"), "{out:?}");
    assert_eq!(dst.count("store"), 1, "a dry run changes nothing");

    let out = util::copy(&src, &dst, &["--rules", &rules, "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_subset(&src, &dst, &want, &["store"]);

    // verify with the rules compares the subset; without them, the whole source.
    let out = util::verify(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    let out = util::verify(&src, &dst, &[]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    dst.exec("UPDATE payment SET amount = -1 WHERE id = (SELECT min(id) FROM payment)");
    let out = util::verify(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    assert!(out.stdout.contains("public.payment"), "{out:?}");
}

#[test]
fn a_subset_comes_from_a_hot_standby() {
    let primary =
        util::start_cluster(util::ClusterOptions::default().server_bindir(util::bindir()));
    let on_primary = primary.create_db(&test_name!());
    on_primary.exec(SCHEMA);
    on_primary.exec(DATA);
    let standby = util::start_standby(&primary);
    let src = standby.db(&on_primary.name);
    let deadline = std::time::Instant::now() + util::run_timeout();
    while src.count("refund") < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dst = util::dest().create_db(&test_name!());
    dst.exec(SCHEMA);
    let rules = util::rules_file(&src, "rules", RULES);

    let out = util::copy(&src, &dst, &["--rules", &rules, "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_subset(&src, &dst, &expected(&on_primary), &["store"]);
}

#[test]
fn percent_and_limit_pick_the_same_rows_every_run() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    src.exec(DATA);
    let rules = util::rules_file(
        &src,
        "sample",
        r#"
        [subset."public.rental"]
        percent = 30
        [subset."public.customer"]
        where = "name <> 'c1'"
        limit = 4
        order_by = "id DESC"
        # A partitioned table's rule, over its partitions.
        [subset."public.visit"]
        where = "id % 2 = 0"
        "#,
    );
    let out = util::copy(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    let first = ids(&dst, "rental");
    assert!(
        (40..=180).contains(&first.len()),
        "about 30% of the 300 rentals, and those the visits reference: {}",
        first.len()
    );
    let even: BTreeSet<i64> = (1..=50).map(|i| i * 2).collect();
    assert_eq!(
        ids(&dst, "visit"),
        even,
        "the visits the rule picks, in both partitions"
    );
    let rentals = ids(&dst, "rental");
    assert!(
        even.iter().all(|v| rentals.contains(&(v * 3))),
        "and their rentals"
    );
    let customers = ids(&dst, "customer");
    for id in 57..=60 {
        assert!(
            customers.contains(&id),
            "the last four customers: {customers:?}"
        );
    }
    let out = util::copy(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        ids(&dst, "rental"),
        first,
        "the same sample on a second run"
    );
}

#[test]
fn subset_rules_that_do_not_fit_are_refused_before_anything_changes() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    src.exec(DATA);
    dst.exec("INSERT INTO store VALUES (99, 'stale')");
    for (name, text, says) in [
        (
            "table",
            "[subset.\"public.rentals\"]\nwhere = \"true\"",
            "the source has no table public.rentals",
        ),
        (
            "column",
            "[subset.\"public.rental\"]\nwhere = \"dy > '2024-01-01'\"",
            "column \"dy\" does not exist",
        ),
        (
            "volatile",
            "[subset.\"public.rental\"]\nwhere = \"random() < 0.5\"",
            "it calls random(), whose value differs from session to session",
        ),
        (
            "declared",
            "[[foreign_key]]\ntable = \"public.refund\"\ncolumns = [\"payment\"]\n\
             references = \"public.payment\"\n[subset.\"public.rental\"]\nlimit = 1",
            "a column it does not have",
        ),
        (
            "field",
            "[subset.\"public.rental\"]\nwhen = \"true\"",
            "unknown field \"when\"",
        ),
    ] {
        let rules = util::rules_file(&src, name, text);
        let out = util::copy(&src, &dst, &["--rules", &rules]);
        assert_exit!(out, exit::USAGE);
        assert!(out.stderr.contains(says), "{name}: {out:?}");
        assert_eq!(dst.count("store"), 1, "{name}: nothing changed");
    }
}

#[test]
fn children_the_rules_ask_for_come_with_what_they_reference() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    src.exec(DATA);
    let rules = util::rules_file(
        &src,
        "children",
        r#"
        [subset."public.customer"]
        limit = 3
        children = ["public.rental"]
        [subset."public.rental"]
        where = "day >= date '2024-10-20'"
        "#,
    );
    // The closure, computed here: the rows picked, what they reference, and the rentals
    // of every kept customer, to a fixed point.
    let customer = rows(&src, "customer", "referred_by, home");
    let address = rows(&src, "address", "customer_id");
    let rental = rows(&src, "rental", "customer_id, day - date '2024-10-20'");
    let mut kept_customer: BTreeSet<i64> = customer.keys().take(3).copied().collect();
    let mut kept_rental: BTreeSet<i64> = rental
        .iter()
        .filter(|(_, r)| r[1].unwrap() >= 0)
        .map(|(id, _)| *id)
        .collect();
    let mut kept_address = BTreeSet::new();
    loop {
        let before = (kept_customer.len(), kept_rental.len(), kept_address.len());
        for r in &kept_rental {
            kept_customer.insert(rental[r][0].unwrap());
        }
        for c in kept_customer.clone() {
            kept_customer.extend(customer[&c][0]);
            kept_address.extend(customer[&c][1]);
        }
        for a in &kept_address {
            kept_customer.insert(address[a][0].unwrap());
        }
        for (id, r) in &rental {
            if kept_customer.contains(&r[0].unwrap()) {
                kept_rental.insert(*id);
            }
        }
        if before == (kept_customer.len(), kept_rental.len(), kept_address.len()) {
            break;
        }
    }
    for (a, row) in &address {
        if kept_customer.contains(&row[0].unwrap()) {
            kept_address.insert(*a);
        }
    }
    let payment = rows(&src, "payment", "rental_id");
    let kept_payment = payment
        .iter()
        .filter(|(_, row)| row[0].is_none_or(|r| kept_rental.contains(&r)))
        .map(|(id, _)| *id)
        .collect();
    let note = rows(&src, "\"odd.note\"", "rental_id, reply_to");
    let mut kept_note = BTreeSet::new();
    for (id, row) in &note {
        if row[0].is_none_or(|r| kept_rental.contains(&r))
            && row[1].is_none_or(|n| kept_note.contains(&n))
        {
            kept_note.insert(*id);
        }
    }
    let kept_visit = follow(&src, "visit", "rental_id", &kept_rental);
    let want = BTreeMap::from([
        ("store", ids(&src, "store")),
        ("customer", kept_customer),
        ("address", kept_address),
        ("rental", kept_rental),
        ("payment", kept_payment),
        ("\"odd.note\"", kept_note),
        ("refund", ids(&src, "refund")),
        ("visit", kept_visit),
    ]);

    let out = util::copy(&src, &dst, &["--rules", &rules, "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_subset(&src, &dst, &want, &["store", "refund"]);

    // Children through a key the copy does not follow are refused.
    let bad = util::rules_file(
        &src,
        "bad-children",
        "[subset.\"public.customer\"]\nlimit = 3\nchildren = [\"public.refund\"]",
    );
    let out = util::copy(&src, &dst, &["--rules", &bad]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("which has no foreign key to it"),
        "{out:?}"
    );
}

#[test]
fn a_subset_is_taken_by_a_source_role_without_superuser_under_role_timeouts() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    src.exec(DATA);
    // The tables' owner, not the schema's, with role-level timeouts far shorter than the
    // copy, which idles in its snapshot's transaction while the readers work.
    let role = format!("subset_owner_{}", std::process::id());
    src.exec(&format!(
        "CREATE ROLE {role} LOGIN;
         ALTER ROLE {role} SET statement_timeout = '100ms';
         ALTER ROLE {role} SET idle_in_transaction_session_timeout = '100ms';
         DO $$ DECLARE t text; BEGIN
             FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'
             LOOP EXECUTE format('ALTER TABLE %s OWNER TO {role}', t); END LOOP; END $$"
    ));
    let rules = util::rules_file(&src, "rules", RULES);
    let want = expected(&src);
    let out = util::copy_to(
        &src.url_as(&role),
        &dst.url(),
        &["--rules", &rules, "--verify"],
    );
    assert_exit!(out, exit::SUCCESS);
    assert_subset(&src, &dst, &want, &["store"]);
    src.exec(&format!(
        "DO $$ DECLARE t text; BEGIN
             FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'
             LOOP EXECUTE format('ALTER TABLE %s OWNER TO CURRENT_USER', t); END LOOP; END $$;
         DROP ROLE {role}"
    ));
}

#[test]
fn a_truncate_queued_on_a_table_a_subset_reads_fails_the_subset_instead_of_deadlocking_it() {
    let (src, dst) = util::pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE big (id int);
         CREATE TABLE customer (id int PRIMARY KEY);
         CREATE TABLE rental (id int PRIMARY KEY, customer_id int REFERENCES customer)",
    );
    src.exec(
        "INSERT INTO big SELECT generate_series(1, 50000);
         INSERT INTO customer SELECT generate_series(1, 100);
         INSERT INTO rental SELECT i, 1 + i % 100 FROM generate_series(1, 1000) i",
    );
    let rules = util::rules_file(&src, "rules", "[subset.\"public.customer\"]\nlimit = 10");
    // The first table's writer held on the destination, so the copy is still running when
    // a TRUNCATE of customer queues up on the source behind the snapshot's lock: rental's
    // subset reads customer, and would wait behind it for ever.
    let locker = util::lock_table(&dst, "big");
    let child = util::spawn_copy(
        &src,
        &dst,
        &[
            "--rules",
            &rules,
            "--parallel",
            "1",
            "--retries",
            "1",
            "--batch-size",
            "16KiB",
        ],
    );
    util::wait_for_blocked_pgcopy(&dst, &locker);
    let truncater = {
        let src = src.clone();
        std::thread::spawn(move || src.exec("TRUNCATE customer CASCADE"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while src.scalar_i64(
        "SELECT count(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query = 'TRUNCATE customer CASCADE'",
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the TRUNCATE never queued"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(locker);
    let out = util::finish(child);
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(
        out.stdout.contains(
            "another session is waiting for an exclusive lock on public.rental or a table \
             its subset reads"
        ),
        "{out:?}"
    );
    assert_eq!(src.count("big"), dst.count("big"));
    truncater
        .join()
        .expect("the TRUNCATE went through once the copy ended");
}
