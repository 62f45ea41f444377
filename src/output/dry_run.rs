//! The `--dry-run` output: everything a copy would do, as a table for people or JSON for
//! scripts; nothing is changed on either side.

use crate::cli::config::CopyConfig;
use crate::output::format::write_table;
use crate::output::logging;
use crate::pg::sql::display_ident;
use crate::plan::{Format, Plan};
use crate::schema::constraints::Constraint;
use crate::schema::fk_mode::FkMode;
use crate::schema::matviews::MatView;
use crate::schema::sequences::{self, Sequence};
use crate::units::format_bytes;
use std::io::Write;

/// Everything planning decided and found.
pub(crate) struct Planned<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) mode: FkMode,
    pub(crate) keys: &'a [Constraint],
    pub(crate) sequences: &'a [Sequence],
    /// Materialized views refreshed after the load.
    pub(crate) views: &'a [MatView],
    /// How many large objects replace the destination's; `None` when the copy leaves them.
    pub(crate) large_objects: Option<usize>,
    /// What taking the source snapshot waited for or did again.
    pub(crate) findings: &'a [String],
    /// Why the copy would be refused (exit code 2), one paragraph per kind.
    pub(crate) refusals: &'a [String],
}

impl Planned<'_> {
    /// The `--dry-run` output: everything the copy would do, and nothing done.
    pub(crate) fn print(&self, cfg: &CopyConfig) -> std::io::Result<()> {
        let Planned {
            plan,
            mode,
            keys,
            sequences,
            views,
            large_objects,
            findings,
            refusals,
        } = self;
        let mut out = crate::output::format::stdout();
        writeln!(out, "dry run: nothing was changed")?;
        writeln!(out, "source:      {}", cfg.source)?;
        writeln!(out, "destination: {}", cfg.dest)?;
        writeln!(
            out,
            "{} tables, {} of table data on disk (heap and TOAST: what the copy reads; indexes \
             are built on the destination), {} at a time, in this order:",
            plan.tables.len(),
            format_bytes(plan.data_bytes()),
            cfg.parallel
        )?;
        let mut rows = vec![vec![
            "table".to_string(),
            "est. rows".into(),
            "data on disk".into(),
            "format".into(),
            "left out".into(),
        ]];
        for table in &plan.tables {
            rows.push(vec![
                table.name.to_string(),
                table
                    .estimated_rows
                    .map_or("?".into(), |rows| rows.to_string()),
                format_bytes(table.data_bytes),
                table.format.to_string(),
                if table.on_source {
                    table
                        .generated
                        .iter()
                        .map(|c| format!("{c} (generated)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    "only on the destination: emptied".into()
                },
            ]);
        }
        write_table(&mut out, "lrrll", &rows)?;
        for table in plan.tables.iter().filter(|t| t.format == Format::Text) {
            if let Some(reason) = &table.text_reason {
                writeln!(out, "{} travels as text: {reason}", table.name)?;
            }
        }
        for line in plan.tables.iter().flat_map(crate::plan::conversions::lines) {
            writeln!(out, "converts {line}")?;
        }
        for table in &plan.tables {
            for mask in &table.masks {
                writeln!(
                    out,
                    "masks {}.{}: {}",
                    table.name,
                    mask.target(),
                    mask.describe.clone()
                )?;
            }
        }
        for table in &plan.tables {
            if let Some(subset) = &table.subset {
                let rows = match subset.counted {
                    Some(rows) => format!("{rows} rows"),
                    None => format!("about {} rows", table.estimated_rows.unwrap_or(0)),
                };
                writeln!(out, "subset {}: {} ({rows})", table.name, subset.describe)?;
            }
        }
        for table in &plan.tables {
            if let Some(split) = &table.split {
                writeln!(
                    out,
                    "{} is copied in {} pieces at once, {}; each piece commits on its own",
                    table.name,
                    split.pieces.len(),
                    split.describe()
                )?;
            }
        }
        writeln!(out, "foreign key mode: {mode}")?;
        writeln!(
            out,
            "foreign keys dropped for the load and put back after it: {}",
            keys.len()
        )?;
        for key in keys.iter() {
            let note = if key.outside {
                " (outside the copy: comes back NOT VALID)"
            } else {
                ""
            };
            writeln!(
                out,
                "  {} on {}: {}{note}",
                display_ident(&key.name),
                key.table,
                key.definition
            )?;
        }
        let triggers: Vec<String> = plan
            .tables
            .iter()
            .flat_map(|t| {
                t.triggers
                    .iter()
                    .map(move |tr| format!("{} on {}", display_ident(&tr.name), t.name))
            })
            .collect();
        writeln!(
            out,
            "triggers disabled during each table's load: {}",
            triggers.len()
        )?;
        for trigger in &triggers {
            writeln!(out, "  {trigger}")?;
        }
        let indexes: Vec<String> = plan
            .tables
            .iter()
            .flat_map(|t| {
                t.indexes
                    .iter()
                    .map(move |i| format!("{} on {}", display_ident(&i.name), t.name))
            })
            .collect();
        writeln!(
            out,
            "indexes dropped and built again in each table's load: {}",
            indexes.len()
        )?;
        for index in &indexes {
            writeln!(out, "  {index}")?;
        }
        writeln!(out, "sequences set after the load: {}", sequences.len())?;
        for sequence in sequences.iter() {
            writeln!(out, "  {}", sequences::describe(sequence))?;
        }
        writeln!(
            out,
            "materialized views refreshed after the load: {}",
            views.len()
        )?;
        for view in views.iter() {
            writeln!(out, "  {}", view.name)?;
        }
        match large_objects {
            Some(count) => writeln!(out, "large objects replacing the destination's: {count}")?,
            None => writeln!(out, "large objects: left as they are")?,
        }
        for finding in findings.iter() {
            writeln!(out, "planning: {finding}")?;
        }
        if !refusals.is_empty() {
            writeln!(out, "refused (exit code 2):")?;
            for refusal in refusals.iter() {
                writeln!(out, "{refusal}")?;
            }
        }
        Ok(())
    }

    /// The `--dry-run --json` output.
    pub(crate) fn to_json(&self, cfg: &CopyConfig) -> serde_json::Value {
        serde_json::json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "dry_run": true,
            "source": cfg.source.to_string(),
            "destination": cfg.dest.to_string(),
            "parallel": cfg.parallel,
            "tables": self.plan.tables.iter().map(|t| serde_json::json!({
                "schema": t.name.schema,
                "table": t.name.name,
                "estimated_rows": t.estimated_rows,
                "bytes": t.data_bytes,
                "format": t.format.to_string(),
                "text_reason": t.text_reason,
                "conversions": conversions_json(t),
                "masks": t.masks.iter().map(|m| serde_json::json!({
                    "column": m.column,
                    "path": m.path,
                    "rule": m.describe,
                })).collect::<Vec<_>>(),
                "subset": t.subset.as_ref().map(|s| serde_json::json!({
                    "rule": s.describe,
                    "rows": s.counted,
                })),
                "columns": t.columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
                "generated_columns_left_out": t.generated,
                "triggers_disabled": t.triggers.iter().map(|tr| &tr.name).collect::<Vec<_>>(),
                "indexes_rebuilt": t.indexes.iter().map(|i| &i.name).collect::<Vec<_>>(),
                "pieces": t.piece_count(),
                "split_by": t.split.as_ref().map(|s| s.describe()),
                "piece_ranges": t.split.as_ref().map(|s| &s.pieces),
            "only_on_destination": !t.on_source,
            })).collect::<Vec<_>>(),
            "fk_mode": self.mode.to_string(),
            "foreign_keys": self.keys.iter().map(|k| serde_json::json!({
                "table": k.table.to_string(),
                "name": k.name,
                "definition": k.definition,
                "outside_selection": k.outside,
            })).collect::<Vec<_>>(),
            "sequences": self.sequences.iter().map(|q| serde_json::json!({
                "sequence": q.name.to_string(),
                "last_value": q.last_value,
                "is_called": q.is_called,
            })).collect::<Vec<_>>(),
            "materialized_views": self.views.iter().map(|v| v.name.to_string()).collect::<Vec<_>>(),
            "large_objects": self.large_objects,
            "planning": self.findings,
            "refused": self.refusals,
            "warnings": logging::warnings(),
        })
    }
}

/// A table's converted columns, for the JSON of the dry run and the report.
pub(crate) fn conversions_json(table: &crate::plan::TablePlan) -> serde_json::Value {
    use crate::plan::conversions::How;
    table
        .conversions
        .iter()
        .map(|c| {
            serde_json::json!({
                "column": c.column,
                "source_type": c.from,
                "destination_type": c.to,
                "exact": c.exact,
                "how": match (&c.how, table.format) {
                    (How::Cast(_), _) => "source cast",
                    (How::AsIs, crate::plan::Format::Binary) => "as it is",
                    _ => "text",
                },
                "why": c.why,
            })
        })
        .collect()
}
