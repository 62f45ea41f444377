//! The final report of a copy, as text and as `--json`.

use crate::exit::Exit;
use crate::output::checks;
use crate::output::format::write_table;
use crate::pg::error::describe;
use crate::plan::Plan;
use crate::schema::fk_mode::FkMode;
use crate::transfer::compare::Check;
use crate::transfer::TableOutcome;
use crate::units::{format_bytes, format_duration};
use serde_json::json;
use std::io::{self, Write};
use std::time::Duration;

/// Everything the final report shows.
pub(crate) struct Report<'a> {
    pub(crate) source: String,
    pub(crate) dest: String,
    pub(crate) plan: &'a Plan,
    pub(crate) outcomes: &'a [TableOutcome],
    pub(crate) elapsed: Duration,
    pub(crate) fk_mode: FkMode,
    /// Foreign keys and `NOT VALID` checks dropped before the load.
    pub(crate) keys_dropped: usize,
    /// How many of those were `NOT VALID` checks.
    pub(crate) checks_dropped: usize,
    /// Constraints in place again after it.
    pub(crate) keys_restored: usize,
    /// Keys put back `NOT VALID` on purpose (their table is outside the copy).
    pub(crate) keys_not_valid: &'a [String],
    pub(crate) sequences_set: usize,
    /// The large objects the copy carried, and the bytes copied or why not; `None` when it
    /// carried none.
    pub(crate) large_objects: Option<(usize, Result<u64, String>)>,
    /// Materialized views built from copied tables, refreshed after the load.
    pub(crate) views_refreshed: usize,
    /// Tables ANALYZEd after the load.
    pub(crate) analyzed: usize,
    /// Tables given the source's planner statistics instead of an `ANALYZE`.
    pub(crate) statistics_restored: usize,
    pub(crate) interrupted: bool,
    /// Problems that are not one table's: keys that could not be put back, for example.
    pub(crate) problems: &'a [String],
    /// Warnings logged during the run.
    pub(crate) warnings: Vec<String>,
    /// The verification of the copied tables, with `--verify`.
    pub(crate) checks: Option<&'a [Check]>,
}

impl Report<'_> {
    pub(crate) fn failed_tables(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }

    /// The exit code this report stands for.
    pub(crate) fn exit_code(&self) -> Exit {
        if self.interrupted {
            Exit::Interrupted
        } else if self.checks.is_some_and(|c| !c.iter().all(Check::matches)) {
            Exit::VerifyMismatch
        } else if self.failed_tables() > 0 || !self.problems.is_empty() {
            Exit::TablesFailed
        } else {
            Exit::Success
        }
    }

    fn status(&self) -> &'static str {
        self.exit_code().status()
    }

    /// Indexes rebuilt in the tables that were copied (a failed table's came back as they
    /// were with its rollback).
    fn indexes_rebuilt(&self) -> usize {
        self.plan
            .tables
            .iter()
            .zip(self.outcomes)
            .filter(|(_, o)| o.error.is_none())
            .map(|(t, _)| t.indexes.len())
            .sum()
    }

    fn triggers_disabled(&self) -> usize {
        self.plan.tables.iter().map(|t| t.triggers.len()).sum()
    }

    fn failures(&self) -> Vec<String> {
        self.plan
            .tables
            .iter()
            .zip(self.outcomes)
            .filter_map(|(t, o)| {
                o.error
                    .as_ref()
                    .map(|e| format!("{}: {}", t.name, describe(e)))
            })
            .chain(self.problems.iter().cloned())
            .collect()
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut rows = vec![vec![
            "table".to_string(),
            "rows".into(),
            // The COPY stream's bytes, not the tables' size on disk.
            "sent".into(),
            "time".into(),
            "MiB/s".into(),
            "format".into(),
            "pieces".into(),
            "status".into(),
        ]];
        let (mut total_rows, mut total_bytes) = (0, 0);
        for (table, outcome) in self.plan.tables.iter().zip(self.outcomes) {
            total_rows += outcome.rows;
            total_bytes += outcome.bytes;
            rows.push(vec![
                table.name.to_string(),
                outcome.rows.to_string(),
                format_bytes(outcome.bytes),
                format_duration(outcome.elapsed),
                rate(outcome.bytes, outcome.elapsed),
                table.format.to_string(),
                if outcome.pieces > 1 && outcome.pieces_copied < outcome.pieces {
                    format!("{}/{}", outcome.pieces_copied, outcome.pieces)
                } else {
                    outcome.pieces.to_string()
                },
                if outcome.error.is_some() {
                    "FAILED"
                } else {
                    "ok"
                }
                .into(),
            ]);
        }
        let copied = self.outcomes.len() - self.failed_tables();
        rows.push(vec![
            format!("total: {copied} of {} tables", self.outcomes.len()),
            total_rows.to_string(),
            format_bytes(total_bytes),
            format_duration(self.elapsed),
            rate(total_bytes, self.elapsed),
            String::new(),
            String::new(),
            String::new(),
        ]);
        write_table(out, "lrrrrlrl", &rows)?;
        for line in self
            .plan
            .tables
            .iter()
            .flat_map(crate::plan::conversions::lines)
        {
            writeln!(out, "converted {line}")?;
        }
        writeln!(
            out,
            "foreign keys ({} mode): {} dropped for the load, {} put back",
            self.fk_mode, self.keys_dropped, self.keys_restored
        )?;
        if self.checks_dropped > 0 {
            writeln!(
                out,
                "  of which NOT VALID check constraints: {}",
                self.checks_dropped
            )?;
        }
        for key in self.keys_not_valid {
            writeln!(out, "  NOT VALID as asked: {key}")?;
        }
        writeln!(
            out,
            "triggers kept from firing during the load: {}",
            self.triggers_disabled()
        )?;
        writeln!(out, "sequences set: {}", self.sequences_set)?;
        match &self.large_objects {
            Some((count, Ok(bytes))) => writeln!(
                out,
                "large objects: {count} copied ({})",
                format_bytes(*bytes)
            )?,
            Some((count, Err(_))) => writeln!(out, "large objects: FAILED, {count} not copied")?,
            None => {}
        }
        if self.views_refreshed > 0 {
            writeln!(
                out,
                "materialized views refreshed: {}",
                self.views_refreshed
            )?;
        }
        writeln!(out, "tables analyzed: {}", self.analyzed)?;
        if self.statistics_restored > 0 {
            writeln!(
                out,
                "tables given the source's planner statistics instead: {}",
                self.statistics_restored
            )?;
        }
        writeln!(
            out,
            "indexes dropped for the load and built after it: {}",
            self.indexes_rebuilt()
        )?;
        if self.interrupted {
            writeln!(
                out,
                "interrupted: the tables not marked ok kept their old rows; `pgcopy copy \
                 --resume` with the same arguments copies only those"
            )?;
        }
        if let Some(checks) = self.checks {
            let differ: Vec<&Check> = checks.iter().filter(|c| !c.matches()).collect();
            writeln!(
                out,
                "verified: {} of {} copied tables match",
                checks.len() - differ.len(),
                checks.len()
            )?;
            for check in checks.iter().filter(|c| c.matches()) {
                if !check.unchecked.is_empty() {
                    writeln!(out, "  {}: {}", check.table, check.verdict())?;
                }
            }
            if !differ.is_empty() {
                writeln!(out, "verification found differences:")?;
                checks::write_checks(out, &differ)?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(out, "warnings:")?;
            for warning in &self.warnings {
                writeln!(out, "  {warning}")?;
            }
        }
        let failures = self.failures();
        if !failures.is_empty() {
            writeln!(out, "failures:")?;
            for failure in failures {
                writeln!(out, "  {failure}")?;
            }
        }
        Ok(())
    }

    /// The report as one JSON document; its fields are documented in the README.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .plan
            .tables
            .iter()
            .zip(self.outcomes)
            .map(|(table, outcome)| {
                json!({
                    "schema": table.name.schema,
                    "table": table.name.name,
                    "rows": outcome.rows,
                    "bytes": outcome.bytes,
                    "seconds": outcome.elapsed.as_secs_f64(),
                    "mib_per_second": mib_per_second(outcome.bytes, outcome.elapsed),
                    "format": table.format.to_string(),
                    "conversions": crate::output::dry_run::conversions_json(table),
                    "pieces": outcome.pieces,
                    "pieces_copied": outcome.pieces_copied,
                    "attempts": outcome.attempts,
                    "status": if outcome.error.is_some() { "failed" } else { "ok" },
                    "error": outcome.error.as_ref().map(describe),
                })
            })
            .collect();
        let failed = self.failed_tables();
        json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "status": self.status(),
            "exit_code": self.exit_code().code(),
            "source": self.source,
            "destination": self.dest,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "tables": tables,
            "totals": {
                "tables": self.outcomes.len(),
                "tables_copied": self.outcomes.len() - failed,
                "tables_failed": failed,
                "rows": self.outcomes.iter().map(|o| o.rows).sum::<u64>(),
                "bytes": self.outcomes.iter().map(|o| o.bytes).sum::<u64>(),
            },
            "fk_mode": self.fk_mode.to_string(),
            "foreign_keys": {
                "dropped": self.keys_dropped,
                "not_valid_checks_dropped": self.checks_dropped,
                "restored": self.keys_restored,
                "not_valid_as_asked": self.keys_not_valid,
            },
            "triggers_disabled": self.triggers_disabled(),
            "sequences_set": self.sequences_set,
            "materialized_views_refreshed": self.views_refreshed,
            "large_objects": self.large_objects.as_ref().map(|(count, result)| json!({
                "count": count,
                "bytes": result.as_ref().ok(),
                "status": if result.is_ok() { "ok" } else { "failed" },
                "error": result.as_ref().err(),
            })),
            "tables_analyzed": self.analyzed,
            "statistics_restored": self.statistics_restored,
            "indexes_rebuilt": self.indexes_rebuilt(),
            "interrupted": self.interrupted,
            "warnings": self.warnings,
            "failures": self.failures(),
            "verify": self.checks.map(checks::checks_json),
        })
    }
}

fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 / secs / (1024.0 * 1024.0)
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    if elapsed.is_zero() {
        return "-".into();
    }
    format!("{:.1}", mib_per_second(bytes, elapsed))
}
