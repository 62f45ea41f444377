//! Everything `--rules FILE` means: the file (TOML) and the masking key; which columns a
//! copy masks and how, which column names must be masked wherever they are copied
//! (`require`), which rows subsets keep, and the keyed rewrite pgcopy applies itself.
//! Checked against both catalogs once, while planning, every mistake a refusal (a table or
//! column that is not there, a matching column left unmasked); what a table's reader must
//! then do goes on the plan in plain terms (`plan::reading`), so the transfer never sees a
//! rule.
//!
//! `null`, `fixed`, `sql` and `noise` are evaluated by the source, in its
//! `COPY (SELECT …)`: they need no secret, since the statement is visible there
//! (`pg_stat_activity`). The keyed rules (`hash`, `email`, …) need one, the key, from
//! `PGCOPY_MASK_KEY` or the file `PGCOPY_MASK_KEY_FILE` names (never a flag), and are
//! applied by pgcopy itself on the binary stream (`rewrite`): the key goes to neither
//! server and into no log line.

mod file;
pub(crate) mod json_require;
mod key;
pub(crate) mod masked_keys;
pub(crate) mod masks;
mod place;
pub(crate) mod rewrite;
pub(crate) mod subset;

pub(crate) use key::MaskKey;
pub(crate) use place::wire_refusals;

use crate::pg::sql::TableName;
use crate::plan::filter::Glob;
use crate::plan::Plan;
use anyhow::{Context, Result};
use masks::MaskRule;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use subset::{DeclaredKey, SubsetRule};

/// A rules file, parsed.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// Column name patterns (`*email*`): a copied column that matches must be masked.
    require: Vec<Glob>,
    masks: Vec<MaskRule>,
    /// `[subset."schema.table"]`: the rows of a table to start from.
    subsets: Vec<SubsetRule>,
    /// `[[foreign_key]]`: keys the schema does not declare, for subsets to follow.
    keys: Vec<DeclaredKey>,
    /// `large_objects`: what a copy that carries them does with them; no rule reaches
    /// inside one, so by default they are not copied.
    large_objects: Option<LargeObjects>,
    /// The key, where a rule needs one.
    key: Option<MaskKey>,
    /// What loading found worth saying (a weak key, a key file others may read), said when
    /// the rules are applied: they are loaded before the log is set up.
    warnings: Vec<String>,
}

/// The columns (and paths inside JSON columns) that `keep` rules leave as they are: by
/// table, column and path.
pub(crate) type Kept = HashSet<(TableName, String, Vec<String>)>;

/// What the rules say of the large objects (`large_objects = "copy" | "empty"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LargeObjects {
    /// Copied as they are: the rules' author says they hold nothing to mask.
    Copy,
    /// None copied, and the destination's removed.
    Empty,
}

impl Rules {
    pub(crate) fn load(path: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the rules file {}", path.display()))?;
        let mut rules =
            file::parse(&text).with_context(|| format!("in the rules file {}", path.display()))?;
        if rules.masks.iter().any(|m| m.rule.in_client()) {
            rules.key = Some(MaskKey::from_environment(&mut rules.warnings)?);
        }
        Ok(rules)
    }

    /// What a copy under these rules does with the large objects, where it carries them
    /// (`carried`): `Some(true)` copies them, `Some(false)` empties the destination's, `None`
    /// leaves them alone. No rule reaches inside a large object, so only the rules' own
    /// `large_objects` lets them be copied.
    pub(crate) fn large_objects(&self, carried: bool) -> Option<bool> {
        match (carried, self.large_objects) {
            (true, Some(LargeObjects::Copy)) => Some(true),
            (true, Some(LargeObjects::Empty)) => Some(false),
            _ => None,
        }
    }

    /// Whether the rules leave the large objects out although the copy would carry them:
    /// said once, with how to change it.
    pub(crate) fn leave_out_large_objects(&self, carried: bool) -> bool {
        carried && self.large_objects.is_none()
    }

    /// Puts the masks and the subsets on the plan's tables, read from the source in the
    /// copy's snapshot (`client`); what is wrong with the rules for this plan comes back as
    /// refusals.
    pub(crate) fn apply_to(
        &self,
        client: &mut postgres::Client,
        plan: &mut Plan,
    ) -> Result<Vec<String>> {
        for warning in &self.warnings {
            log::warn!("{warning}");
        }
        let tables = crate::schema::catalog::tables(client)?;
        let mut leaves: BTreeMap<TableName, Vec<TableName>> = BTreeMap::new();
        for table in tables.iter().filter(|t| !t.partitioned) {
            if let Some(root) = &table.parent {
                leaves
                    .entry(root.clone())
                    .or_default()
                    .push(table.name.clone());
            }
        }
        let on_source: BTreeMap<TableName, bool> = tables
            .into_iter()
            .map(|t| (t.name, t.partitioned))
            .collect();
        let names = on_source.keys().cloned().collect();
        let (edges, mut refusals) = subset::edges(client, plan, &self.keys, &leaves)?;
        let followed = masked_keys::follow(&self.masks, &edges, plan);
        for note in &followed.notes {
            log::info!("{note}");
        }
        refusals.extend(followed.refusals);
        let keys = place::partition_keys(client, plan)?;
        let bases = place::domain_bases(client, plan)?;
        let (wrong, kept) = self.apply(plan, &names, &followed.masks, &keys, &bases);
        refusals.extend(wrong);
        refusals.extend(subset::apply(
            client,
            plan,
            &self.subsets,
            edges,
            &on_source,
            &leaves,
        )?);
        refusals.extend(json_require::refusals(client, plan, &self.require, &kept)?);
        Ok(refusals)
    }
}
