//! Bad input: what pgcopy refuses before it writes anything, and what it says. Usage errors,
//! no confirmation off a terminal, connection strings that cannot work, a database copied onto
//! itself, a schema that does not match, roles that may not read or write a table: each exits
//! with 2, names the cause, and leaves the destination as it was.

use crate::util::{self, assert_exit, both, copy, copy_to, exit, pair};

#[test]
fn usage_errors_exit_2_and_help_and_version_exit_0() {
    let out =
        util::run(util::pgcopy().args(["copy", "--parallel", "0", "--source", "x", "--dest", "y"]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("--parallel must be between 1 and 64"),
        "{out:?}"
    );

    let out = util::run(util::pgcopy().args([
        "copy",
        "--batch-size",
        "1GiB",
        "--source",
        "x",
        "--dest",
        "y",
    ]));
    assert_exit!(out, exit::USAGE);

    let out = util::run(util::pgcopy().args(["frobnicate"]));
    assert_exit!(out, exit::USAGE);

    let out = util::run(util::pgcopy().args(["help", "copy"]));
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("--batch-size") && out.stdout.contains("130"),
        "{out:?}"
    );

    for args in [&["version"][..], &["--version"][..]] {
        let out = util::run(util::pgcopy().args(args));
        assert_exit!(out, exit::SUCCESS);
        assert_eq!(
            out.stdout.trim(),
            format!("pgcopy {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn refuses_to_replace_data_without_confirmation_off_a_terminal() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE t (id int)");
    src.exec("INSERT INTO t VALUES (1)");
    dst.exec("INSERT INTO t VALUES (2)");

    let out =
        util::run(util::pgcopy().args(["copy", "--source", &src.url(), "--dest", &dst.url()]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("without confirmation: pass --yes"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT id FROM t"), 2);
}

#[test]
fn bad_connection_input_fails_before_any_write_with_a_message_naming_the_cause() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE t (id int)");
    dst.exec("INSERT INTO t VALUES (-1)");
    let cases = [
        (
            "postgres://postgres@127.0.0.1:notaport/db",
            "invalid dest connection string",
        ),
        (
            "host=127.0.0.1 port=5432 dbname='unterminated",
            "invalid dest connection string",
        ),
        (
            "postgres://postgres@no-such-host.invalid/db",
            "no-such-host.invalid",
        ),
        ("postgres://postgres@127.0.0.1:1/db", "connection refused"),
        (
            &dst.url().replace(&dst.name, "no_such_database"),
            "database \"no_such_database\" does not exist",
        ),
    ];
    for (dest, cause) in cases {
        let out = copy_to(&src.url(), dest, &[]);
        assert_exit!(out, exit::USAGE, "{dest}");
        assert!(
            out.stderr.contains(cause),
            "{dest}: expected {cause:?}: {out:?}"
        );
    }
    // Sessions scattered over the hosts could not share the source's snapshot.
    let scattered = format!("{}?load_balance_hosts=random", src.url());
    let out = copy_to(&scattered, &dst.url(), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("load_balance_hosts=random cannot be used for the source"),
        "{out:?}"
    );
    assert_eq!(
        dst.scalar_i64("SELECT id FROM t"),
        -1,
        "nothing was written"
    );
}

#[test]
fn refuses_to_copy_a_database_onto_itself_whatever_the_urls_look_like() {
    let (src, _dst) = pair!();
    src.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let other_spelling = src.url().replace("127.0.0.1", "localhost");
    let key_value = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        src.port, src.name
    );
    for dest in [src.url(), other_spelling, key_value] {
        let out = copy_to(&src.url(), &dest, &[]);
        assert_exit!(out, exit::USAGE);
        assert!(
            out.stderr
                .contains("refusing to copy a database onto itself"),
            "{out:?}"
        );
    }
    assert_eq!(src.count("t"), 1);
}

#[test]
fn refuses_a_schema_mismatch_and_changes_nothing() {
    let (src, dst) = pair!();
    src.exec(
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         CREATE TABLE b (id int, amount numeric, note text);
         CREATE TABLE c (id int);
         INSERT INTO a VALUES (1, 'new'); INSERT INTO b VALUES (1, 2, 'x'); INSERT INTO c VALUES (1)",
    );
    dst.exec(
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         CREATE TABLE b (id int, amount bigint);
         INSERT INTO a VALUES (7, 'old'); INSERT INTO b VALUES (7, 7)",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::USAGE);
    for expected in [
        "public.b: column \"amount\" is numeric on the source but bigint on the destination",
        "public.b: column \"note\" is missing on the destination",
        "public.c: table is missing on the destination",
        "nothing was changed",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
    assert_eq!(dst.scalar_string("SELECT v FROM a"), "old");
    assert_eq!(dst.scalar_i64("SELECT id FROM b"), 7);
}

#[test]
fn a_column_only_the_destination_requires_is_refused_while_planning() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE t (id int PRIMARY KEY)");
    src.exec("INSERT INTO t VALUES (1), (2)");
    dst.exec(
        "ALTER TABLE t ADD COLUMN note text NOT NULL;
         ALTER TABLE t ADD COLUMN flag bool NOT NULL DEFAULT false;
         INSERT INTO t VALUES (7, 'old')",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("public.t: column \"note\" is NOT NULL without a default on the destination")
            && !out.stderr.contains("\"flag\""),
        "{out:?}"
    );
    assert_eq!(dst.scalar_string("SELECT note FROM t"), "old");
}

#[test]
fn tables_the_roles_may_not_read_or_write_are_refused_while_planning() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE open_t (id int); CREATE TABLE closed_t (id int)",
    );
    src.exec("INSERT INTO open_t VALUES (1); INSERT INTO closed_t VALUES (1)");
    dst.exec("INSERT INTO closed_t VALUES (-1)");
    let reader = "reader_without_select";
    let writer = "writer_without_truncate";
    src.exec(&format!(
        "CREATE ROLE {reader} LOGIN; GRANT SELECT ON open_t TO {reader}"
    ));
    dst.exec(&format!(
        "CREATE ROLE {writer} LOGIN; GRANT SELECT, INSERT, TRUNCATE ON open_t TO {writer};
         GRANT SELECT, INSERT ON closed_t TO {writer}"
    ));

    // The source role may not read closed_t: refused while planning, nothing changed.
    let as_reader = src.url().replace("postgres@", &format!("{reader}@"));
    let out = copy_to(&as_reader, &dst.url(), &["--fk-mode", "none"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("may not read these source tables")
            && out.stderr.contains("\n  public.closed_t\n")
            && out.stderr.contains("nothing was changed"),
        "{out:?}"
    );
    assert_eq!(dst.count("open_t"), 0);
    assert_eq!(dst.scalar_i64("SELECT id FROM closed_t"), -1);

    // The destination role may not truncate closed_t: refused as well, nothing changed.
    let as_writer = dst.url().replace("postgres@", &format!("{writer}@"));
    let out = copy_to(
        &src.url(),
        &as_writer,
        &["--fk-mode", "none", "--no-sequences"],
    );
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "may not TRUNCATE or INSERT into these destination tables:\n  public.closed_t\n"
        ),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT id FROM closed_t"), -1);
    assert_eq!(dst.count("open_t"), 0);

    // Without the table it may not write, the rest is copied.
    let out = copy_to(
        &src.url(),
        &as_writer,
        &[
            "--fk-mode",
            "none",
            "--no-sequences",
            "--exclude-tables",
            "closed_t",
        ],
    );
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("open_t"), 1);
}

/// Help groups a command's options by purpose with their arguments' names, and a typing
/// mistake in an option or a command is answered with what was meant.
#[test]
fn help_is_grouped_and_a_typo_gets_a_suggestion() {
    let out = util::run(util::pgcopy().args(["help", "copy"]));
    assert_exit!(out, exit::SUCCESS);
    for expected in [
        "Connections:\n  --source CONN",
        "What to copy:\n  --include-tables LIST",
        "How it runs:\n  --parallel N",
        "The destination:\n  --fk-mode MODE",
        "Output:\n  --no-progress",
        "3 --verify found a table that differs",
        "each piece commits on its own",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {out:?}");
    }
    let out = util::run(util::pgcopy().args(["help"]));
    assert!(out.stdout.contains("\n  3 a verification"), "{out:?}");
    let out = util::run(util::pgcopy().args(["copy", "--paralel", "2"]));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("Did you mean --parallel?"), "{out:?}");
    let out = util::run(util::pgcopy().args(["cpy"]));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("Did you mean copy?"), "{out:?}");
}
