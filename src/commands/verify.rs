//! The `verify` command: takes a snapshot of the source as a copy would, plans the same
//! tables, and compares each on both sides (see `transfer::compare`).

use crate::cli::config::VerifyConfig;
use crate::exit::Exit;
use crate::output::checks::{checks_json, exit_code, write_checks};
use crate::output::format::print_json;
use crate::plan;
use crate::plan::snapshot::{self, Source};
use crate::transfer::compare::{compare, Check};
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;

/// The `verify` command.
pub(crate) fn run(cfg: &VerifyConfig) -> Result<Exit> {
    let checks = checks(cfg)?;
    let mismatches = checks.iter().filter(|c| !c.matches()).count();
    if cfg.json {
        print_json(&json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "status": if mismatches == 0 { "match" } else { "mismatch" },
            "exit_code": exit_code(&checks).code(),
            "source": cfg.source.to_string(),
            "destination": cfg.dest.to_string(),
            "tables": checks_json(&checks),
            "mismatches": mismatches,
        }))
        .context("writing the report")?;
    } else {
        write_summary(&checks)?;
    }
    Ok(exit_code(&checks))
}

/// Each table's comparison and, last, how many differ.
pub(crate) fn write_summary(checks: &[Check]) -> Result<()> {
    let mismatches = checks.iter().filter(|c| !c.matches()).count();
    let mut out = crate::output::format::stdout();
    write_checks(&mut out, &checks.iter().collect::<Vec<_>>())
        .and_then(|()| {
            writeln!(
                out,
                "verified {} tables: {} match, {mismatches} differ",
                checks.len(),
                checks.len() - mismatches
            )
        })
        .context("writing the report")
}

/// Compares the selected tables of the two sides in one snapshot of the source.
pub(crate) fn checks(cfg: &VerifyConfig) -> Result<Vec<Check>> {
    let mut dest = cfg.dest.connect()?;
    let Source {
        mut snapshot,
        tables: selected,
        standby,
        ..
    } = snapshot::take(
        &cfg.source,
        cfg.source.connect()?,
        &cfg.filter,
        cfg.lock_timeout,
        None,
    )?;
    let mut plan = plan::build(&mut snapshot.client, &selected)?;
    plan::add_destination_only_partitions(&mut dest, &mut plan, &cfg.filter)?;
    let mut refusals = snapshot::refusals(&selected, standby, &cfg.source);
    if let Some(rules) = &cfg.rules {
        refusals.extend(rules.apply_to(&mut snapshot.client, &mut plan)?);
    }
    refusals.extend(
        // Narrowed columns are compared as they are: verify says whether they came over.
        plan::refusals::check_destination(&mut snapshot.client, &mut dest, &mut plan)?.refusals(
            Vec::new(),
            &cfg.dest.to_string(),
            true,
        ),
    );
    if !refusals.is_empty() {
        return Err(plan::refusals::refuse("verify", &refusals));
    }
    let mut checks = compare(
        &plan.without_masked(),
        match &cfg.rules {
            // Compared where the rules copy them as they are.
            Some(rules) => {
                rules.large_objects(cfg.large_objects.copies(cfg.filter.narrowed())) == Some(true)
            }
            None => cfg.large_objects.copies(cfg.filter.narrowed()),
        },
        &snapshot.id,
        &cfg.source.pool(cfg.parallel),
        &cfg.dest.pool(cfg.parallel),
        cfg.parallel,
    )?;
    note_masked(&plan, &mut checks);
    crate::output::metrics::run::verified(checks.iter().all(Check::matches));
    Ok(checks)
}

/// Says in each masked table's check what its comparison left out.
pub(crate) fn note_masked(plan: &plan::Plan, checks: &mut [Check]) {
    for check in checks {
        if let Some(note) = plan.masked_note(&check.table) {
            check.unchecked.push(note);
        }
    }
}
