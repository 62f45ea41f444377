//! Columns whose type differs between the source and the destination: whether the
//! destination's type takes every source value exactly (a widened column: `int` to `bigint`,
//! `varchar(10)` to `text`, a domain over the source's type), decided from both catalogs;
//! and how each travels (as it is, cast by the source, or parsed from text by the
//! destination). Which source row a narrowed column refused is `misfits`' job.
//! Here: the conversions the plan carries and deciding them for a plan's changed columns;
//! the rule one column is decided by is `classify`'s, what the catalogs say `facts`'.

mod classify;
mod facts;

pub(crate) use classify::How;

use crate::pg::sql::quote_ident;
use crate::plan::{Format, TablePlan};
use crate::schema::catalog::{self, Column};
use anyhow::Result;
use classify::classify;
use facts::{casts, facts, TypeFacts};
use postgres::Client;

/// One column whose type differs between the two sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conversion {
    pub(crate) column: String,
    /// `format_type` on the source and on the destination.
    pub(crate) from: String,
    pub(crate) to: String,
    /// Every source value fits the destination's type exactly.
    pub(crate) exact: bool,
    pub(crate) how: How,
    /// Why it is exact or not, in a few words.
    pub(crate) why: String,
    /// The destination's type as the source can name it: a built-in type, with its
    /// modifier.
    pub(crate) dest_type: Option<String>,
}

impl Conversion {
    /// The column as the source reads it for the copy: cast where the conversion is the
    /// source's, also in a text table, so that a value is the same whichever format its
    /// table travels in (`real` 0.1 read as text would become another `double precision`).
    pub(crate) fn source_expr(&self) -> String {
        match &self.how {
            How::Cast(to) => format!("{}::{to}", quote_ident(&self.column)),
            _ => quote_ident(&self.column),
        }
    }

    /// The column as the source renders it for `verify`: as the destination's type where
    /// the conversion is exact and the source knows that type, so that `1.5` widened to
    /// `numeric(8,3)` compares as `1.500`.
    pub(crate) fn digest_expr(&self) -> String {
        match &self.dest_type {
            Some(to) if self.exact => format!("{}::{to}", quote_ident(&self.column)),
            _ => quote_ident(&self.column),
        }
    }
}

impl Conversion {
    /// The conversion in a line, as a table of `format` carries it.
    pub(crate) fn line(&self, format: Format) -> String {
        let how = match (&self.how, format) {
            (How::Cast(to), _) => format!("cast to {to} by the source"),
            (How::AsIs, Format::Binary) => "the bytes as they are".to_string(),
            _ => "read from text by the destination".to_string(),
        };
        let what = if self.exact {
            self.why.clone()
        } else {
            format!("narrowed: {}", self.why)
        };
        format!(
            "{:?} {} → {} ({what}; {how})",
            self.column, self.from, self.to
        )
    }
}

/// A column of a planned table whose type is another on the destination.
pub(crate) struct Changed<'a> {
    pub(crate) table: usize,
    pub(crate) source: &'a Column,
    pub(crate) dest: &'a Column,
}

/// Classifies the changed columns, reading both catalogs once; the conversions come back
/// in the order of `changed`, with whether the destination's type can travel in binary.
pub(crate) fn decide(
    source: &mut Client,
    dest: &mut Client,
    changed: &[Changed],
) -> Result<Vec<(Conversion, bool)>> {
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let src_facts = facts(
        source,
        &changed
            .iter()
            .map(|c| (c.source.type_oid, c.source.type_mod))
            .collect::<Vec<_>>(),
    )?;
    let dst_facts = facts(
        dest,
        &changed
            .iter()
            .map(|c| (c.dest.type_oid, c.dest.type_mod))
            .collect::<Vec<_>>(),
    )?;
    let pairs: Vec<(&TypeFacts, &TypeFacts)> = src_facts.iter().zip(&dst_facts).collect();
    let casts = casts(dest, &pairs)?;
    let mut dest_types: Vec<u32> = changed.iter().map(|c| c.dest.type_oid).collect();
    dest_types.sort_unstable();
    dest_types.dedup();
    let unsafe_types = catalog::binary_unsafe_types(dest, &dest_types)?;
    Ok(changed
        .iter()
        .zip(pairs.iter().zip(casts))
        .map(|(c, ((s, d), cast))| {
            let (exact, how, why) = classify(s, d, cast);
            let conversion = Conversion {
                column: c.source.name.clone(),
                from: c.source.type_name.clone(),
                to: c.dest.type_name.clone(),
                exact,
                how,
                why,
                dest_type: d.builtin.then(|| d.cast_to.clone()),
            };
            (conversion, !unsafe_types.contains(&c.dest.type_oid))
        })
        .collect())
}

/// The conversions of a table, for the dry run and the logs: one line each.
pub(crate) fn lines(table: &TablePlan) -> Vec<String> {
    table
        .conversions
        .iter()
        .map(|c| format!("{}: {}", table.name, c.line(table.format)))
        .collect()
}
