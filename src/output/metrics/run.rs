//! What one run did, for the textfile it leaves (`--metrics-file`): set by the commands as
//! they learn it (a copy's report, a verification's result), read once at the end.

use super::{unix_seconds, Family, Kind};
use crate::exit::Exit;
use std::sync::Mutex;
use std::time::SystemTime;

/// The figures a command found; `None` where it has none (a `status` copies no table).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    pub(crate) tables_copied: Option<u64>,
    pub(crate) tables_failed: Option<u64>,
    pub(crate) rows: Option<u64>,
    /// Bytes sent to the destination.
    pub(crate) bytes: Option<u64>,
    /// Whether what was verified matched.
    pub(crate) verify_ok: Option<bool>,
}

static FIGURES: Mutex<Figures> = Mutex::new(Figures {
    tables_copied: None,
    tables_failed: None,
    rows: None,
    bytes: None,
    verify_ok: None,
});

/// Records what a copy did.
pub(crate) fn copied(tables_copied: u64, tables_failed: u64, rows: u64, bytes: u64) {
    if let Ok(mut figures) = FIGURES.lock() {
        figures.tables_copied = Some(tables_copied);
        figures.tables_failed = Some(tables_failed);
        figures.rows = Some(rows);
        figures.bytes = Some(bytes);
    }
}

/// Records a verification's result; a run that verifies twice keeps the worse.
pub(crate) fn verified(ok: bool) {
    if let Ok(mut figures) = FIGURES.lock() {
        figures.verify_ok = Some(figures.verify_ok.unwrap_or(true) && ok);
    }
}

/// What the commands recorded so far.
pub(crate) fn figures() -> Figures {
    FIGURES.lock().map(|f| f.clone()).unwrap_or_default()
}

/// One run, as its textfile describes it.
#[derive(Clone, Debug)]
pub(crate) struct Run<'a> {
    /// The command, as the `command` label.
    pub(crate) command: &'a str,
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
    pub(crate) exit: Exit,
    pub(crate) figures: Figures,
    /// When this command last succeeded, from the file an earlier run left, for a run that
    /// failed.
    pub(crate) last_success: Option<f64>,
}

impl Run<'_> {
    /// The run's metric families.
    pub(crate) fn families(&self) -> Vec<Family> {
        let label = [("command", self.command)];
        let one = |name, help, value| Family::one(name, help, Kind::Gauge, &label, value);
        let started = unix_seconds(self.started);
        let ended = unix_seconds(self.ended);
        let success = self.exit == Exit::Success;
        let mut families = vec![
            one(
                "pgcopy_run_start_timestamp_seconds",
                "When the last run started, in seconds since the Unix epoch.",
                started,
            ),
            one(
                "pgcopy_run_end_timestamp_seconds",
                "When the last run ended, in seconds since the Unix epoch.",
                ended,
            ),
            one(
                "pgcopy_run_duration_seconds",
                "How long the last run took.",
                (ended - started).max(0.0),
            ),
            one(
                "pgcopy_run_success",
                "Whether the last run succeeded (exit code 0): 1 or 0.",
                f64::from(u8::from(success)),
            ),
            one(
                "pgcopy_run_exit_code",
                "The last run's exit code.",
                f64::from(self.exit.code()),
            ),
        ];
        let last_success = if success {
            Some(ended)
        } else {
            self.last_success
        };
        if let Some(at) = last_success {
            families.push(one(
                "pgcopy_last_success_timestamp_seconds",
                "When a run of this command last succeeded, in seconds since the Unix epoch.",
                at,
            ));
        }
        let f = &self.figures;
        let optional = [
            (
                "pgcopy_run_tables_copied",
                "Tables the last run copied.",
                f.tables_copied.map(|n| n as f64),
            ),
            (
                "pgcopy_run_tables_failed",
                "Tables the last run failed to copy.",
                f.tables_failed.map(|n| n as f64),
            ),
            (
                "pgcopy_run_rows",
                "Rows the last run copied.",
                f.rows.map(|n| n as f64),
            ),
            (
                "pgcopy_run_bytes",
                "Bytes the last run sent to the destination.",
                f.bytes.map(|n| n as f64),
            ),
            (
                "pgcopy_run_verify_ok",
                "Whether what the last run verified matched: 1 or 0 (absent: nothing verified).",
                f.verify_ok.map(|ok| f64::from(u8::from(ok))),
            ),
        ];
        for (name, help, value) in optional {
            if let Some(value) = value {
                families.push(one(name, help, value));
            }
        }
        families
    }
}
