//! Running unattended: the metrics a run leaves for node_exporter's textfile collector
//! (`--metrics-file`), the endpoint a copy and a follower serve while they run
//! (`--metrics-listen`), both accepted by `promtool check metrics`, and log lines as JSON
//! objects (`--log-format json`).

use crate::util::{
    self, assert_exit, cut_over, exit, pair, pgbench, test_name, wait_following, wait_pgbench,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `promtool check metrics` on `text`: Prometheus's own linter, which also checks the names
/// against its conventions. Fails the test, with promtool's words, if it finds anything.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "running promtool (Debian's prometheus package; scripts/lib/cluster.sh installs it)",
        );
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `name{command="…"}` in a run's metrics file `text`, if it has one.
fn of_run(text: &str, command: &str, name: &str) -> Option<f64> {
    sample(text, &format!("{name}{{command=\"{command}\"}}"))
}

/// The value of the sample `series` (name and labels, as written) in `text`, if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

fn metrics_file(path: &Path) -> String {
    std::fs::read_to_string(path).expect("reading the metrics file")
}

/// Every stderr line of a run is one JSON object with the time, the level and the message.
fn all_json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            for key in ["time", "level", "message"] {
                assert!(doc[key].is_string(), "{key} in {line}");
            }
            doc
        })
        .collect()
}

#[test]
fn a_run_leaves_metrics_an_alert_on_the_last_success_can_read() {
    let (src, dst) = pair!();
    util::load_pgbench(&src, 1);
    util::pgbench_schema(&dst);
    let dir = util::scratch_dir(&format!("metrics-{}", dst.name));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let file = dir.join("pgcopy.prom");
    let path = file.to_str().expect("a UTF-8 path");

    let out = util::copy(
        &src,
        &dst,
        &["--metrics-file", path, "--log-format", "json"],
    );
    assert_exit!(out, exit::SUCCESS);
    let lines = all_json_lines(&out.stderr);
    assert!(lines.iter().any(|l| l["level"] == "info"), "{}", out.stderr);
    let first = metrics_file(&file);
    promtool_accepts(&first);
    let copy = |name: &str| of_run(&first, "copy", name);
    assert_eq!(copy("pgcopy_run_success"), Some(1.0), "{first}");
    assert_eq!(copy("pgcopy_run_exit_code"), Some(0.0), "{first}");
    assert_eq!(copy("pgcopy_run_tables_copied"), Some(4.0), "{first}");
    assert_eq!(copy("pgcopy_run_tables_failed"), Some(0.0), "{first}");
    let rows = src.scalar_i64(
        "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_branches)
              + (SELECT count(*) FROM pgbench_tellers)",
    );
    assert_eq!(copy("pgcopy_run_rows"), Some(rows as f64), "{first}");
    assert!(copy("pgcopy_run_bytes") > Some(0.0), "{first}");
    let ended = copy("pgcopy_run_end_timestamp_seconds").expect("an end time");
    assert_eq!(
        copy("pgcopy_last_success_timestamp_seconds"),
        Some(ended),
        "{first}"
    );
    assert!(copy("pgcopy_run_start_timestamp_seconds") <= Some(ended));
    assert_eq!(
        copy("pgcopy_run_verify_ok"),
        None,
        "nothing verified: {first}"
    );

    // A run that fails before it copies anything still writes the file: it failed, and
    // the last success is still the first run's.
    let out = util::copy(
        &src,
        &dst,
        &["--metrics-file", path, "--include-tables", "no_such_table"],
    );
    assert_exit!(out, exit::USAGE);
    let second = metrics_file(&file);
    promtool_accepts(&second);
    let copy = |name: &str| of_run(&second, "copy", name);
    assert_eq!(copy("pgcopy_run_success"), Some(0.0), "{second}");
    assert_eq!(copy("pgcopy_run_exit_code"), Some(2.0), "{second}");
    assert_eq!(
        copy("pgcopy_last_success_timestamp_seconds"),
        Some(ended),
        "{second}"
    );
    assert!(copy("pgcopy_run_end_timestamp_seconds") >= Some(ended));

    // A verification that finds a difference says so.
    dst.exec("UPDATE pgbench_branches SET bbalance = bbalance + 1");
    let verified = dir.join("verify.prom");
    let out = util::verify(
        &src,
        &dst,
        &["--metrics-file", verified.to_str().expect("a UTF-8 path")],
    );
    assert_exit!(out, exit::VERIFY_MISMATCH);
    let text = metrics_file(&verified);
    promtool_accepts(&text);
    let verify = |name: &str| of_run(&text, "verify", name);
    assert_eq!(verify("pgcopy_run_verify_ok"), Some(0.0), "{text}");
    assert_eq!(verify("pgcopy_run_exit_code"), Some(3.0), "{text}");
    assert_eq!(
        verify("pgcopy_last_success_timestamp_seconds"),
        None,
        "{text}"
    );
    // Nothing but the two files is left in the directory: no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("listing the scratch directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["pgcopy.prom", "verify.prom"]);
    std::fs::remove_dir_all(&dir).expect("removing the scratch directory");
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET /metrics` from the endpoint on `port`: the body, `None` while nothing answers.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Some(body.to_string())
}

/// Scrapes until `done` holds for a scrape (the follower still running), for at most two
/// minutes; returns that scrape.
fn scrape_until(
    port: u16,
    follower: &mut std::process::Child,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        if let Some(body) = scrape(port) {
            if done(&body) {
                return body;
            }
        }
        if let Ok(Some(status)) = follower.try_wait() {
            panic!("the follower ended ({status}) before {what}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: not seen in two minutes: {:?}",
            scrape(port)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_follower_serves_its_lag_as_it_falls_to_zero() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::load_pgbench(&src, 1);
    src.exec("ALTER TABLE pgbench_history REPLICA IDENTITY FULL");
    util::pgbench_schema(&dst);
    let port = free_port();
    let mut follower = util::spawn_copy(
        &src,
        &dst,
        &[
            "--follow",
            "--metrics-listen",
            &port.to_string(),
            "--log-format",
            "json",
            "--progress-interval",
            "1",
        ],
    );
    wait_following(&dst, &mut follower);
    let copied = scrape_until(port, &mut follower, "the copy's figures", |body| {
        sample(body, "pgcopy_tables{state=\"done\"}") == Some(4.0)
    });
    assert_eq!(
        sample(&copied, "pgcopy_tables{state=\"planned\"}"),
        Some(4.0)
    );
    assert_eq!(
        sample(&copied, "pgcopy_tables{state=\"failed\"}"),
        Some(0.0)
    );
    assert!(
        sample(&copied, "pgcopy_copy_rows_total") > Some(0.0),
        "{copied}"
    );
    assert_eq!(
        sample(&copied, "pgcopy_copy_in_flight_bytes"),
        Some(0.0),
        "every table done: {copied}"
    );
    assert!(
        copied.contains(&format!(
            "pgcopy_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{copied}"
    );

    let writers = pgbench(&src, 2, 5);
    let busy = scrape_until(port, &mut follower, "transactions applied", |body| {
        sample(body, "pgcopy_follow_transactions_total") > Some(100.0)
    });
    promtool_accepts(&busy);
    wait_pgbench(writers);
    // Once the writers stop, the follower catches up: the lag the source sees falls to 0.
    let caught_up = scrape_until(port, &mut follower, "no lag", |body| {
        sample(body, "pgcopy_follow_lag_bytes") == Some(0.0)
            && sample(body, "pgcopy_follow_lag_seconds") == Some(0.0)
    });
    promtool_accepts(&caught_up);
    assert!(
        sample(&caught_up, "pgcopy_follow_slot_retained_wal_bytes").is_some(),
        "{caught_up}"
    );
    assert!(
        sample(&caught_up, "pgcopy_follow_last_commit_timestamp_seconds")
            .is_some_and(f64::is_finite),
        "{caught_up}"
    );
    assert_eq!(sample(&caught_up, "pgcopy_follow_retries_total"), Some(0.0));

    let (out, followed) = cut_over(&src.url(), &dst.url(), follower, &[]);
    assert_exit!(out, exit::SUCCESS);
    // The follower's progress lines carry their figures as fields.
    let lines = all_json_lines(&followed.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l["transactions"].is_u64() && l.get("lag_bytes").is_some()),
        "{}",
        followed.stderr
    );
    // The endpoint went with the follower.
    assert!(
        scrape(port).is_none(),
        "still served after the follower ended"
    );
    assert_eq!(
        src.count("pgbench_history"),
        dst.count("pgbench_history"),
        "{followed:?}"
    );
}
