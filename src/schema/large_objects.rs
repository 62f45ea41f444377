//! Large objects (`lo_*`): copied with their OIDs (which the tables' `oid` columns hold),
//! their data, owner and grants, from the copy's snapshot, in one destination transaction
//! that replaces the destination's large objects as a whole, on a thread of their own
//! while the tables load. As pg_dump does, they belong to a copy of the whole database, not
//! to a copy narrowed to some tables (see `Selection`). And how `verify` compares them.

use crate::pg::server::{begin_read_only, SnapshotId};
use crate::pg::sql::{display_ident, quote_ident};
use crate::pg::target::Target;
use anyhow::{bail, Context, Result};
use postgres::GenericClient;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// How much of a large object one statement moves: data travels in pieces this big, so a
/// large object of any size goes through in bounded memory.
const CHUNK: i32 = 1024 * 1024;

/// `--large-objects` / `--no-large-objects`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Copied unless the filters name tables or schemas to include (pg_dump's rule: `-t` and
    /// `-n` leave them out).
    Auto,
    Always,
    Never,
}

impl Selection {
    /// Whether a copy with these filters carries the large objects.
    pub(crate) fn copies(self, narrowed: bool) -> bool {
        match self {
            Selection::Auto => !narrowed,
            Selection::Always => true,
            Selection::Never => false,
        }
    }
}

/// One large object of the source, as the snapshot sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LargeObject {
    pub(crate) oid: u32,
    pub(crate) owner: String,
    /// `(grantee, privilege, grantable)`; an empty grantee is PUBLIC.
    pub(crate) grants: Vec<(String, String, bool)>,
}

/// The source's large objects, read in the snapshot's transaction.
pub(crate) fn plan(source: &mut impl GenericClient) -> Result<Vec<LargeObject>> {
    let rows = source
        .query(
            "SELECT m.oid, pg_get_userbyid(m.lomowner),
                    coalesce(array_agg(coalesce(pg_get_userbyid(g.grantee), '')
                                       ORDER BY g.grantee, g.privilege_type)
                             FILTER (WHERE g.grantee IS NOT NULL AND g.grantee <> m.lomowner),
                             '{}'),
                    coalesce(array_agg(g.privilege_type ORDER BY g.grantee, g.privilege_type)
                             FILTER (WHERE g.grantee IS NOT NULL AND g.grantee <> m.lomowner),
                             '{}'),
                    coalesce(array_agg(g.is_grantable ORDER BY g.grantee, g.privilege_type)
                             FILTER (WHERE g.grantee IS NOT NULL AND g.grantee <> m.lomowner),
                             '{}')
             FROM pg_largeobject_metadata m
             LEFT JOIN LATERAL aclexplode(m.lomacl) AS g ON true
             GROUP BY m.oid, m.lomowner
             ORDER BY m.oid",
            &[],
        )
        .context("listing the source's large objects")?;
    Ok(rows
        .iter()
        .map(|row| {
            let grantees: Vec<String> = row.get(2);
            let privileges: Vec<String> = row.get(3);
            let grantable: Vec<bool> = row.get(4);
            LargeObject {
                oid: row.get(0),
                owner: row.get(1),
                grants: grantees
                    .into_iter()
                    .zip(privileges)
                    .zip(grantable)
                    .map(|((grantee, privilege), grantable)| (grantee, privilege, grantable))
                    .collect(),
            }
        })
        .collect())
}

/// The large objects again, as the source has them now (a snapshot of its own): what
/// following does at cutover, since logical replication does not carry them. `None` when
/// neither side has any; else how many were copied, and their bytes.
pub(crate) fn copy_as_now(
    source: &Target,
    dest: &Target,
    stop: &dyn Fn() -> bool,
) -> Result<Option<(usize, u64)>> {
    let mut holder = source.connect()?;
    let mut snapshot = begin_read_only(&mut holder, None)?;
    let id = SnapshotId(
        snapshot
            .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])?
            .get(0),
    );
    let objects = plan(&mut snapshot)?;
    let dest_has: bool = dest
        .connect()?
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_largeobject_metadata)",
            &[],
        )?
        .get(0);
    if objects.is_empty() && !dest_has {
        return Ok(None);
    }
    let bytes = copy(source, dest, &id, &objects, &AtomicU64::new(0), stop)?;
    Ok(Some((objects.len(), bytes)))
}

/// Replaces the destination's large objects with `objects`, read from the source in the
/// `snapshot`, in one destination transaction: a failure leaves the
/// destination's as they were. `stop` is checked between pieces. Returns the bytes copied.
pub(crate) fn copy(
    source: &Target,
    dest: &Target,
    snapshot: &SnapshotId,
    objects: &[LargeObject],
    bytes: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> Result<u64> {
    let mut reader = source.connect()?;
    let mut reader = begin_read_only(&mut reader, Some(snapshot))?;
    let mut writer = dest.connect()?;
    let mut tx = writer.transaction()?;
    // Every large object of the destination goes: the source's set replaces it whole.
    tx.batch_execute(
        "SELECT lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
         SELECT set_config('synchronous_commit', 'local', true)
         WHERE current_setting('synchronous_commit') = 'off'",
    )
    .context("removing the destination's large objects")?;
    let roles = assignable_roles(&mut tx, objects)?;
    let read = reader.prepare("SELECT lo_get($1, $2, $3)")?;
    let create = tx.prepare("SELECT lo_from_bytea($1, $2)")?;
    let put = tx.prepare("SELECT lo_put($1, $2, $3)")?;
    let mut copied = 0u64;
    for object in objects {
        let mut offset = 0i64;
        loop {
            if stop() {
                bail!("stopped");
            }
            let data: Vec<u8> = reader
                .query_one(&read, &[&object.oid, &offset, &CHUNK])
                .with_context(|| format!("reading large object {}", object.oid))?
                .get(0);
            if offset == 0 {
                tx.execute(&create, &[&object.oid, &data])
            } else {
                tx.execute(&put, &[&object.oid, &offset, &data])
            }
            .with_context(|| format!("writing large object {}", object.oid))?;
            let len = data.len() as u64;
            copied += len;
            bytes.fetch_add(len, Ordering::Relaxed);
            offset += len as i64;
            if len < CHUNK as u64 {
                break;
            }
        }
        for sql in object.grant_sql(&roles) {
            tx.batch_execute(&sql).with_context(|| {
                format!("giving large object {} its owner and grants", object.oid)
            })?;
        }
    }
    tx.commit()
        .context("committing the large objects on the destination")?;
    reader.batch_execute("COMMIT")?;
    Ok(copied)
}

impl LargeObject {
    /// The privileges granted on it, then its owner, as statements: granted while the
    /// copying role owns it (the new owner then takes over the grants), and only to roles
    /// the destination has and the copying role may hand the object to (`roles`).
    fn grant_sql(&self, roles: &HashSet<String>) -> Vec<String> {
        let mut sql = Vec::new();
        for (grantee, privilege, grantable) in &self.grants {
            let to = if grantee.is_empty() {
                "PUBLIC".to_string()
            } else if roles.contains(grantee) {
                quote_ident(grantee)
            } else {
                continue;
            };
            let option = if *grantable { " WITH GRANT OPTION" } else { "" };
            sql.push(format!(
                "GRANT {privilege} ON LARGE OBJECT {} TO {to}{option}",
                self.oid
            ));
        }
        if roles.contains(&self.owner) {
            sql.push(format!(
                "ALTER LARGE OBJECT {} OWNER TO {}",
                self.oid,
                quote_ident(&self.owner)
            ));
        }
        sql
    }
}

/// The owners and grantees of `objects` that the destination has and that the copying role
/// may give a large object to (itself, a role it is a member of, or any as a superuser).
/// The others are named in a warning: their objects keep the copying role as owner.
fn assignable_roles(
    tx: &mut postgres::Transaction,
    objects: &[LargeObject],
) -> Result<HashSet<String>> {
    let mut wanted: Vec<&str> = objects
        .iter()
        .flat_map(|o| {
            std::iter::once(o.owner.as_str()).chain(o.grants.iter().map(|g| g.0.as_str()))
        })
        .filter(|r| !r.is_empty())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let may: HashSet<String> = tx
        .query(
            "SELECT r.rolname FROM pg_catalog.pg_roles r
             WHERE r.rolname = ANY($1)
               AND (pg_has_role(r.oid, 'MEMBER')
                    OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user))",
            &[&wanted],
        )
        .context("reading the destination's roles")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|r| !may.contains(**r))
        .map(|r| display_ident(r).into_owned())
        .collect();
    if !missing.is_empty() {
        log::warn!(
            "large objects owned by or granted to roles the destination lacks, or that the \
             copying role may not hand them to, keep the copying role as owner: {}",
            missing.join(", ")
        );
    }
    Ok(may)
}

/// One large object as `verify` compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) oid: u32,
    pub(crate) owner: String,
    /// `grantee=privilege` (`*` when grantable), the owner's own left out, sorted.
    pub(crate) grants: Vec<String>,
    /// The md5 of its data, where the connected role may read it (its owner or a member, a
    /// grantee of SELECT, a superuser, or `lo_compat_privileges`); else `None`.
    pub(crate) md5: Option<String>,
}

/// Every large object of the database, as far as the connected role may see it: the
/// metadata everyone may read, and the data of those it may read.
pub(crate) fn seen(client: &mut impl GenericClient) -> Result<Vec<Seen>> {
    let rows = client
        .query(
            "SELECT m.oid,
                    pg_get_userbyid(m.lomowner),
                    coalesce((SELECT array_agg(
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_get_userbyid(g.grantee) END
                                  || '=' || g.privilege_type
                                  || CASE WHEN g.is_grantable THEN '*' ELSE '' END
                                  ORDER BY 1)
                              FROM aclexplode(m.lomacl) AS g
                              WHERE g.grantee <> m.lomowner), '{}'),
                    CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                           OR current_setting('lo_compat_privileges')::bool
                           OR pg_has_role(m.lomowner, 'USAGE')
                           OR EXISTS (SELECT 1 FROM aclexplode(m.lomacl) AS g
                                      WHERE g.privilege_type = 'SELECT'
                                        AND (g.grantee = 0 OR pg_has_role(g.grantee, 'USAGE')))
                         THEN md5(lo_get(m.oid)) END
             FROM pg_catalog.pg_largeobject_metadata m
             ORDER BY m.oid",
            &[],
        )
        .context("reading the large objects")?;
    Ok(rows
        .iter()
        .map(|row| Seen {
            oid: row.get(0),
            owner: row.get(1),
            grants: row.get(2),
            md5: row.get(3),
        })
        .collect())
}

/// What comparing the large objects of both sides found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Compared {
    /// How many each side has.
    pub(crate) source: usize,
    pub(crate) dest: usize,
    /// The objects that differ, a few words each.
    pub(crate) differences: Vec<String>,
    /// What could not be compared, and why.
    pub(crate) unchecked: Vec<String>,
}

/// Compares the large objects as the copy leaves them: an owner, or a grantee, that the
/// destination lacks or the copying role may not give an object to (`dest_roles` are those
/// it may) was left out on purpose, the copying role keeping the object, so it is no
/// difference; data that either role may not
/// read is not compared, and said so.
pub(crate) fn compare(source: &[Seen], dest: &[Seen], dest_roles: &HashSet<String>) -> Compared {
    let by_oid: HashMap<u32, &Seen> = dest.iter().map(|d| (d.oid, d)).collect();
    let mut differences = Vec::new();
    let (mut unread, mut kept_owner) = (0, 0);
    for s in source {
        let Some(d) = by_oid.get(&s.oid) else {
            differences.push(format!("{} is missing", s.oid));
            continue;
        };
        match (&s.md5, &d.md5) {
            (Some(a), Some(b)) if a != b => differences.push(format!("{}: data", s.oid)),
            (Some(_), Some(_)) => {}
            _ => unread += 1,
        }
        if dest_roles.contains(&s.owner) {
            if s.owner != d.owner {
                differences.push(format!("{}: owner {} against {}", s.oid, s.owner, d.owner));
            }
        } else {
            kept_owner += 1;
        }
        let granted: Vec<&String> = s
            .grants
            .iter()
            .filter(|g| {
                let grantee = g.split_once('=').map_or(g.as_str(), |(r, _)| r);
                grantee == "PUBLIC" || dest_roles.contains(grantee)
            })
            .collect();
        if granted != d.grants.iter().collect::<Vec<_>>() {
            differences.push(format!("{}: grants", s.oid));
        }
    }
    let source_oids: HashSet<u32> = source.iter().map(|s| s.oid).collect();
    let extra = dest
        .iter()
        .filter(|d| !source_oids.contains(&d.oid))
        .count();
    if extra > 0 {
        differences.push(format!("{extra} only on the destination"));
    }
    let mut unchecked = Vec::new();
    if unread > 0 {
        unchecked.push(format!(
            "the data of {unread}, which the source or destination role may not read"
        ));
    }
    if kept_owner > 0 {
        unchecked.push(format!(
            "the owner of {kept_owner}, whose source owner the destination lacks or the role \
             may not give them to (the copying role keeps them)"
        ));
    }
    Compared {
        source: source.len(),
        dest: dest.len(),
        differences,
        unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(oid: u32, owner: &str, md5: Option<&str>) -> Seen {
        Seen {
            oid,
            owner: owner.into(),
            grants: Vec::new(),
            md5: md5.map(Into::into),
        }
    }

    #[test]
    fn owners_the_copy_could_not_give_and_unreadable_data_are_said_not_differences() {
        let roles: HashSet<String> = ["app".to_string()].into();
        let source = [
            seen(1, "gone", Some("a")),
            seen(2, "app", Some("b")),
            seen(3, "app", None),
        ];
        let dest = [
            seen(1, "app", Some("a")),
            seen(2, "app", Some("b")),
            seen(3, "app", Some("c")),
        ];
        let found = compare(&source, &dest, &roles);
        assert!(found.differences.is_empty(), "{found:?}");
        assert_eq!(found.unchecked.len(), 2, "{found:?}");

        let dest = [seen(1, "app", Some("x")), seen(2, "other", Some("b"))];
        let found = compare(&source, &dest, &roles);
        assert_eq!(
            found.differences,
            ["1: data", "2: owner app against other", "3 is missing"]
        );
    }

    #[test]
    fn large_objects_go_with_a_whole_database_as_in_pg_dump() {
        assert!(Selection::Auto.copies(false));
        assert!(!Selection::Auto.copies(true));
        assert!(Selection::Always.copies(true));
        assert!(!Selection::Never.copies(false));
    }

    #[test]
    fn gives_back_owner_and_grants() {
        let object = LargeObject {
            oid: 42,
            owner: "App Owner".into(),
            grants: vec![
                (String::new(), "SELECT".into(), false),
                ("reader".into(), "UPDATE".into(), true),
            ],
        };
        let roles: HashSet<String> = ["App Owner".to_string(), "reader".into()].into();
        assert_eq!(
            object.grant_sql(&roles),
            [
                "GRANT SELECT ON LARGE OBJECT 42 TO PUBLIC",
                "GRANT UPDATE ON LARGE OBJECT 42 TO \"reader\" WITH GRANT OPTION",
                "ALTER LARGE OBJECT 42 OWNER TO \"App Owner\"",
            ]
        );
        assert_eq!(
            object.grant_sql(&HashSet::new()),
            ["GRANT SELECT ON LARGE OBJECT 42 TO PUBLIC"],
            "roles the destination lacks are left out"
        );
    }
}
