//! Columns whose type the destination changed: a widened type (`int` to `bigint`,
//! `varchar(10)` to `text`, `json` to `jsonb`, a domain over the source's type, anything
//! into an unbounded text column, …) is copied
//! exactly, in binary and in text tables; a narrowed one is refused while planning, naming
//! every column, unless `--allow-narrowing`, and then a value that does not fit fails its
//! table with the row's key while the old rows stay.

use crate::util::{self, assert_exit, copy, copy_to, exit, pair, TestDb};

/// Widened pairs: (source type, destination type, a value of row `i`).
const WIDENED: &[(&str, &str, &str)] = &[
    ("int", "bigint", "i * 1000003"),
    ("smallint", "int", "(i % 30000)::smallint"),
    ("int", "numeric", "-i"),
    ("bigint", "numeric", "i * 9007199254740993"),
    ("varchar(10)", "text", "'v' || i"),
    ("varchar(10)", "varchar(20)", "'w' || i"),
    ("char(4)", "char(8)", "'c' || (i % 100)"),
    ("numeric(12,2)", "numeric(14,4)", "i * 1.25"),
    (
        "timestamp(0)",
        "timestamp",
        "'2024-01-01'::timestamp + i * interval '1 minute'",
    ),
    (
        "timestamptz(0)",
        "timestamptz(3)",
        "'2024-01-01 00:00+02'::timestamptz + i * interval '1 s'",
    ),
    (
        "json",
        "jsonb",
        "json_build_object('i', i, 'tags', json_build_array('a', i))",
    ),
    ("int", "public.positive", "i"),
    ("int[]", "bigint[]", "ARRAY[i, -i, NULL]"),
    ("varchar(5)[]", "text[]", "ARRAY['a' || (i % 100)]"),
    ("float4", "float8", "i / 7.0"),
    ("date", "timestamp", "'2024-01-01'::date + i"),
    // Into an unbounded text column, every value's text form.
    ("int", "text", "i * 7"),
    (
        "timestamptz",
        "text",
        "'2024-01-01 00:00+02'::timestamptz + i * interval '1 h'",
    ),
    ("int[]", "text", "ARRAY[i, NULL]"),
    ("numeric", "varchar", "i / 3.0"),
    ("bytea", "text", "decode(md5(i::text), 'hex')"),
];

/// Narrowed pairs: (source type, destination type, a value of row `i` that fits, one that
/// does not, or None where any value may fit as far as the server checks).
const NARROWED: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "text",
        "varchar(5)",
        "'t' || (i % 1000)",
        Some("'much too long'"),
    ),
    (
        "varchar(10)",
        "varchar(5)",
        "'s' || (i % 1000)",
        Some("'too long!'"),
    ),
    ("bigint", "int", "i", Some("9999999999")),
    (
        "numeric(12,2)",
        "numeric(8,2)",
        "i * 1.5",
        Some("1234567.89"),
    ),
    (
        "timestamptz",
        "timestamp",
        "'2024-01-01 00:00+00'::timestamptz + i * interval '1 s'",
        None,
    ),
    (
        "public.mood",
        "public.feeling",
        "(ARRAY['sad', 'ok'])[1 + i % 2]::public.mood",
        Some("'happy'"),
    ),
];

/// Makes table `name` on both sides with column `c<k>` of each pair's types, filled with
/// `rows` rows on the source and one old row on the destination. A text table also has a
/// `regclass` column, which cannot travel in binary.
fn make_table(
    src: &TestDb,
    dst: &TestDb,
    name: &str,
    types: &[(&str, &str, &str)],
    text: bool,
    rows: i64,
) {
    let extra = if text { ", r regclass" } else { "" };
    let extra_value = if text { ", 'pg_class'::regclass" } else { "" };
    let columns = |source: bool| {
        types
            .iter()
            .enumerate()
            .map(|(k, pair)| format!("c{k} {}", if source { pair.0 } else { pair.1 }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    src.exec(&format!(
        "CREATE TABLE {name} (id int PRIMARY KEY, {}{extra});
         INSERT INTO {name} SELECT i, {}{extra_value} FROM generate_series(1, {rows}) i",
        columns(true),
        types.iter().map(|p| p.2).collect::<Vec<_>>().join(", ")
    ));
    dst.exec(&format!(
        "CREATE TABLE {name} (id int PRIMARY KEY, {}{extra});
         INSERT INTO {name} (id) VALUES (-1)",
        columns(false)
    ));
}

fn types_setup(src: &TestDb, dst: &TestDb) {
    src.exec("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')");
    dst.exec(
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0);
         CREATE TYPE feeling AS ENUM ('sad', 'ok', 'fine')",
    );
}

/// Each column on the destination as text, row by row, against the source's value as the
/// destination's type renders it: cast on the source where it has that type (the built-in
/// ones), else read by the destination from the source's text, as `COPY` reads it.
fn assert_values_match(src: &TestDb, dst: &TestDb, table: &str, types: &[(&str, &str, &str)]) {
    for (k, (from, to, _)) in types.iter().enumerate() {
        let on_source = !to.starts_with("public.");
        let cast = if on_source {
            format!("::{to}")
        } else {
            String::new()
        };
        let source = src.rows_text(&format!(
            "SET TimeZone = 'UTC'; SELECT id, c{k}{cast}::text FROM {table} ORDER BY id"
        ));
        let dest = dst.rows_text(&format!("SELECT id, c{k}::text FROM {table} ORDER BY id"));
        assert_eq!(
            source.len(),
            dest.len(),
            "{table}.c{k} {from} → {to}: row counts"
        );
        for (s, d) in source.iter().zip(&dest) {
            let expected = match &s[1] {
                Some(text) if !on_source => {
                    let sql = format!("SELECT '{}'::{to}::text", text.replace('\'', "''"));
                    dst.rows_text(&sql)[0][0].clone()
                }
                other => other.clone(),
            };
            assert_eq!(
                (&s[0], &expected),
                (&d[0], &d[1]),
                "{table}.c{k} {from} → {to}"
            );
        }
    }
}

#[test]
fn widened_columns_are_copied_exactly_in_binary_and_text_tables() {
    let (src, dst) = pair!();
    types_setup(&src, &dst);
    make_table(&src, &dst, "wide_binary", WIDENED, false, 500);
    make_table(&src, &dst, "wide_text", WIDENED, true, 500);

    let dry = copy(&src, &dst, &["--dry-run"]);
    assert_exit!(dry, exit::SUCCESS);
    for expected in [
        "converts public.wide_binary: \"c0\" integer → bigint (an implicit cast; cast to bigint by the source)",
        "converts public.wide_binary: \"c4\" character varying(10) → text (an implicit cast; the bytes as they are)",
        "converts public.wide_binary: \"c10\" json → jsonb",
        "converts public.wide_binary: \"c11\" integer → public.positive (a domain over the same type",
        "converts public.wide_binary: \"c13\" character varying(5)[] → text[] (an implicit cast; cast to text[] by the source)",
        "converts public.wide_text: \"c0\" integer → bigint (an implicit cast; cast to bigint by the source)",
        "converts public.wide_text: \"c4\" character varying(10) → text (an implicit cast; read from text by the destination)",
        "converts public.wide_binary: \"c16\" integer → text (its text form, into a text column without a limit; cast to text by the source)",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}: {dry:?}");
    }

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains("converted public.wide_binary: \"c0\" integer → bigint"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
    for table in ["wide_binary", "wide_text"] {
        assert_eq!(dst.count(table), 500, "{table}: the old row is gone");
        assert_values_match(&src, &dst, table, WIDENED);
    }
    let out = util::verify(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
}

#[test]
fn narrowed_columns_are_refused_naming_each_unless_allowed() {
    let (src, dst) = pair!();
    types_setup(&src, &dst);
    let fitting: Vec<(&str, &str, &str)> = NARROWED.iter().map(|n| (n.0, n.1, n.2)).collect();
    make_table(&src, &dst, "narrow_binary", &fitting, false, 300);
    make_table(&src, &dst, "narrow_text", &fitting, true, 300);
    src.exec("CREATE TABLE flat (id int PRIMARY KEY, v int[]); INSERT INTO flat VALUES (1, '{1}')");
    dst.exec("CREATE TABLE flat (id int PRIMARY KEY, v int)");

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("--allow-narrowing"), "{out:?}");
    for table in ["narrow_binary", "narrow_text"] {
        for (k, (_, to, _, _)) in NARROWED.iter().enumerate() {
            let line = format!("public.{table}: column \"c{k}\" is ");
            assert!(out.stderr.contains(&line), "{line} ({to}): {out:?}");
        }
        assert_eq!(dst.count(table), 1, "nothing changed");
    }
    assert!(
        out.stderr.contains(
            "public.flat: column \"v\" is integer[] on the source but integer on the destination"
        ),
        "{out:?}"
    );

    // Allowed, every value fitting: copied, as the destination reads the source's text.
    let out = copy(
        &src,
        &dst,
        &["--allow-narrowing", "--exclude-tables", "flat"],
    );
    assert_exit!(out, exit::SUCCESS);
    for table in ["narrow_binary", "narrow_text"] {
        assert_eq!(dst.count(table), 300, "{table}");
        assert_values_match(&src, &dst, table, &fitting);
    }
}

#[test]
fn a_value_that_does_not_fit_fails_its_table_naming_the_row() {
    let (src, dst) = pair!();
    types_setup(&src, &dst);
    let mut tables = Vec::new();
    for (k, (from, to, fits, misfit)) in NARROWED.iter().enumerate() {
        let Some(misfit) = misfit else { continue };
        for text in [false, true] {
            let table = format!("misfit_{k}_{}", if text { "text" } else { "binary" });
            make_table(&src, &dst, &table, &[(from, to, fits)], text, 200);
            src.exec(&format!("UPDATE {table} SET c0 = {misfit} WHERE id = 137"));
            tables.push(table);
        }
    }
    both_fit(&src, &dst);
    // As production loads: a destination role that owns the tables, not the schema, and is
    // no superuser (the search for the row needs only TEMP, which PUBLIC has).
    let owner = "misfit_table_owner";
    dst.exec(&format!("CREATE ROLE {owner} LOGIN"));
    for table in tables.iter().map(String::as_str).chain(["fits"]) {
        dst.exec(&format!("ALTER TABLE {table} OWNER TO {owner}"));
    }

    let out = copy_to(&src.url(), &dst.url_as(owner), &["--allow-narrowing"]);
    assert_exit!(out, exit::TABLES_FAILED);
    for table in &tables {
        let line = format!(
            "public.{table}: the source row (id)=(137) does not fit the destination's types"
        );
        assert!(
            out.stdout.contains(&line) || out.stderr.contains(&line),
            "{line}: {out:?}"
        );
        assert_eq!(
            dst.rows_text(&format!("SELECT id FROM {table}")),
            vec![vec![Some("-1".to_string())]],
            "{table} keeps its old row"
        );
    }
    assert_eq!(dst.count("fits"), 10, "a table that fits is copied");
}

/// A table whose narrowed column fits, beside the ones that fail.
fn both_fit(src: &TestDb, dst: &TestDb) {
    src.exec("CREATE TABLE fits (id int PRIMARY KEY, v bigint); INSERT INTO fits SELECT i, i FROM generate_series(1, 10) i");
    dst.exec("CREATE TABLE fits (id int PRIMARY KEY, v int)");
}
