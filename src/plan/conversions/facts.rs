//! What the catalogs say of the changed columns' types (domains read through, arrays as
//! their elements) and of the destination's casts between them: the facts `classify`
//! decides by, each side read in one query.

use crate::pg::sql::quote_ident;
use anyhow::{Context, Result};
use postgres::Client;

/// The first OID a user object can get: types below it are built in, the same by name on
/// every server, so the source can cast to them.
const FIRST_NORMAL_OID: u32 = 16384;

/// What one side's catalog says of a column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeFacts {
    /// The base type (domains read through), or for an array its element's base type:
    /// schema and name as stored.
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) typmod: i32,
    /// The name of the type's `typmodin` function, which alone knows what its modifier
    /// means; empty for a type without modifiers.
    pub(crate) typmodin: String,
    pub(crate) array: bool,
    /// A built-in type (below `FirstNormalObjectId`): the source has it by the same name.
    pub(crate) builtin: bool,
    /// `format_type` of the base type with its modifier: what the source casts to.
    pub(crate) cast_to: String,
    /// The column's type is a domain over the base type.
    pub(crate) domain: bool,
}

impl TypeFacts {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    pub(super) fn is(&self, name: &str) -> bool {
        self.schema == "pg_catalog" && self.name == name
    }
}

/// An entry of the destination's `pg_cast`: `castcontext` and `castmethod`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cast {
    pub(crate) context: char,
    pub(crate) method: char,
}

/// The facts of the given (type OID, type modifier) pairs, in their order.
pub(super) fn facts(client: &mut Client, types: &[(u32, i32)]) -> Result<Vec<TypeFacts>> {
    let (oids, typmods): (Vec<u32>, Vec<i32>) = types.iter().copied().unzip();
    let rows = client
        .query(
            "WITH RECURSIVE chain(i, typ, typmod, depth) AS (
                 SELECT w.i, w.typ, w.typmod, 0
                 FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS w(typ, typmod, i)
               UNION ALL
                 SELECT c.i, t.typbasetype, t.typtypmod, c.depth + 1
                 FROM chain c JOIN pg_type t ON t.oid = c.typ
                 WHERE t.typtype = 'd'
             ),
             base AS (
                 SELECT DISTINCT ON (c.i) c.i, c.typ, c.typmod, c.depth > 0 AS domain
                 FROM chain c ORDER BY c.i, c.depth DESC
             )
             SELECT b.i, n.nspname, e.typname, b.typmod, b.domain,
                    coalesce(p.proname, '') AS typmodin,
                    t.typelem <> 0 AND t.typlen = -1 AS is_array,
                    e.oid AS elem, format_type(b.typ, b.typmod) AS cast_to
             FROM base b
             JOIN pg_type t ON t.oid = b.typ
             JOIN pg_type e
               ON e.oid = CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN t.typelem ELSE t.oid END
             JOIN pg_namespace n ON n.oid = e.typnamespace
             LEFT JOIN pg_proc p ON p.oid = t.typmodin
             ORDER BY b.i",
            &[&oids, &typmods],
        )
        .context("reading the columns' types")?;
    Ok(rows
        .iter()
        .map(|row| TypeFacts {
            schema: row.get("nspname"),
            name: row.get("typname"),
            typmod: row.get("typmod"),
            typmodin: row.get("typmodin"),
            array: row.get("is_array"),
            builtin: row.get::<_, u32>("elem") < FIRST_NORMAL_OID,
            cast_to: row.get("cast_to"),
            domain: row.get("domain"),
        })
        .collect())
}

/// The destination's casts between the given (source facts, destination facts) pairs.
pub(super) fn casts(
    dest: &mut Client,
    pairs: &[(&TypeFacts, &TypeFacts)],
) -> Result<Vec<Option<Cast>>> {
    let sources: Vec<String> = pairs.iter().map(|(s, _)| s.qualified()).collect();
    let targets: Vec<String> = pairs.iter().map(|(_, d)| d.qualified()).collect();
    let rows = dest
        .query(
            "SELECT w.i, c.castcontext::text, c.castmethod::text
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(src, dst, i)
             JOIN pg_cast c ON c.castsource = to_regtype(w.src)
                           AND c.casttarget = to_regtype(w.dst)",
            &[&sources, &targets],
        )
        .context("reading the destination's casts")?;
    let mut found = vec![None; pairs.len()];
    for row in rows {
        let i = row.get::<_, i64>(0) as usize - 1;
        let first = |s: String| s.chars().next().unwrap_or(' ');
        found[i] = Some(Cast {
            context: first(row.get(1)),
            method: first(row.get(2)),
        });
    }
    Ok(found)
}
