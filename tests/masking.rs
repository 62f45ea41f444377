//! Staging refreshes without production's personal data (`--rules FILE`): columns masked by
//! the source as the rules say, NULLs left NULL, the other columns and tables as they
//! were; `verify` leaves the masked columns out and says so; a rule that names what is not
//! there, or a `require` pattern left unmasked, refuses the copy before anything changes.

use crate::util::{self, assert_exit, exit};

const SCHEMA: &str = "
    CREATE TABLE customer (id int PRIMARY KEY, email text, work_phone varchar(20),
                           name text, score int, \"odd.col\" text, born date);
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customer, note text);
    CREATE TABLE events (id int, contact_email text, at date) PARTITION BY RANGE (at);
    CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');";

fn load(db: &util::TestDb) {
    db.exec(
        "INSERT INTO customer
             SELECT i, 'person' || i || '@corp.com', '+1 555 ' || i, 'Name ' || i, i, 'x',
                    '1980-01-01'::date + i
               FROM generate_series(1, 100) i;
         UPDATE customer SET email = NULL, name = NULL WHERE id = 7;
         INSERT INTO orders SELECT i, i % 100 + 1, 'order ' || i FROM generate_series(1, 300) i;
         INSERT INTO events SELECT i, 'p' || i || '@corp.com', '2025-06-01'::date + i * 2
           FROM generate_series(1, 200) i",
    );
}

const RULES: &str = r#"
require = ["*email*", "*phone*"]
[mask."public.customer"]
email = { rule = "sql", expr = "'user' || id || '@example.invalid'" }
work_phone = "null"
name = { rule = "fixed", value = "Jane Doe" }
score = { rule = "noise", range = 5 }
born = { rule = "noise", range = "30 days" }
# A partitioned table's rule masks each of its partitions.
[mask."public.events"]
contact_email = "null"
"#;

#[test]
fn masks_columns_on_the_source_leaving_nulls_null_and_the_rest_as_it_was() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    load(&src);
    // A partition only the destination has: emptied, no rule of the parent's asked of it.
    dst.exec(
        "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO events VALUES (-1, 'old@corp.com', '2027-06-01')",
    );
    let rules = util::rules_file(&src, "rules", RULES);

    // The dry run says what each masked column becomes.
    let out = util::copy(&src, &dst, &["--rules", &rules, "--dry-run"]);
    assert_exit!(out, exit::SUCCESS);
    for line in [
        "masks public.customer.email: sql 'user' || id || '@example.invalid'",
        "masks public.customer.work_phone: null",
        "masks public.customer.name: fixed 'Jane Doe'",
    ] {
        assert!(out.stdout.contains(line), "{line}: {out:?}");
    }

    let out = util::copy(&src, &dst, &["--rules", &rules, "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        dst.scalar_string("SELECT email FROM customer WHERE id = 42"),
        "user42@example.invalid"
    );
    assert_eq!(dst.count("customer WHERE email LIKE '%corp.com'"), 0);
    assert_eq!(dst.count("customer WHERE work_phone IS NOT NULL"), 0);
    assert_eq!(dst.count("customer WHERE name = 'Jane Doe'"), 99);
    // NULLs stay NULL, whatever the rule.
    assert_eq!(
        dst.count("customer WHERE id = 7 AND email IS NULL AND name IS NULL"),
        1
    );
    // Noise: within its range, and not nothing.
    assert_eq!(
        dst.count("customer WHERE score BETWEEN id - 5 AND id + 5"),
        100
    );
    assert!(dst.count("customer WHERE score <> id") > 50);
    assert_eq!(
        dst.count("customer WHERE born BETWEEN '1980-01-01'::date + id - 30 AND '1980-01-01'::date + id + 30"),
        100
    );
    assert!(dst.count("customer WHERE born <> '1980-01-01'::date + id") > 50);
    // The other columns and tables as they were.
    assert_eq!(
        src.checksum("customer", &["id", "\"odd.col\""]),
        dst.checksum("customer", &["id", "\"odd.col\""])
    );
    util::assert_same_data(&src, &dst, &["orders"]);
    assert_eq!(dst.count("events_2025"), src.count("events_2025"));
    assert_eq!(dst.count("events_2026"), src.count("events_2026"));
    assert_eq!(dst.count("events WHERE contact_email IS NOT NULL"), 0);
    assert_eq!(
        dst.count("events_2027"),
        0,
        "the destination-only partition is emptied"
    );

    // verify with the rules compares the rest and says what it left out; without them,
    // the masked columns differ.
    let out = util::verify(&src, &dst, &["--rules", &rules, "--json"]);
    assert_exit!(out, exit::SUCCESS);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let customer = doc["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "customer"))
        .expect("customer compared");
    assert!(
        customer["not_checked"][0]
            .as_str()
            .unwrap_or_default()
            .contains("the masked columns born, email, name, score, work_phone"),
        "{out:?}"
    );
    let out = util::verify(&src, &dst, &[]);
    assert_exit!(out, exit::VERIFY_MISMATCH);
}

#[test]
fn rules_naming_what_is_not_there_or_leaving_a_required_column_unmasked_refuse_the_copy() {
    let (src, dst) = util::pair!();
    util::both(&src, &dst, SCHEMA);
    load(&src);
    dst.exec("INSERT INTO customer (id) VALUES (1000)");
    let refused = |text: &str, says: &str| {
        let rules = util::rules_file(&src, "refused", text);
        let out = util::copy(&src, &dst, &["--rules", &rules]);
        assert_exit!(out, exit::USAGE);
        assert!(out.stderr.contains(says), "{says}: {out:?}");
        assert_eq!(dst.count("customer"), 1, "the destination was changed");
    };
    // The column was renamed in production: its rule would silently do nothing.
    refused(
        "[mask.\"public.customer\"]\ne_mail = \"null\"",
        "the rules mask the column e_mail of public.customer, which it does not have",
    );
    refused(
        "[mask.\"public.client\"]\nemail = \"null\"",
        "the source has no table public.client",
    );
    // A column a pattern names, left without a rule.
    refused(
        "require = [\"*PHONE*\"]\n[mask.\"public.customer\"]\nemail = \"null\"",
        "public.customer.work_phone matches the rules' require pattern \"*phone*\" but no rule \
         masks it",
    );
    refused(
        "[mask.\"public.customer\"]\nemail = \"shuffle\"",
        "unknown rule \"shuffle\"",
    );
    // Rules whose type does not fit.
    refused(
        "[mask.\"public.customer\"]\nname = { rule = \"noise\", range = 5 }",
        "the rule noise for public.customer.name: it moves numbers, dates and times, not text",
    );
    refused(
        "[mask.\"public.customer\"]\nscore = { rule = \"noise\", range = \"lots\" }",
        "range must be a positive number, not \"lots\"",
    );
    // Following would apply the source's changes unmasked.
    let rules = util::rules_file(&src, "rules", RULES);
    let out = util::copy(&src, &dst, &["--rules", &rules, "--follow"]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("--rules with --follow"), "{out:?}");
    // A table the copy leaves out may keep its rules.
    let out = util::copy(
        &src,
        &dst,
        &["--rules", &rules, "--include-tables", "orders", "--dry-run"],
    );
    assert_exit!(out, exit::SUCCESS);
}

const KEY: &str = "a-long-random-masking-key-0123456789";

#[test]
fn hashed_columns_join_across_tables_stay_unique_and_are_the_same_every_run() {
    let (src, dst) = util::pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE account (id bigint PRIMARY KEY, login varchar(24) UNIQUE NOT NULL,
                               token uuid, note text, email varchar(40) UNIQUE,
                               full_name text, phone varchar(20), code varchar(10));
         CREATE TABLE login_event (id int PRIMARY KEY,
                                   login varchar(24) REFERENCES account (login), n int);",
    );
    src.exec(
        "INSERT INTO account
             SELECT i, 'user' || i, gen_random_uuid(), 'n', 'user' || i || '@corp.com',
                    'First' || i || ' Last', '+44 20 7946 ' || lpad(i::text, 4, '0'),
                    'AB-' || i
               FROM generate_series(1, 500) i;
         UPDATE account SET token = NULL WHERE id = 9;
         INSERT INTO login_event SELECT i, 'user' || (i % 500 + 1), i FROM generate_series(1, 2000) i",
    );
    // The same login in both tables, hashed alike: the key still joins, and validates.
    let rules = util::rules_file(
        &src,
        "hashed",
        r#"
        [mask."public.account"]
        id = "hash"
        login = "hash"
        token = "hash"
        email = "email"
        full_name = "name"
        phone = "phone"
        code = "scramble"
        [mask."public.login_event"]
        login = "hash"
        "#,
    );
    let copy = |extra: &[&str]| {
        let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules]);
        cmd.args(extra).env("PGCOPY_MASK_KEY", KEY);
        util::run(&mut cmd)
    };
    let out = copy(&["-v", "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    // The key is in no line pgcopy wrote, and so in no statement it sent (-v logs each).
    assert!(
        !out.stderr.contains(KEY) && !out.stdout.contains(KEY),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("SELECT"),
        "-v logs the statements: {out:?}"
    );
    assert_eq!(dst.count("account WHERE login LIKE 'user%'"), 0);
    assert_eq!(dst.count("account WHERE length(login) = 24"), 500);
    assert_eq!(
        dst.scalar_i64("SELECT count(DISTINCT login) FROM account"),
        500,
        "distinct logins stay distinct"
    );
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM login_event e JOIN account a USING (login)"),
        2000
    );
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"),
        1
    );
    assert_eq!(
        dst.count("account WHERE token IS NULL"),
        1,
        "a NULL stays NULL"
    );
    // The fakes: valid, unique where the values were (the unique index took them), the
    // same shape.
    assert_eq!(
        dst.count("account WHERE email ~ '^[0-9a-f]{16}@example\\.invalid$'"),
        500
    );
    assert_eq!(
        dst.count("account WHERE full_name ~ '^[A-Z][a-z]+ [A-Z][a-z]+$'"),
        500
    );
    assert_eq!(
        dst.count("account WHERE phone ~ '^\\+1-555-01[0-9]{2}-[0-9]{4}$'"),
        500
    );
    assert_eq!(dst.count("account WHERE code ~ '^[A-Z]{2}-[0-9]+$'"), 500);
    assert_eq!(dst.count("account WHERE code LIKE 'AB-%'"), 0);
    assert_eq!(
        dst.scalar_i64("SELECT sum(length(code)) FROM account"),
        src.scalar_i64("SELECT sum(length(code)) FROM account")
    );
    assert_eq!(
        dst.count("account WHERE id <= 500"),
        0,
        "ids are hashed too"
    );
    let before = dst.checksum("account", &[]);
    // Another run, the same key: the same values.
    let out = copy(&[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.checksum("account", &[]), before);

    // No key, no copy; a type hash cannot make, no copy.
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules]);
    let out = util::run(cmd.env_remove("PGCOPY_MASK_KEY"));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("set PGCOPY_MASK_KEY"), "{out:?}");
    src.exec("ALTER TABLE login_event ADD COLUMN at date");
    dst.exec("ALTER TABLE login_event ADD COLUMN at date");
    let dated = util::rules_file(
        &src,
        "dated",
        "[mask.\"public.login_event\"]\nat = \"hash\"",
    );
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &dated]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", KEY));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("the rule hash cannot produce public.login_event.at's type date"),
        "{out:?}"
    );
}

#[test]
fn json_paths_are_masked_inside_documents_and_every_other_byte_kept() {
    let (src, dst) = util::pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE account (id int PRIMARY KEY, email text);
         CREATE TABLE event (id int PRIMARY KEY, payload jsonb, raw json, email_doc jsonb)",
    );
    src.exec(
        "INSERT INTO account SELECT i, 'p' || i || '@corp.com' FROM generate_series(1, 50) i;
         INSERT INTO event SELECT i,
             jsonb_build_object(
                 'user', jsonb_build_object('email', 'p' || i || '@corp.com',
                                            'name', 'Person ' || i, 'age', 20 + i),
                 'amount', 12345678901234567890.123456789::numeric,
                 'items', jsonb_build_array(jsonb_build_object('sku', 'a' || i, 'owner', 'o' || i),
                                            jsonb_build_object('sku', 'b' || i, 'owner', null))),
             ('{\"user\": {\"email\": \"p' || i || '@corp.com\"},  \"n\": 1.10}')::json,
             CASE WHEN i % 5 <> 0 THEN jsonb_build_object('other', i) END
         FROM generate_series(1, 50) i",
    );
    let rules = util::rules_file(
        &src,
        "json",
        r#"
        require = ["*email*"]
        [mask."public.account"]
        email = "email"
        [mask."public.event"]
        "payload.user.email" = "email"
        "payload.user.name" = { rule = "fixed", value = "Jane Doe" }
        "payload.user.age" = { rule = "noise", range = 3 }
        "payload.items.*.owner" = "hash"
        "raw.user.email" = "email"
        "email_doc.contact" = "null"
        "#,
    );
    let copy = |extra: &[&str]| {
        let mut args = vec!["--rules", rules.as_str()];
        args.extend_from_slice(extra);
        let mut cmd = util::copy_command(&src.url(), &dst.url(), &args);
        util::run(cmd.env("PGCOPY_MASK_KEY", KEY))
    };
    let out = copy(&["--dry-run"]);
    assert_exit!(out, exit::SUCCESS);
    for line in [
        "masks public.event.payload.user.email: email (keyed, by pgcopy)",
        "masks public.event.payload.items.*.owner: hash (keyed, by pgcopy)",
        "masks public.event.payload.user.name: fixed 'Jane Doe'",
    ] {
        assert!(out.stdout.contains(line), "{line}\n{out:?}");
    }
    let out = copy(&[]);
    assert_exit!(out, exit::SUCCESS);

    // Keyed inside a document as in a column: the masked e-mails still join.
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM event e JOIN account a ON a.email = e.payload->'user'->>'email'"
        ),
        50
    );
    assert_eq!(
        dst.count("event WHERE payload::text LIKE '%corp.com%' OR raw::text LIKE '%corp.com%'"),
        0
    );
    assert_eq!(
        dst.count("event WHERE payload->'user'->>'name' = 'Jane Doe'"),
        50
    );
    assert_eq!(
        dst.count(
            "event WHERE jsonb_typeof(payload->'user'->'age') = 'number'
                 AND abs((payload->'user'->>'age')::numeric - (20 + id)) <= 3"
        ),
        50
    );
    // The rest of a document is as it was: numbers to the last digit, other keys, nulls.
    assert_eq!(
        dst.count("event WHERE payload->>'amount' = '12345678901234567890.123456789'"),
        50
    );
    assert_eq!(
        dst.count(
            "event WHERE payload->'items'->0->>'sku' = 'a' || id
                 AND payload->'items'->0->>'owner' ~ '^[0-9a-f]{64}$'
                 AND payload->'items'->1->'owner' = 'null'::jsonb"
        ),
        50
    );
    // A json column keeps its text byte for byte around the masked value.
    assert_eq!(
        dst.count(
            "event WHERE raw::text ~ '^\\{\"user\": \\{\"email\": \"[0-9a-f]{16}@example\\.invalid\"\\},  \"n\": 1\\.10\\}$'"
        ),
        50
    );
    // A path a document does not have changes nothing; a NULL stays NULL.
    assert_eq!(
        dst.checksum("event", &["id", "email_doc"]),
        src.checksum("event", &["id", "email_doc"])
    );

    for (text, says) in [
        (
            "[mask.\"public.account\"]\n\"email.user\" = \"null\"",
            "a path reaches inside json and jsonb columns, and the column is text",
        ),
        (
            "[mask.\"public.event\"]\n\"payload.items.*.owner\" = \"null\"",
            "a * is for the keyed rules",
        ),
        (
            "[mask.\"public.event\"]\n\"payload.user\" = \"null\"\n\"payload.user.email\" = \"email\"",
            "one inside the other",
        ),
    ] {
        let bad = util::rules_file(&src, "bad", text);
        let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &bad]);
        let out = util::run(cmd.env("PGCOPY_MASK_KEY", KEY));
        assert_exit!(out, exit::USAGE);
        assert!(out.stderr.contains(says), "{text}: {out:?}");
    }
}

#[test]
fn the_key_reaches_neither_server_in_any_statement() {
    let (src, dst) = util::pair!();
    util::both(
        &src,
        &dst,
        "CREATE TABLE person (id int PRIMARY KEY, email text, phone text, doc jsonb)",
    );
    src.exec(
        "INSERT INTO person SELECT i, 'p' || i || '@corp.com', '+44 ' || i,
                jsonb_build_object('email', 'p' || i || '@corp.com')
           FROM generate_series(1, 200000) i",
    );
    // Both servers log every statement this test's databases receive.
    for db in [&src, &dst] {
        db.exec(&format!(
            "ALTER DATABASE {} SET log_statement = 'all'",
            db.quoted_name()
        ));
    }
    let rules = util::rules_file(
        &src,
        "rules",
        r#"
        [mask."public.person"]
        email = "email"
        phone = "hash"
        "doc.email" = "email"
        "#,
    );
    // And pg_stat_activity of both, sampled while the copy runs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samplers: Vec<_> = [src.clone(), dst.clone()]
        .into_iter()
        .map(|db| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut client = db.client();
                let mut seen = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    for row in client
                        .query(
                            "SELECT query FROM pg_stat_activity
                             WHERE application_name = 'pgcopy' AND query <> ''",
                            &[],
                        )
                        .unwrap()
                    {
                        seen.push(row.get::<_, String>(0));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                seen
            })
        })
        .collect();
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules, "-v"]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", KEY));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        dst.count("person WHERE email LIKE '%@example.invalid'"),
        200000
    );
    for (side, sampler) in ["source", "destination"].into_iter().zip(samplers) {
        let seen = sampler.join().unwrap();
        assert!(
            seen.iter().any(|q| q.contains("COPY")),
            "the {side}'s pg_stat_activity showed the copy: {seen:?}"
        );
        assert!(
            !seen.iter().any(|q| q.contains(KEY)),
            "the key in the {side}'s pg_stat_activity"
        );
    }
    for (side, cluster) in [("source", util::source()), ("destination", util::dest())] {
        let log = cluster.log();
        assert!(
            log.contains("\"public\".\"person\""),
            "the {side}'s log has the statements"
        );
        assert!(!log.contains(KEY), "the key in the {side}'s log");
    }
    assert!(!out.stderr.contains(KEY) && !out.stdout.contains(KEY));
}

#[test]
fn a_keyed_rule_is_checked_against_the_type_the_destination_takes() {
    let (src, dst) = util::pair!();
    src.exec("CREATE TABLE contact (id int PRIMARY KEY, email varchar(40))");
    dst.exec("CREATE TABLE contact (id int PRIMARY KEY, email varchar(20))");
    src.exec("INSERT INTO contact VALUES (1, 'ann@corp.com')");
    let rules = util::rules_file(
        &src,
        "narrowed",
        "[mask.\"public.contact\"]\nemail = \"email\"",
    );
    let mut cmd = util::copy_command(
        &src.url(),
        &dst.url(),
        &["--rules", &rules, "--allow-narrowing"],
    );
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", KEY));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "the rule email cannot produce public.contact.email as the destination takes it, \
             character varying(20): its addresses take 32 characters"
        ),
        "{out:?}"
    );
    assert_eq!(dst.count("contact"), 0);
}
