//! `--metrics-file PATH`: the run's metrics in the format of node_exporter's textfile
//! collector, written when the command ends, also when it failed. Atomically: a temporary
//! file in the same directory (named so the collector skips it), then renamed over the
//! old one, so a scrape never reads half a file. A failed run carries over from the old
//! file when this command last succeeded, which is what an alert on a stale success needs.

use super::run::{figures, Run};
use super::{build_info, render};
use crate::exit::Exit;
use anyhow::{Context, Result};
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// After a run of `command` that started at `started` and ends with `exit`: its metrics,
/// with the figures the command recorded, written to `path`. A file that cannot be
/// written is an error in the log, never a change to the exit code.
pub(crate) fn after_run(path: &Path, command: &str, started: SystemTime, exit: Exit) {
    let run = Run {
        command,
        started,
        ended: SystemTime::now(),
        exit,
        figures: figures(),
        last_success: None,
    };
    if let Err(err) = write(path, &run) {
        log::error!("{err:#}");
    }
}

/// Writes `run`'s metrics to `path`.
pub(crate) fn write(path: &Path, run: &Run) -> Result<()> {
    let mut run = run.clone();
    if run.last_success.is_none() {
        run.last_success = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| last_success(&old, run.command));
    }
    let mut families = run.families();
    families.push(build_info());
    let text = render(&families);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("--metrics-file {} names no file", path.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("writing the metrics file {}", path.display()))
}

/// The `pgcopy_last_success_timestamp_seconds` of `command` in a file an earlier run left.
fn last_success(text: &str, command: &str) -> Option<f64> {
    let prefix = format!(
        "pgcopy_last_success_timestamp_seconds{{command=\"{}\"}} ",
        command.replace('\\', "\\\\").replace('"', "\\\"")
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::metrics::run::Figures;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let dir = std::env::temp_dir().join(format!("pgcopy-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("copy.prom");
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let run = |exit, started, ended| Run {
            command: "copy",
            started: at(started),
            ended: at(ended),
            exit,
            figures: Figures {
                tables_copied: Some(3),
                ..Figures::default()
            },
            last_success: None,
        };
        write(&path, &run(Exit::Success, 100, 160)).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.contains("pgcopy_run_success{command=\"copy\"} 1\n"));
        assert!(first.contains("pgcopy_run_duration_seconds{command=\"copy\"} 60\n"));
        assert!(first.contains("pgcopy_run_tables_copied{command=\"copy\"} 3\n"));
        assert!(!first.contains("pgcopy_run_rows"));
        write(&path, &run(Exit::TablesFailed, 200, 210)).unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        assert!(second.contains("pgcopy_run_success{command=\"copy\"} 0\n"));
        assert!(second.contains("pgcopy_run_exit_code{command=\"copy\"} 1\n"));
        assert!(second.contains("pgcopy_last_success_timestamp_seconds{command=\"copy\"} 160\n"));
        // Nothing but the file itself is left in the directory.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["copy.prom"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
