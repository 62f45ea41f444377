//! The chunked initial copy of `copy --follow`: every table, and every key range of a big
//! one, read in a short snapshot of its own while writers keep changing the rows being
//! read — updates, deletes, re-inserts, keys moved between ranges read and not read, a
//! TOASTed value an update leaves alone, a TRUNCATE between two chunks — then reconciled
//! through the stream, so that the destination equals the source at cutover; the snapshots
//! pgcopy holds on the source, as the source's own `pg_stat_activity` shows them; and a
//! follower killed during its copy going on with `--resume` from the chunks it recorded; a
//! table whose other unique index two chunks could clash in, read whole.

use crate::util::{
    self, assert_exit, assert_nothing_left, cut_over, exit, test_name, wait_following,
    wait_while_running, TestDb,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SCHEMA: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL, pad text, body text);
    CREATE TABLE notes (k uuid PRIMARY KEY, v int NOT NULL, pad text);
    CREATE TABLE loose (v int, pad text);
    ALTER TABLE loose REPLICA IDENTITY FULL;
    CREATE TABLE emptied (id int PRIMARY KEY, pad text);
    CREATE TABLE writes (id bigserial PRIMARY KEY, at pg_lsn NOT NULL, what text NOT NULL);";

/// Every table, as the checks name them.
const TABLES: &[&str] = &["items", "notes", "loose", "emptied", "writes"];

/// Rows of `items`: about 24 MB, 24 chunks of the smallest --chunk-size. Their keys are
/// even, so that a key update can move a row to any odd key, into a chunk read before or
/// after its own; every 500th row has a body stored out of line (TOASTed).
const ITEMS: i64 = 100_000;

fn loaded_pair(name: &str) -> (util::Cluster, util::Cluster, TestDb, TestDb) {
    let (logical, destination, src, dst) = util::logical_pair(name);
    util::both(&src, &dst, SCHEMA);
    src.exec(&format!(
        "INSERT INTO items
         SELECT 2 * g, 0, repeat('p', 200),
                CASE WHEN g % 500 = 0 THEN
                    (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 300) i)
                END
         FROM generate_series(1, {ITEMS}) g;
         INSERT INTO notes SELECT gen_random_uuid(), g, repeat('n', 200)
         FROM generate_series(1, 20000) g;
         INSERT INTO loose SELECT g, repeat('l', 100) FROM generate_series(1, 20000) g;
         INSERT INTO emptied SELECT g, repeat('e', 200) FROM generate_series(1, 40000) g;
         ANALYZE;"
    ));
    (logical, destination, src, dst)
}

/// A writer changing rows of every table, one change to a transaction, each logging where
/// the WAL was in `writes`, until `stop`: updates, deletes, re-inserts, a delete and an
/// insert of one key in one transaction, keys moved anywhere in the key space (from ranges
/// read into ranges not read yet and back), updates and moves of rows whose TOASTed body
/// they leave alone.
fn writer(src: &TestDb) -> (&'static AtomicBool, JoinHandle<u64>) {
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let mut client = src.client();
    let thread = std::thread::spawn(move || {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |below: i64| -> i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % below as u64) as i64
        };
        let mut done = 0;
        while !stop.load(Ordering::SeqCst) {
            let (r, r2) = (next(2 * ITEMS + 2_000), next(ITEMS + 1_000) * 2 - 1);
            let toasted = (next(ITEMS / 500) * 1000).to_string();
            let (what, sql) = match done % 9 {
                0 => (
                    "update",
                    format!("UPDATE items SET n = n + 1 WHERE id = {r}"),
                ),
                1 => ("delete", format!("DELETE FROM items WHERE id = {r}")),
                2 => (
                    "insert",
                    format!(
                        "INSERT INTO items VALUES ({r}, 1, 'new', NULL)
                         ON CONFLICT (id) DO UPDATE SET n = items.n + 1"
                    ),
                ),
                3 => (
                    "move",
                    format!(
                        "UPDATE items SET id = {r2}, n = n + 1 WHERE id = {r}
                         AND NOT EXISTS (SELECT FROM items WHERE id = {r2})"
                    ),
                ),
                4 => (
                    "delete and insert again",
                    format!(
                        "DELETE FROM items WHERE id = {r};
                         INSERT INTO items VALUES ({r}, 7, 'again', NULL)"
                    ),
                ),
                5 => (
                    "update leaving the TOASTed body",
                    format!("UPDATE items SET n = n + 1 WHERE id = {toasted}"),
                ),
                6 => (
                    "move leaving the TOASTed body",
                    format!(
                        "UPDATE items SET id = {r2} WHERE id = {toasted}
                         AND NOT EXISTS (SELECT FROM items WHERE id = {r2})"
                    ),
                ),
                7 => (
                    "notes",
                    "UPDATE notes SET k = gen_random_uuid(), v = v + 1
                     WHERE k = (SELECT k FROM notes ORDER BY k OFFSET (random() * 1000)::int
                                LIMIT 1)"
                        .to_string(),
                ),
                _ => (
                    "loose",
                    format!(
                        "UPDATE loose SET v = v + 100000 WHERE v = {v};
                         DELETE FROM loose WHERE v = {w}",
                        v = r % 20_000,
                        w = r2 % 20_000
                    ),
                ),
            };
            let sql = format!(
                "BEGIN; {sql}; INSERT INTO writes (at, what) VALUES (pg_current_wal_lsn(), '{what}');
                 COMMIT"
            );
            client.batch_execute(&sql).expect("a writer's transaction");
            done += 1;
        }
        done
    });
    (stop, thread)
}

/// How many chunks of `table` the destination recorded as copied (0 before the record
/// exists).
fn recorded(dst: &TestDb, table: &str) -> i64 {
    if dst.scalar_i64("SELECT (to_regclass('pgcopy.follow_chunks') IS NULL)::int") == 1 {
        return 0;
    }
    dst.scalar_i64(&format!(
        "SELECT count(*) FROM pgcopy.follow_chunks
         WHERE table_name LIKE '{table}' AND snapshot IS NOT NULL"
    ))
}

/// The first and the last horizon of `table`'s chunks, as text.
fn horizons(dst: &TestDb, table: &str) -> (String, String) {
    let rows = dst.rows_text(&format!(
        "SELECT min(horizon)::text, max(horizon)::text FROM pgcopy.follow_chunks
         WHERE table_name = '{table}'"
    ));
    let row = &rows[0];
    (
        row[0].clone().expect("chunks"),
        row[1].clone().expect("chunks"),
    )
}

#[test]
fn chunks_read_while_rows_change_under_them_add_up_to_the_source_at_cutover() {
    let (_logical, _destination, src, dst) = loaded_pair(&test_name!());
    let (stop, writing) = writer(&src);
    let mut follower = util::spawn_copy(
        &src,
        &dst,
        &[
            "--follow",
            "--chunk-size",
            "1MiB",
            "--parallel",
            "1",
            "--progress-interval",
            "1",
        ],
    );
    // While the copy runs: the source's next transaction id once the first chunk is
    // recorded; how far following applied the stream while chunks were left to read; and,
    // between two chunks of `emptied`, that table emptied and filled again across its whole
    // key range, so that chunks read before and after the TRUNCATE both hold its rows.
    let mut first_next: Option<i64> = None;
    let mut held_xmin: Option<i64> = None;
    let mut applied_during = 0;
    let follower_id = follower.id();
    let mut truncated_at = None;
    let mut source = src.client();
    let next_xid = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint";
    wait_while_running(&mut follower, 120, "following", || {
        if first_next.is_none() && recorded(&dst, "%") > 0 {
            first_next = Some(src.scalar_i64(next_xid));
        }
        if truncated_at.is_none() && recorded(&dst, "items") > 0 {
            // The copy of `emptied` held on the destination, from before it begins (the
            // bigger `items` goes first) until its first chunk's writer waits: the chunks
            // after that one are read after the TRUNCATE. The oldest snapshot pgcopy holds on
            // the source meanwhile, if any, is that chunk's.
            let mut holder = dst.client();
            holder
                .batch_execute("BEGIN; LOCK TABLE emptied IN ACCESS EXCLUSIVE MODE")
                .expect("holding emptied");
            let started = Instant::now();
            while dst.scalar_i64(
                "SELECT count(*) FROM pg_locks
                 WHERE NOT granted AND relation = 'emptied'::regclass",
            ) == 0
            {
                assert!(
                    started.elapsed().as_secs() < 120,
                    "no writer waited for emptied"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            held_xmin = source
                .query_one(
                    "SELECT min(backend_xmin::text::bigint) FROM pg_stat_activity
                     WHERE application_name = 'pgcopy' AND backend_type = 'client backend'",
                    &[],
                )
                .expect("sampling pg_stat_activity")
                .get(0);
            // Meanwhile following applies what the writer commits to the tables whole on
            // the destination (`items`, once its indexes are back), and leaves the rest to
            // their chunks, which are still to read: the destination records its progress.
            let said = util::spooled_stderr(follower_id);
            let start = said
                .split("changes committed after ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no slot's start: {said}"))
                .to_string();
            while applied_during < 5 {
                assert!(
                    started.elapsed().as_secs() < 120,
                    "following applied {applied_during} writes while the copy was held"
                );
                std::thread::sleep(Duration::from_millis(50));
                let Some(lsn) = dst
                    .rows_text("SELECT max(remote_lsn)::text FROM pg_replication_origin_status")[0]
                    [0]
                .clone() else {
                    continue;
                };
                applied_during = src.scalar_i64(&format!(
                    "SELECT count(*) FROM writes WHERE at > '{start}' AND at < '{lsn}'"
                ));
            }
            // The TRUNCATE waits on the source for the chunk's read, which waits for its
            // writer, held here: it is let go once the TRUNCATE waits in turn (or is done).
            let mut truncator = src.client();
            let truncating = std::thread::spawn(move || {
                truncator
                    .batch_execute(
                        "BEGIN; TRUNCATE emptied;
                         INSERT INTO emptied SELECT g, 'after' FROM generate_series(1, 40000, 13) g;
                         COMMIT",
                    )
                    .expect("TRUNCATE emptied");
                truncator
                    .query_one("SELECT pg_current_wal_lsn()::text", &[])
                    .expect("the WAL position")
                    .get::<_, String>(0)
            });
            while !truncating.is_finished()
                && src.scalar_i64(
                    "SELECT count(*) FROM pg_locks
                     WHERE NOT granted AND relation = 'emptied'::regclass",
                ) == 0
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            holder.batch_execute("ROLLBACK").expect("ROLLBACK");
            truncated_at = Some(truncating.join().expect("the TRUNCATE"));
        }
        util::copy_over(&dst)
    });
    wait_following(&dst, &mut follower);
    stop.store(true, Ordering::SeqCst);
    let writes = writing.join().expect("the writer");
    assert!(writes > 100, "the writer made {writes} transactions");

    // The source's own record of the order of events. Writes committed between the first
    // and the last chunk of `items`, whose rows they changed while the chunks were read.
    let (first, last) = horizons(&dst, "items");
    let during = src.scalar_i64(&format!(
        "SELECT count(*) FROM writes WHERE at > '{first}' AND at < '{last}'"
    ));
    assert!(
        during >= 20,
        "only {during} writes between the chunks {first} and {last}"
    );
    assert!(recorded(&dst, "items") >= 10, "items was read in chunks");
    // The TRUNCATE came between two chunks of `emptied`: some read before it, some after.
    let truncated_at = truncated_at.expect("emptied was truncated during the copy");
    let (first, last) = horizons(&dst, "emptied");
    assert_eq!(
        src.scalar_string(&format!(
            "SELECT ('{first}'::pg_lsn < '{truncated_at}' AND '{truncated_at}' < '{last}')::text"
        )),
        "true",
        "TRUNCATE at {truncated_at}, chunks of emptied from {first} to {last}"
    );
    // Any snapshot the copy held while it waited for `emptied`, long after its first chunk,
    // is younger than the transactions running then (a copy in one snapshot holds the one
    // it was planned in throughout), as the source's `pg_stat_activity` shows it.
    let first_next = first_next.expect("a chunk recorded");
    assert!(
        held_xmin.is_none_or(|held| held >= first_next),
        "the copy still held a snapshot ({held_xmin:?}) from before its first chunk \
         ({first_next})"
    );
    // The table without a key was read whole, in its own snapshot, and the log says why.
    assert_eq!(recorded(&dst, "loose"), 1);
    let dst_chunks = dst.scalar_i64("SELECT count(*) FROM pgcopy.follow_chunks");

    let (out, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    assert_exit!(followed, exit::SUCCESS);
    assert!(out.stdout.contains("cut over in "), "{out:?}");
    assert!(
        followed
            .stderr
            .contains("loose is read whole, in a snapshot of its own held while it is read"),
        "{followed:?}"
    );
    assert!(
        applied_during >= 5,
        "following applied while chunks were read"
    );
    // The progress lines count the chunks, the last one all of them done.
    let chunks = dst_chunks;
    let last = followed
        .stderr
        .lines()
        .rfind(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line: {followed:?}"));
    assert!(
        last.contains(&format!("5/5 tables ({chunks}/{chunks} chunks)")),
        "{last}"
    );
    util::assert_same_data(&src, &dst, TABLES);
    assert_eq!(dst.count("emptied"), 3077, "{followed:?}");
    assert_nothing_left(&src, &dst);
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgcopy'"),
        0,
        "the record of the chunks is gone with the follower"
    );
}

/// Where the follower is killed during its chunked copy.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    /// In the middle of a chunk: its rows written on the destination, its transaction not
    /// committed (its record waits for a row lock the test holds).
    MidChunk,
    /// Between two chunks: the last one committed, the next not begun on the destination
    /// (its writer waits for a table lock the test holds).
    Between,
}

/// A follower killed during its chunked copy, where `kill` says, goes on with `--resume`:
/// the chunks recorded before the kill stay as they were, and the destination equals the
/// source at cutover. The copy is held where it is killed by a lock on the destination,
/// and killed once the destination's `pg_locks` shows its writer waiting for it.
fn killed_and_resumed(name: &str, kill: Kill) {
    let (_logical, _destination, src, dst) = loaded_pair(name);
    let (stop, writing) = writer(&src);
    let args = ["--follow", "--chunk-size", "1MiB", "--parallel", "1"];
    let mut follower = util::spawn_copy(&src, &dst, &args);
    let mut holder = dst.client();
    holder.batch_execute("BEGIN").expect("BEGIN");
    // A table with two chunks at least still to copy, once one chunk was copied.
    let pending = "SELECT table_name FROM pgcopy.follow_chunks WHERE snapshot IS NULL
                   GROUP BY 1 HAVING count(*) >= 2 ORDER BY count(*) DESC LIMIT 1";
    wait_while_running(&mut follower, 120, "a table with chunks to copy", || {
        if recorded(&dst, "%") == 0 {
            return false;
        }
        let Some(table) = holder.query_opt(pending, &[]).expect("pending chunks") else {
            return false;
        };
        let table: String = table.get(0);
        let held = match kill {
            Kill::MidChunk => format!(
                "SELECT FROM pgcopy.follow_chunks WHERE table_name = '{table}'
                 AND snapshot IS NULL ORDER BY condition DESC LIMIT 1 FOR UPDATE"
            ),
            Kill::Between => format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
        };
        holder.execute(&held, &[]).expect("holding the copy") > 0 || kill == Kill::Between
    });
    wait_while_running(&mut follower, 120, "its writer waiting", || {
        dst.scalar_i64(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE NOT l.granted AND a.application_name = 'pgcopy'",
        ) > 0
    });
    follower.kill().expect("kill -9 of the follower");
    let _ = follower.wait();
    holder.batch_execute("ROLLBACK").expect("ROLLBACK");
    let kept = "SELECT table_name, condition, snapshot FROM pgcopy.follow_chunks
                WHERE snapshot IS NOT NULL ORDER BY 1, 2";
    let before = dst.rows_text(kept);
    assert!(!before.is_empty(), "chunks recorded before the kill");
    // `status` counts them, and the others.
    let out = util::run(util::pgcopy().args([
        "status",
        "--source",
        &src.url(),
        "--dest",
        &dst.url(),
        "--json",
    ]));
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let copy = &doc["initial_copy"];
    assert_eq!(
        copy["chunks_copied"].as_u64(),
        Some(before.len() as u64),
        "{out:?}"
    );
    assert!(
        copy["chunks"].as_u64() > Some(before.len() as u64),
        "{out:?}"
    );
    let items = copy["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "items"))
        .unwrap_or_else(|| panic!("items in {out:?}"));
    assert!(items["chunks"].as_u64() >= Some(10), "{out:?}");
    let text =
        util::run(util::pgcopy().args(["status", "--source", &src.url(), "--dest", &dst.url()]));
    assert!(
        text.stdout.contains(&format!("{} of ", before.len()))
            && text.stdout.contains(" chunks copied"),
        "{text:?}"
    );

    let mut args = args.to_vec();
    args.push("--resume");
    let mut resumed = util::spawn_copy(&src, &dst, &args);
    wait_following(&dst, &mut resumed);
    let after = dst.rows_text(kept);
    let again: Vec<_> = before.iter().filter(|c| !after.contains(c)).collect();
    if !again.is_empty() {
        resumed.kill().ok();
        let said = util::finish(resumed);
        panic!("chunks recorded before the kill were read again: {again:?}\nBEFORE {before:?}\nAFTER {after:?}\n{said:?}");
    }
    assert!(after.len() > before.len(), "the others were read on resume");
    stop.store(true, Ordering::SeqCst);
    writing.join().expect("the writer");
    let (_, followed) = cut_over(&src.url(), &dst.url(), resumed, &["--verify"]);
    assert_exit!(followed, exit::SUCCESS);
    assert!(
        followed.stderr.contains("resuming the initial copy"),
        "{followed:?}"
    );
    util::assert_same_data(&src, &dst, TABLES);
    assert_nothing_left(&src, &dst);
}

#[test]
fn a_follower_killed_in_the_middle_of_a_chunk_resumes_from_the_chunks_it_recorded() {
    killed_and_resumed(&test_name!(), Kill::MidChunk);
}

#[test]
fn a_follower_killed_between_two_chunks_resumes_from_the_chunks_it_recorded() {
    killed_and_resumed(&test_name!(), Kill::Between);
}

/// A table with a unique index besides the key its chunks would follow is read whole:
/// between the reads of two of its chunks, a value can move from a row of one to a row of
/// the other, and be in both chunks' rows until the stream moves it, which no unique index
/// allows. The copy is held on the destination once the first chunk of `mirrored` is read
/// (its record waits for a row lock), and every email of the table is moved to the row at
/// the mirror image of its key: in two chunks read before and after that, the second would
/// hold emails of the first. `included`, whose primary key carries a column it does not
/// order by (`INCLUDE`), is read in chunks of that key alone, the key its deletes carry.
#[test]
fn a_table_with_another_unique_index_is_read_whole_and_its_moved_values_follow() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(
        &src,
        &dst,
        "CREATE TABLE ahead (v int, pad text);
         ALTER TABLE ahead REPLICA IDENTITY FULL;
         CREATE TABLE mirrored (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, pad text);
         CREATE TABLE included (id bigint, n int NOT NULL, pad text, PRIMARY KEY (id) INCLUDE (n));",
    );
    src.exec(
        "INSERT INTO ahead SELECT g, repeat('a', 300) FROM generate_series(1, 10000) g;
         INSERT INTO mirrored SELECT g, 'e' || g, repeat('m', 300) FROM generate_series(1, 4000) g;
         INSERT INTO included SELECT g, g, repeat('i', 300) FROM generate_series(1, 4000) g;
         ANALYZE;",
    );
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                   WHERE NOT l.granted AND a.application_name = 'pgcopy'";
    // `ahead`, the biggest table, is read first (whole: it has no key): its load waits for
    // this lock while the chunks of `mirrored`, all still to read, are held in turn.
    let mut ahead = dst.client();
    ahead
        .batch_execute("BEGIN; LOCK TABLE ahead IN ACCESS EXCLUSIVE MODE")
        .expect("holding ahead");
    let args = ["--follow", "--chunk-size", "1MiB", "--parallel", "1"];
    let mut follower = util::spawn_copy(&src, &dst, &args);
    wait_while_running(&mut follower, 120, "the load of ahead waiting", || {
        dst.scalar_i64(waiting) > 0
    });
    let mut holder = dst.client();
    holder.batch_execute("BEGIN").expect("BEGIN");
    let held = holder
        .execute(
            "SELECT FROM pgcopy.follow_chunks
             WHERE table_name = 'mirrored' AND snapshot IS NULL FOR UPDATE",
            &[],
        )
        .expect("holding the chunks of mirrored");
    assert!(held > 0, "the chunks of mirrored are still to read");
    ahead.batch_execute("ROLLBACK").expect("ROLLBACK");
    wait_while_running(&mut follower, 120, "a chunk of mirrored read", || {
        dst.scalar_i64(waiting) > 0
    });
    src.exec(
        "BEGIN;
         UPDATE mirrored SET email = 'moving ' || id;
         UPDATE mirrored SET email = 'e' || (4001 - id);
         COMMIT;
         DELETE FROM included WHERE id % 7 = 0;
         UPDATE included SET n = -n WHERE id % 5 = 0;",
    );
    holder.batch_execute("ROLLBACK").expect("ROLLBACK");
    wait_following(&dst, &mut follower);
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    assert_exit!(followed, exit::SUCCESS);
    assert!(
        followed.stderr.contains(
            "mirrored is read whole, in a snapshot of its own held while it is read: its \
             unique index mirrored_email_key does not hold its key"
        ),
        "{followed:?}"
    );
    assert!(
        !followed.stderr.contains("included is read whole"),
        "{followed:?}"
    );
    util::assert_same_data(&src, &dst, &["ahead", "mirrored", "included"]);
    assert_eq!(
        src.scalar_string("SELECT email FROM mirrored WHERE id = 1"),
        "e4000"
    );
    assert_nothing_left(&src, &dst);
}
