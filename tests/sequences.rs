//! Sequences: serial, identity and standalone sequences set to the source's values, those of
//! schemas without a copied table left alone, and one the destination cannot take reported
//! without holding back the others.

use crate::util::{assert_exit, both, copy, exit, pair, TestDb};

#[test]
fn sets_identity_serial_and_standalone_sequences_to_the_source_values() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE s_serial (id serial PRIMARY KEY, v text);
         CREATE TABLE s_ident (id bigint GENERATED ALWAYS AS IDENTITY, v text);
         CREATE SEQUENCE standalone START 100 INCREMENT 5;
         CREATE SEQUENCE never_used START 42;
         CREATE SCHEMA other;
         CREATE SEQUENCE other.untouched;",
    );
    src.exec(
        "INSERT INTO s_serial (v) SELECT 'x' FROM generate_series(1, 37);
         INSERT INTO s_ident (v) SELECT 'y' FROM generate_series(1, 12);
         SELECT nextval('standalone') FROM generate_series(1, 7);
         SELECT setval('other.untouched', 999);",
    );
    let value =
        |db: &TestDb, seq: &str| db.rows_text(&format!("SELECT last_value, is_called FROM {seq}"));
    let sequences = [
        "s_serial_id_seq",
        "s_ident_id_seq",
        "standalone",
        "never_used",
    ];

    let out = copy(&src, &dst, &["--no-sequences"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        value(&dst, "s_serial_id_seq"),
        [[Some("1".into()), Some("f".into())]]
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    for seq in sequences {
        assert_eq!(value(&src, seq), value(&dst, seq), "{seq}");
    }
    assert_eq!(
        value(&dst, "s_ident_id_seq"),
        [[Some("12".into()), Some("t".into())]]
    );
    assert_eq!(
        value(&dst, "other.untouched"),
        [[Some("1".into()), Some("f".into())]],
        "a schema with no copied table is left alone"
    );
    assert!(out.stdout.contains("sequences set: 4"), "{out:?}");
    dst.exec("INSERT INTO s_serial (v) VALUES ('next')");
    assert_eq!(dst.scalar_i64("SELECT max(id) FROM s_serial"), 38);
}

#[test]
fn a_sequence_the_destination_cannot_take_does_not_hold_back_the_others() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE SEQUENCE big_seq; CREATE SEQUENCE small_seq; CREATE TABLE t (id int)",
    );
    src.exec("SELECT setval('big_seq', 5000); SELECT setval('small_seq', 42)");
    dst.exec("ALTER SEQUENCE big_seq MAXVALUE 1000");

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(
        out.stdout
            .contains("sequence public.big_seq could not be set to the source's 5000"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT last_value FROM small_seq"), 42);
    assert!(out.stdout.contains("sequences set: 1"), "{out:?}");
}
