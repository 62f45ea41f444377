//! The rules file (`--rules FILE`, TOML): which columns a copy masks and how, and which
//! column names must be masked wherever they are copied (`require`). Checked against the
//! plan while planning, every mistake a refusal (a table or column that is not there, a
//! matching column left unmasked); a masked table then reads its masked columns through
//! the source's `COPY (SELECT …)`, NULLs left NULL.
//!
//! `null`, `fixed` and `sql` are evaluated by the source: they need no secret, since the
//! statement is visible there (`pg_stat_activity`). `hash` needs one, the key, from
//! `PGCOPY_MASK_KEY` or the file `PGCOPY_MASK_KEY_FILE` names (never a flag), and is
//! applied by pgcopy itself on the binary stream (`transfer::mask`): the key goes to
//! neither server and into no log line.

use crate::pg::sql::{display_ident, quote_ident, quote_literal, TableName};
use crate::plan::filter::Glob;
use crate::plan::json_require;
use crate::plan::masked_keys;
use crate::plan::subset::{self, DeclaredKey, SubsetRule};
use crate::plan::{Format, Plan};
use crate::transfer::mask::Kind;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

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

/// The masking key: shown as nothing in every `Debug`, written nowhere.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MaskKey(std::sync::Arc<Vec<u8>>);

impl MaskKey {
    pub(crate) fn new(bytes: Vec<u8>) -> MaskKey {
        MaskKey(std::sync::Arc::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Tells keys apart without saying anything of them: 64 bits of the key's HMAC of a
    /// fixed label, in hex.
    pub(crate) fn fingerprint(&self) -> String {
        let mac = crate::transfer::mask::Hmac::new(self.bytes()).mac(b"pgcopy: key fingerprint");
        mac[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From `PGCOPY_MASK_KEY`, else the file `PGCOPY_MASK_KEY_FILE` names (its content
    /// without the final newline).
    fn from_environment(warnings: &mut Vec<String>) -> Result<MaskKey> {
        let key = match (
            std::env::var_os("PGCOPY_MASK_KEY"),
            std::env::var_os("PGCOPY_MASK_KEY_FILE"),
        ) {
            (Some(key), _) => key.into_encoded_bytes(),
            (None, Some(file)) => {
                warnings.extend(readable(Path::new(&file)));
                let mut bytes = std::fs::read(&file).with_context(|| {
                    format!(
                        "reading the masking key from {}",
                        Path::new(&file).display()
                    )
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => bail!(
                "the rules hash columns, which needs a key: set PGCOPY_MASK_KEY, or \
                 PGCOPY_MASK_KEY_FILE to a file that holds it (never a flag, so that no \
                 process list shows it)"
            ),
        };
        if key.len() < 16 {
            bail!("the masking key is shorter than 16 bytes: take a long random one");
        }
        let distinct = key.iter().collect::<HashSet<_>>().len();
        if distinct < 16 {
            warnings.push(format!(
                "the masking key has only {distinct} distinct bytes (sixteen zeros, twenty \
                 spaces?): anyone who guesses it can undo the masks; take a random one, such \
                 as `openssl rand -base64 32`"
            ));
        }
        Ok(MaskKey::new(key))
    }
}

/// A warning when the key file may be read by others than its owner: the key undoes the
/// masks.
fn readable(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the masking key file {} may be read by others (mode {mode:04o}): `chmod 600` it, \
             since the key undoes the masks",
            path.display()
        )
    })
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

/// One column's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MaskRule {
    pub(crate) table: TableName,
    pub(crate) column: String,
    pub(crate) rule: Rule,
}

/// How a masked column's value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Always NULL.
    Null,
    /// This value, in the column's type.
    Fixed(String),
    /// An SQL expression over the row's columns, evaluated by the source.
    Sql(String),
    /// The value moved by a random amount of at most `range` either way (a number, or an
    /// interval for dates and times), by the source.
    Noise(String),
    /// Derived from the value's HMAC-SHA256 under the key, applied by pgcopy: the same
    /// value, the same output.
    Keyed(Keyed),
    /// Left as it is, on purpose: it meets `require` (a `*name*` pattern that catches
    /// `category.name`), and `verify` still compares it.
    Keep,
}

/// The rules made from the keyed hash of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyed {
    /// The hash itself, in the column's type.
    Hash,
    /// `<16 hex digits>@example.invalid`: valid, and distinct where the values were.
    Email,
    /// A first and a last name from built-in lists.
    Name,
    /// A first name from the built-in list.
    FirstName,
    /// A last name from the built-in list.
    LastName,
    /// A phone-like number in the range kept for fiction: `+1-555-01xx-xxxx`.
    Phone,
    /// The same length and character classes: each ASCII letter another of its case,
    /// each digit another digit; everything else as it was.
    Scramble,
}

impl Keyed {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Keyed::Hash => "hash",
            Keyed::Email => "email",
            Keyed::Name => "name",
            Keyed::FirstName => "first_name",
            Keyed::LastName => "last_name",
            Keyed::Phone => "phone",
            Keyed::Scramble => "scramble",
        }
    }
}

impl Rule {
    /// In a few words, for the dry run.
    pub(crate) fn describe(&self) -> String {
        match self {
            Rule::Null => "null".into(),
            Rule::Fixed(value) => format!("fixed {}", quote_literal(value)),
            Rule::Sql(expr) => format!("sql {expr}"),
            Rule::Noise(range) => format!("noise ±{range}"),
            Rule::Keyed(keyed) => format!("{} (keyed, by pgcopy)", keyed.name()),
            Rule::Keep => "keep (as it is)".into(),
        }
    }

    /// Whether pgcopy applies it, not the source.
    pub(crate) fn in_client(&self) -> bool {
        matches!(self, Rule::Keyed(_))
    }
}

/// A masked column of a planned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mask {
    pub(crate) column: String,
    /// Inside a `json` or `jsonb` column: the keys (or array indexes, `*` any) down to the
    /// masked value. Empty: the whole column.
    pub(crate) path: Vec<String>,
    pub(crate) rule: Rule,
    /// The key, for a rule pgcopy applies.
    pub(crate) key: Option<MaskKey>,
    /// For a column of a domain: the type it is a domain over, which the keyed rules make
    /// (its binary form is the domain's).
    pub(crate) base_type: Option<String>,
}

impl Mask {
    /// What it masks, `column` or `column.key.key`, as messages and the dry run show it.
    pub(crate) fn target(&self) -> String {
        let mut target = display_ident(&self.column).into_owned();
        for step in &self.path {
            target.push('.');
            target.push_str(step);
        }
        target
    }

    /// A JSON column with the source's rules for paths inside it applied, as the source
    /// reads it (`jsonb_set` for each; a path the document does not have, or a JSON `null`
    /// there, left as it is); `None` when no such rule is among `masks`.
    pub(crate) fn json_expr(column: &str, type_name: &str, masks: &[&Mask]) -> Option<String> {
        let col = quote_ident(column);
        let mut expr = format!("{col}::jsonb");
        let mut any = false;
        for mask in masks
            .iter()
            .filter(|m| !m.path.is_empty() && !m.rule.in_client())
        {
            any = true;
            let steps: Vec<String> = mask.path.iter().map(|s| quote_literal(s)).collect();
            let path = format!("ARRAY[{}]::text[]", steps.join(", "));
            let at = format!("({col}::jsonb #> {path})");
            let new = match &mask.rule {
                Rule::Null | Rule::Keyed(_) => "'null'::jsonb".to_string(),
                Rule::Keep => at.clone(),
                Rule::Fixed(value) => format!("to_jsonb({}::text)", quote_literal(value)),
                Rule::Sql(expr) => format!("to_jsonb(({expr}))"),
                Rule::Noise(range) => format!(
                    "CASE jsonb_typeof({at}) WHEN 'number' THEN \
                     to_jsonb(({at} #>> '{{}}')::numeric + (random() * 2 - 1) * {range}) \
                     ELSE 'null'::jsonb END"
                ),
            };
            expr = format!(
                "jsonb_set({expr}, {path}, CASE WHEN jsonb_typeof({at}) = 'null' THEN \
                 'null'::jsonb ELSE coalesce({new}, 'null'::jsonb) END, false)"
            );
        }
        any.then(|| format!("({expr})::{type_name}"))
    }

    /// The masked value as the source reads it, in the column's own type `type_name`;
    /// NULL where the column is NULL.
    pub(crate) fn source_expr(&self, type_name: &str) -> String {
        let column = quote_ident(&self.column);
        let value = match &self.rule {
            Rule::Keyed(_) | Rule::Keep => return column,
            Rule::Null => return format!("NULL::{type_name}"),
            Rule::Fixed(value) => quote_literal(value),
            Rule::Sql(expr) => format!("({expr})"),
            Rule::Noise(range) => match Noisy::of(type_name) {
                Some(Noisy::Number) => format!("{column} + (random() * 2 - 1) * {range}"),
                _ => format!(
                    "{column} + (random() * 2 - 1) * {}::interval",
                    quote_literal(range)
                ),
            },
        };
        format!("CASE WHEN {column} IS NULL THEN NULL ELSE {value} END::{type_name}")
    }
}

impl Rules {
    pub(crate) fn load(path: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the rules file {}", path.display()))?;
        let mut rules =
            parse(&text).with_context(|| format!("in the rules file {}", path.display()))?;
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
        let keys = partition_keys(client, plan)?;
        let bases = domain_bases(client, plan)?;
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

    /// Puts the masks on the plan's tables; what is wrong with the rules for this plan
    /// (a table the source does not have, or a column the table does not have; a column
    /// `require` matches that no rule masks) comes back as refusals. `on_source` are the
    /// source's tables: a rule for one this copy leaves out is no mistake.
    fn apply(
        &self,
        plan: &mut Plan,
        on_source: &HashSet<TableName>,
        masks: &[MaskRule],
        partition_keys: &BTreeMap<TableName, Vec<String>>,
        bases: &BTreeMap<String, String>,
    ) -> (Vec<String>, Kept) {
        let mut refusals = Vec::new();
        let mut kept = HashSet::new();
        for mask in masks {
            // A partitioned table's rule is its partitions', which are what is copied.
            let mut tables = plan
                .tables
                .iter_mut()
                .filter(|t| t.on_source)
                .filter(|t| t.name == mask.table || t.parent.as_ref() == Some(&mask.table))
                .peekable();
            if tables.peek().is_none() {
                if !on_source.contains(&mask.table) {
                    refusals.push(format!(
                        "the rules mask {}.{}, but the source has no table {} (renamed or \
                         dropped?)",
                        mask.table,
                        display_ident(&mask.column),
                        mask.table
                    ));
                }
                continue;
            }
            for table in tables {
                let Some((column, path)) = resolve(&table.columns, &mask.column) else {
                    refusals.push(format!(
                        "the rules mask the column {} of {}, which it does not have (renamed \
                         or dropped?): its data would be copied unmasked under the new name",
                        display_ident(&mask.column),
                        table.name
                    ));
                    continue;
                };
                let target = format!("{}.{}", table.name, display_ident(&mask.column));
                if !path.is_empty() {
                    if let Err(why) = json_path_fits(&column.type_name, &path, &mask.rule) {
                        refusals.push(format!("the rule for {target}: {why}"));
                        continue;
                    }
                    let clash = table.masks.iter().find(|m| {
                        m.column == column.name
                            && (m.path.is_empty()
                                || m.path.starts_with(&path)
                                || path.starts_with(&m.path))
                    });
                    if let Some(other) = clash {
                        refusals.push(format!(
                            "the rules mask {target} and {}.{}, one inside the other: keep one",
                            table.name,
                            other.target()
                        ));
                        continue;
                    }
                } else if let Some(other) = table.masks.iter().find(|m| m.column == column.name) {
                    refusals.push(format!(
                        "the rules mask {target} and {}.{}, one inside the other: keep one",
                        table.name,
                        other.target()
                    ));
                    continue;
                }
                if partition_keys
                    .get(&table.name)
                    .is_some_and(|keys| keys.contains(&column.name))
                {
                    refusals.push(format!(
                        "the rules mask {target}, which is in the partition key of {}: a row \
                         whose masked value belongs in another partition could not be loaded \
                         into this one; leave the partition key unmasked",
                        table.parent.as_ref().unwrap_or(&table.name)
                    ));
                    continue;
                }
                let column = column.clone();
                if let (Rule::Noise(range), true) = (&mask.rule, path.is_empty()) {
                    if let Err(why) = Noisy::check(&column.type_name, range) {
                        refusals.push(format!(
                            "the rule noise for {}.{}: {why}",
                            table.name,
                            display_ident(&column.name)
                        ));
                        continue;
                    }
                }
                let base_type = bases.get(&column.type_name).cloned();
                if let Rule::Keyed(keyed) = mask.rule {
                    let kind = Kind::of(&column.type_name)
                        .or_else(|| base_type.as_deref().and_then(Kind::of));
                    if let (Err(why), true) = (fits(keyed, kind), path.is_empty()) {
                        refusals.push(format!(
                            "the rule {} cannot produce {}.{}'s type {}: {why}",
                            keyed.name(),
                            table.name,
                            display_ident(&column.name),
                            column.type_name
                        ));
                        continue;
                    }
                    if table.format != Format::Binary {
                        refusals.push(format!(
                            "{} travels as text ({}), where pgcopy cannot hash a column: use \
                             an sql rule there",
                            table.name,
                            table.text_reason.as_deref().unwrap_or("its types")
                        ));
                        continue;
                    }
                }
                if mask.rule == Rule::Keep {
                    kept.insert((table.name.clone(), column.name.clone(), path));
                    continue;
                }
                table.masks.push(Mask {
                    column: column.name.clone(),
                    path,
                    rule: mask.rule.clone(),
                    key: self.key.clone().filter(|_| mask.rule.in_client()),
                    base_type,
                });
            }
        }
        for table in &plan.tables {
            for column in &table.columns {
                let masked = table.masks.iter().any(|m| m.column == column.name)
                    || kept
                        .iter()
                        .any(|(t, c, _)| t == &table.name && c == &column.name);
                let lowered = column.name.to_lowercase();
                if let Some(pattern) = self.require.iter().find(|p| p.matches(&lowered)) {
                    if !masked {
                        refusals.push(format!(
                            "{}.{} matches the rules' require pattern {:?} but no rule masks \
                             it: add one under [mask.\"{}\"], or exclude the table",
                            table.name,
                            display_ident(&column.name),
                            pattern.as_string(),
                            table.name.dotted()
                        ));
                    }
                }
            }
        }
        (refusals, kept)
    }
}

/// The types the copied columns' domains are domains over (through domains over domains),
/// by the domain's name as `format_type` writes a column's type.
fn domain_bases(client: &mut postgres::Client, plan: &Plan) -> Result<BTreeMap<String, String>> {
    let mut oids: Vec<u32> = plan
        .tables
        .iter()
        .flat_map(|t| t.columns.iter().map(|c| c.type_oid))
        .collect();
    oids.sort_unstable();
    oids.dedup();
    let rows = client
        .query(
            "WITH RECURSIVE d(oid, base, typmod) AS (
                 SELECT t.oid, t.typbasetype, t.typtypmod FROM pg_catalog.pg_type t
                  WHERE t.oid = ANY ($1) AND t.typtype = 'd'
               UNION ALL
                 SELECT d.oid, t.typbasetype,
                        CASE WHEN d.typmod <> -1 THEN d.typmod ELSE t.typtypmod END
                   FROM d JOIN pg_catalog.pg_type t ON t.oid = d.base AND t.typtype = 'd')
             SELECT format_type(d.oid, NULL), format_type(d.base, d.typmod)
               FROM d JOIN pg_catalog.pg_type b ON b.oid = d.base AND b.typtype <> 'd'",
            &[&oids],
        )
        .context("reading the copied columns' domains")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns of the partition keys (of every level) that each copied partition's rows are
/// routed by: a row loads into its partition only while those keep their values.
fn partition_keys(
    client: &mut postgres::Client,
    plan: &Plan,
) -> Result<BTreeMap<TableName, Vec<String>>> {
    let names: Vec<String> = plan
        .tables
        .iter()
        .filter(|t| t.parent.is_some() && t.on_source)
        .map(|t| t.name.quoted())
        .collect();
    let mut keys: BTreeMap<TableName, Vec<String>> = BTreeMap::new();
    if names.is_empty() {
        return Ok(keys);
    }
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text
               FROM unnest($1::text[]) AS leaf(name)
               JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(leaf.name)
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(c.oid) AS up(relid)
               JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = up.relid
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = p.partrelid AND a.attnum = ANY (p.partattrs)",
            &[&names],
        )
        .context("reading the partition keys of the copied partitions")?;
    for row in rows {
        keys.entry(TableName::new(
            row.get::<_, String>(0),
            row.get::<_, String>(1),
        ))
        .or_default()
        .push(row.get(2));
    }
    Ok(keys)
}

/// The column a rule's key names and the JSON path inside it: the column of that name,
/// else the longest column name the key starts with before a dot, the rest split at dots.
fn resolve<'a>(
    columns: &'a [crate::schema::catalog::Column],
    key: &str,
) -> Option<(&'a crate::schema::catalog::Column, Vec<String>)> {
    if let Some(column) = columns.iter().find(|c| c.name == key) {
        return Some((column, Vec::new()));
    }
    columns
        .iter()
        .filter_map(|c| {
            let rest = key.strip_prefix(c.name.as_str())?.strip_prefix('.')?;
            Some((c, rest))
        })
        .max_by_key(|(c, _)| c.name.len())
        .map(|(c, rest)| {
            (
                c,
                rest.split('.').map(str::to_string).collect::<Vec<String>>(),
            )
        })
        .filter(|(_, path)| path.iter().all(|step| !step.is_empty()))
}

/// Whether a rule may reach to `path` inside a column of `type_name`.
fn json_path_fits(
    type_name: &str,
    path: &[String],
    rule: &Rule,
) -> std::result::Result<(), String> {
    if type_name != "json" && type_name != "jsonb" {
        return Err(format!(
            "a path reaches inside json and jsonb columns, and the column is {type_name}"
        ));
    }
    if !rule.in_client() && path.iter().any(|step| step == "*") {
        return Err(
            "the source sets one path at a time: a * is for the keyed rules, which pgcopy \
             applies"
                .into(),
        );
    }
    if let Rule::Noise(range) = rule {
        return Noisy::check("numeric", range)
            .map_err(|why| format!("{why} (inside JSON, noise moves numbers)"));
    }
    Ok(())
}

/// The keyed masks that cannot make the type their column travels as, which is the
/// destination's where the two sides' types differ: known once the destination is read.
pub(crate) fn wire_refusals(plan: &Plan) -> Vec<String> {
    let mut refusals = Vec::new();
    for table in &plan.tables {
        for mask in &table.masks {
            let Rule::Keyed(keyed) = mask.rule else {
                continue;
            };
            let Some(column) = table.columns.iter().find(|c| c.name == mask.column) else {
                continue;
            };
            let wire = table.wire_type(column);
            let kind = Kind::of(wire).or_else(|| mask.base_type.as_deref().and_then(Kind::of));
            let why = if mask.path.is_empty() {
                fits(keyed, kind).err().map(str::to_string)
            } else if wire != "json" && wire != "jsonb" {
                Some("a path reaches inside json and jsonb columns".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                refusals.push(format!(
                    "the rule {} cannot produce {}.{} as the destination takes it, {wire}: {why}",
                    keyed.name(),
                    table.name,
                    mask.target()
                ));
            }
        }
    }
    refusals
}

/// What `noise` moves a column by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noisy {
    /// A number (`integer`, `numeric(…)`, `double precision`, …).
    Number,
    /// An interval (`date`, `timestamp`, `timestamptz`, `time`).
    Interval,
}

impl Noisy {
    fn of(type_name: &str) -> Option<Noisy> {
        let base = type_name.split('(').next().unwrap_or(type_name).trim();
        match base {
            "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
                Some(Noisy::Number)
            }
            "date"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "time without time zone" => Some(Noisy::Interval),
            _ if type_name.starts_with("timestamp") => Some(Noisy::Interval),
            _ => None,
        }
    }

    /// Whether `range` suits a column of `type_name`: a positive number for numbers; for
    /// dates and times an interval, of which only its form is checked here: digits and
    /// unit words (`30 days`, `2 hours 30 minutes`).
    fn check(type_name: &str, range: &str) -> std::result::Result<(), String> {
        match Noisy::of(type_name) {
            None => Err(format!(
                "it moves numbers, dates and times, not {type_name}"
            )),
            Some(Noisy::Number) => match range.parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Ok(()),
                _ => Err(format!("range must be a positive number, not {range:?}")),
            },
            Some(Noisy::Interval) => {
                let plain = range
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '.' || c == ':');
                if plain && range.chars().any(|c| c.is_ascii_digit()) {
                    Ok(())
                } else {
                    Err(format!(
                        "range must be an interval (\"30 days\"), not {range:?}"
                    ))
                }
            }
        }
    }
}

/// Whether a keyed rule can make a column of `kind` (`None`: a type none of them makes).
fn fits(keyed: Keyed, kind: Option<Kind>) -> std::result::Result<(), &'static str> {
    match (keyed, kind) {
        (_, None) => {
            Err("the keyed rules make text, varchar, char, smallint, integer, bigint and uuid")
        }
        (Keyed::Hash, Some(_)) => Ok(()),
        (Keyed::Email, Some(Kind::Text(Some(max)))) if max < 32 => {
            Err("its addresses take 32 characters")
        }
        (_, Some(Kind::Text(_))) => Ok(()),
        (_, Some(_)) => Err("it makes text: text, varchar or char"),
    }
}

/// Parses a rules file's text.
fn parse(text: &str) -> Result<Rules> {
    let doc: toml::Table = text.parse().context("not valid TOML")?;
    let mut rules = Rules::default();
    for (key, value) in &doc {
        match key.as_str() {
            "require" => {
                for pattern in strings(value, "require must be a list of column name patterns")? {
                    rules.require.push(Glob::new(&pattern.to_lowercase()));
                }
            }
            "mask" => {
                let tables = value
                    .as_table()
                    .context("mask must be tables: [mask.\"schema.table\"]")?;
                for (name, columns) in tables {
                    let table = table_name(name)?;
                    let columns = columns
                        .as_table()
                        .with_context(|| format!("[mask.\"{name}\"] must map columns to rules"))?;
                    for (column, rule) in columns {
                        rules.masks.push(MaskRule {
                            table: table.clone(),
                            column: column.clone(),
                            rule: rule_of(rule)
                                .with_context(|| format!("the rule for {name}.{column}"))?,
                        });
                    }
                }
            }
            "subset" => {
                let tables = value
                    .as_table()
                    .context("subset must be tables: [subset.\"schema.table\"]")?;
                for (name, fields) in tables {
                    rules.subsets.push(
                        subset_of(table_name(name)?, fields)
                            .with_context(|| format!("in [subset.\"{name}\"]"))?,
                    );
                }
            }
            "foreign_key" => {
                let keys = value
                    .as_array()
                    .context("foreign_key must be a list: [[foreign_key]]")?;
                for key in keys {
                    rules
                        .keys
                        .push(declared_key(key).context("in a [[foreign_key]]")?);
                }
            }
            "large_objects" => {
                rules.large_objects = Some(match value.as_str() {
                    Some("copy") => LargeObjects::Copy,
                    Some("empty") => LargeObjects::Empty,
                    _ => bail!(
                        "large_objects must be \"copy\" (as they are: no rule reaches inside \
                         one) or \"empty\" (the destination's removed, none copied)"
                    ),
                })
            }
            other => bail!(
                "unknown key {other:?}: a rules file has require, large_objects, [mask.…], \
                 [subset.…] and [[foreign_key]]"
            ),
        }
    }
    Ok(rules)
}

/// `schema.table`, split at the first dot (a table's name may hold dots, as pgcopy
/// displays it).
fn table_name(key: &str) -> Result<TableName> {
    match key.split_once('.') {
        Some((schema, name)) if !schema.is_empty() && !name.is_empty() => {
            Ok(TableName::new(schema, name))
        }
        _ => bail!("name the table as \"schema.table\", not {key:?}"),
    }
}

/// A `[subset."…"]` table's fields.
fn subset_of(table: TableName, fields: &toml::Value) -> Result<SubsetRule> {
    let fields = fields
        .as_table()
        .context("a subset is a table of where, percent, limit and order_by")?;
    let mut rule = SubsetRule {
        table,
        filter: None,
        percent: None,
        limit: None,
        order_by: None,
        children: Vec::new(),
    };
    for (key, value) in fields {
        match key.as_str() {
            "where" => rule.filter = Some(text_of(key, value)?),
            "order_by" => rule.order_by = Some(text_of(key, value)?),
            "percent" => {
                rule.percent = Some(match value {
                    toml::Value::Integer(n) => *n as f64,
                    toml::Value::Float(x) => *x,
                    _ => bail!("percent must be a number"),
                })
            }
            "children" => {
                for name in strings(value, "children must be a list of \"schema.table\" names")? {
                    rule.children.push(table_name(name)?);
                }
            }
            "limit" => match value.as_integer() {
                Some(n) if n >= 0 => rule.limit = Some(n as u64),
                _ => bail!("limit must be a number of rows"),
            },
            other => {
                bail!(
                    "unknown field {other:?}: a subset takes where, percent, limit, order_by \
                     and children"
                )
            }
        }
    }
    if rule.order_by.is_some() && rule.limit.is_none() {
        bail!("order_by orders the rows a limit keeps: give limit too");
    }
    Ok(rule)
}

/// A `[[foreign_key]]`: `table`, `columns`, `references` and `referenced` (the same
/// names as `columns` when left out).
fn declared_key(value: &toml::Value) -> Result<DeclaredKey> {
    let fields = value
        .as_table()
        .context("a foreign key is a table: table, columns, references, referenced")?;
    let names = |key: &str| -> Result<Option<Vec<String>>> {
        let Some(value) = fields.get(key) else {
            return Ok(None);
        };
        let list = strings(value, &format!("{key} must be a list of column names"))?;
        Ok(Some(list.into_iter().map(str::to_string).collect()))
    };
    for key in fields.keys() {
        if !["table", "columns", "references", "referenced"].contains(&key.as_str()) {
            bail!("unknown field {key:?}: a foreign key takes table, columns, references and referenced");
        }
    }
    let table = |key: &str| -> Result<TableName> {
        table_name(
            fields
                .get(key)
                .and_then(toml::Value::as_str)
                .with_context(|| format!("a foreign key needs {key} = \"schema.table\""))?,
        )
    };
    let columns = names("columns")?.context("a foreign key needs columns = [\"…\"]")?;
    Ok(DeclaredKey {
        table: table("table")?,
        referenced: names("referenced")?.unwrap_or_else(|| columns.clone()),
        columns,
        references: table("references")?,
    })
}

/// A list of strings, else the error `what`.
fn strings<'a>(value: &'a toml::Value, what: &str) -> Result<Vec<&'a str>> {
    let list = value.as_array().with_context(|| what.to_string())?;
    list.iter()
        .map(|v| v.as_str().with_context(|| what.to_string()))
        .collect()
}

/// A field that takes SQL text.
fn text_of(key: &str, value: &toml::Value) -> Result<String> {
    match value.as_str() {
        Some(text) if !text.trim().is_empty() => Ok(text.to_string()),
        _ => bail!("{key} must be SQL text"),
    }
}

/// A rule: its name, or a table `{ rule = "…", … }`.
fn rule_of(value: &toml::Value) -> Result<Rule> {
    let (name, table) = match value {
        toml::Value::String(name) => (name.as_str(), None),
        toml::Value::Table(table) => (
            table
                .get("rule")
                .and_then(toml::Value::as_str)
                .context("a rule table needs rule = \"…\"")?,
            Some(table),
        ),
        _ => bail!("a rule is a name (\"null\") or a table ({{ rule = \"sql\", expr = \"…\" }})"),
    };
    let field = |key: &str| -> Result<String> {
        match table.and_then(|t| t.get(key)) {
            Some(toml::Value::String(text)) => Ok(text.clone()),
            Some(toml::Value::Integer(n)) => Ok(n.to_string()),
            Some(toml::Value::Float(x)) => Ok(x.to_string()),
            Some(toml::Value::Boolean(b)) => Ok(b.to_string()),
            _ => bail!("the rule {name} needs {key} = \"…\""),
        }
    };
    let rule = match name {
        "null" => Rule::Null,
        "fixed" => Rule::Fixed(field("value")?),
        "sql" => Rule::Sql(field("expr")?),
        "noise" => {
            let range = field("range")?;
            if range.trim().is_empty() {
                bail!("the rule noise needs range = a number or an interval");
            }
            Rule::Noise(range)
        }
        "hash" => Rule::Keyed(Keyed::Hash),
        "email" => Rule::Keyed(Keyed::Email),
        "name" => Rule::Keyed(Keyed::Name),
        "first_name" => Rule::Keyed(Keyed::FirstName),
        "last_name" => Rule::Keyed(Keyed::LastName),
        "keep" => Rule::Keep,
        "phone" => Rule::Keyed(Keyed::Phone),
        "scramble" => Rule::Keyed(Keyed::Scramble),
        other => bail!(
            "unknown rule {other:?}: this pgcopy masks with null, fixed (value = …), sql \
             (expr = …), noise (range = …), hash, email, name, first_name, last_name, phone \
             and scramble, and keep leaves a column as it is"
        ),
    };
    if let Some(table) = table {
        for key in table.keys() {
            let expected = match rule {
                Rule::Null | Rule::Keyed(_) | Rule::Keep => &["rule"][..],
                Rule::Fixed(_) => &["rule", "value"],
                Rule::Sql(_) => &["rule", "expr"],
                Rule::Noise(_) => &["rule", "range"],
            };
            if !expected.contains(&key.as_str()) {
                bail!("the rule {name} takes no {key}");
            }
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_require_and_masks() {
        let rules = parse(
            r#"
            require = ["*Email*", "phone"]
            [mask."public.customer"]
            email = "null"
            note = { rule = "fixed", value = "redacted" }
            initials = { rule = "sql", expr = "left(first_name, 1)" }
            [mask."public.odd.name"]
            n = { rule = "fixed", value = 0 }
            "#,
        )
        .unwrap();
        assert_eq!(rules.require.len(), 2);
        assert!(rules.require[0].matches("work_email"));
        let customer = TableName::new("public", "customer");
        assert!(rules.masks.contains(&MaskRule {
            table: customer.clone(),
            column: "email".into(),
            rule: Rule::Null,
        }));
        assert!(rules.masks.contains(&MaskRule {
            table: customer,
            column: "initials".into(),
            rule: Rule::Sql("left(first_name, 1)".into()),
        }));
        assert!(rules.masks.contains(&MaskRule {
            table: TableName::new("public", "odd.name"),
            column: "n".into(),
            rule: Rule::Fixed("0".into()),
        }));
    }

    #[test]
    fn reads_the_example_in_conf() {
        let rules = parse(include_str!("../../conf/rules.example.toml")).unwrap();
        assert_eq!(rules.require.len(), 5);
        assert!(rules
            .masks
            .iter()
            .any(|m| m.rule == Rule::Keyed(Keyed::Email)));
        assert_eq!(rules.subsets.len(), 2);
        assert_eq!(rules.keys.len(), 1);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for (text, says) in [
            ("[mask.customer]\nemail = \"null\"", "schema.table"),
            (
                "[mask.\"public.c\"]\nemail = \"shuffle\"",
                "unknown rule \"shuffle\"",
            ),
            (
                "[mask.\"public.c\"]\nemail = { rule = \"fixed\" }",
                "needs value",
            ),
            (
                "[mask.\"public.c\"]\ne = { rule = \"null\", value = 1 }",
                "takes no value",
            ),
            ("requires = []", "unknown key \"requires\""),
            ("require = \"*email*\"", "list of column name patterns"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn masks_keep_nulls_and_the_columns_type() {
        let mask = |rule| Mask {
            column: "e".into(),
            path: Vec::new(),
            rule,
            key: None,
            base_type: None,
        };
        assert_eq!(mask(Rule::Null).source_expr("text"), "NULL::text");
        assert_eq!(
            mask(Rule::Fixed("it's".into())).source_expr("character varying(20)"),
            "CASE WHEN \"e\" IS NULL THEN NULL ELSE 'it''s' END::character varying(20)"
        );
        assert_eq!(
            mask(Rule::Sql("md5(e)".into())).source_expr("text"),
            "CASE WHEN \"e\" IS NULL THEN NULL ELSE (md5(e)) END::text"
        );
    }
}
