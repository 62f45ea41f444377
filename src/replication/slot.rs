//! What following creates on the source, and takes away again: a publication `FOR TABLE` the
//! selection (made first, so the slot's decoding sees it from its first change), then a
//! logical replication slot of `pgoutput` whose creation exports the snapshot the copy reads
//! in. Both are named after the destination (`pgcopy_follow_…`), so `cutover`, `abandon` and
//! a resumed follower find them from the two connection strings alone; any copy names the
//! slots stopped followers left there (`warn_left_behind`).

use crate::pg::error::sqlstate;
use crate::pg::server::SnapshotId;
use crate::pg::sql::{quote_ident, quote_literal, TableName};
use crate::pg::target::Target;
use crate::pg::wire;
use crate::plan::filter::TableFilter;
use crate::replication::decode::Lsn;
use crate::state::file::fnv1a;
use crate::units::format_bytes;
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The prefix of every slot and publication pgcopy makes.
pub(crate) const PREFIX: &str = "pgcopy_follow_";

/// The name of the slot and of the publication that follow a source into the destination
/// whose identity key (`Identity::key`) is `dest_key`.
pub(crate) fn name_for(dest_key: &str) -> String {
    format!("{PREFIX}{:016x}", fnv1a(dest_key.as_bytes()))
}

/// A WAL position as PostgreSQL writes it (`16/B374D848`).
pub(crate) struct LsnText(pub(crate) Lsn);

impl fmt::Display for LsnText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

pub(crate) use crate::pg::server::parse_lsn;

/// A slot made for a copy, and the replication session that made it, which must stay idle
/// while its exported snapshot is being imported.
pub(crate) struct Slot {
    pub(crate) name: String,
    /// Where decoding starts: every transaction committed after this is streamed, none
    /// before it (those are in the snapshot).
    pub(crate) consistent_point: Lsn,
    pub(crate) session: wire::Connection,
}

/// Makes the publication and the slot for one copy, again if the snapshot must be taken
/// again.
pub(crate) struct SlotMaker<'a> {
    source: &'a Target,
    name: String,
    /// The source's `server_version_num`: the slot command's syntax changed in 15.
    version: i32,
    /// How long making the slot may wait for the transactions running on the source.
    timeout: Duration,
    /// What the follower follows, recorded on the publication.
    filter: TableFilter,
    slot: Option<Slot>,
}

impl<'a> SlotMaker<'a> {
    pub(crate) fn new(
        source: &'a Target,
        name: String,
        version: i32,
        timeout: Duration,
        filter: TableFilter,
    ) -> SlotMaker<'a> {
        SlotMaker {
            source,
            name,
            version,
            timeout,
            filter,
            slot: None,
        }
    }

    /// Publishes `tables` (and only those), then makes a new slot, dropping the one an
    /// earlier try made, and returns the snapshot its creation exported. Takes as long as
    /// the transactions running on the source when it starts: a slot's snapshot can only be
    /// exported once no transaction older than it is still running. It waits for them as
    /// for locks (it does wait on their locks), at most the lock timeout, since the copy's
    /// locks are held meanwhile; a failed try leaves no publication behind.
    pub(crate) fn make(&mut self, tables: &[TableName]) -> Result<SnapshotId> {
        if tables.is_empty() {
            bail!("there is no table to follow");
        }
        let list: Vec<String> = tables.iter().map(TableName::quoted).collect();
        let publication = quote_ident(&self.name);
        // Outside the snapshot's transaction, which has not begun when the first slot is
        // made; a publication must be committed before the slot that decodes with it.
        let mut setup = self.source.connect()?;
        let exists = setup
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
                &[&self.name],
            )?
            .is_some();
        let sql = if exists {
            format!(
                "ALTER PUBLICATION {publication} SET TABLE {}",
                list.join(", ")
            )
        } else {
            format!(
                "CREATE PUBLICATION {publication} FOR TABLE {}",
                list.join(", ")
            )
        };
        // The filters go with it: tables they select that appear later are followed too,
        // and `cutover` checks that none is left out (see `recorded_filter`).
        let comment = serde_json::json!({ FOLLOWS: self.filter.to_json() }).to_string();
        setup
            .batch_execute(&format!(
                "{sql}; COMMENT ON PUBLICATION {publication} IS {}",
                quote_literal(&comment)
            ))
            .with_context(|| format!("creating the publication {}", self.name))?;
        if let Some(mut old) = self.slot.take() {
            old.session
                .execute(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&old.name)))
                .with_context(|| format!("dropping the slot {} of an earlier try", old.name))?;
        }
        let running = running_writers(&mut setup)?;
        if !running.is_empty() {
            log::info!(
                "the replication slot waits for the transactions running on the source to \
                 end (at most {}s, --lock-timeout): {running}",
                self.timeout.as_secs()
            );
        }
        let mut session = self.source.connect_replication()?;
        let slot = quote_ident(&self.name);
        let command = if self.version >= 150000 {
            format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT 'export')")
        } else {
            format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT")
        };
        let made = session
            .execute(&format!("SET lock_timeout = {}", self.timeout.as_millis()))
            .and_then(|()| session.query_rows(&command));
        let rows = match made {
            Ok(rows) => rows,
            Err(err) => {
                let waited = sqlstate(&err) == Some(SqlState::LOCK_NOT_AVAILABLE);
                if let Err(drop) = setup.batch_execute(&format!("DROP PUBLICATION {publication}")) {
                    log::warn!("could not drop the publication {}: {drop}", self.name);
                }
                if waited {
                    let running = match running_writers(&mut setup) {
                        Ok(running) if running.is_empty() => {
                            "none is running now (they ended as it gave up)".to_string()
                        }
                        Ok(running) => format!("these did not: {running}"),
                        Err(err) => format!("which could not be listed: {err}"),
                    };
                    bail!(
                        "could not create the replication slot within --lock-timeout {}s: its \
                         snapshot waits for every transaction running on the source to end, \
                         and {running}; nothing was changed (the copy's locks are held while \
                         it waits): wait for them to end, or raise --lock-timeout",
                        self.timeout.as_secs(),
                    );
                }
                return Err(err)
                    .with_context(|| format!("creating the replication slot {}", self.name));
            }
        };
        let row = rows
            .first()
            .context("CREATE_REPLICATION_SLOT returned no row")?;
        let field = |i: usize| -> Result<&str> {
            row.get(i)
                .and_then(|v| v.as_deref())
                .context("CREATE_REPLICATION_SLOT returned a short row")
        };
        let consistent_point = parse_lsn(field(1)?)?;
        let snapshot = SnapshotId(field(2)?.to_string());
        log::info!(
            "created the replication slot {} on {}: changes committed after {} follow the copy",
            self.name,
            self.source,
            LsnText(consistent_point)
        );
        self.slot = Some(Slot {
            name: self.name.clone(),
            consistent_point,
            session,
        });
        Ok(snapshot)
    }

    /// Ends the export of the last slot's snapshot once it was imported: a replication
    /// session holds it (and the source's xmin horizon) until its next command.
    pub(crate) fn release_snapshot(&mut self) -> Result<()> {
        if let Some(slot) = self.slot.as_mut() {
            slot.session
                .query_rows("IDENTIFY_SYSTEM")
                .context("letting the replication slot's snapshot go")?;
        }
        Ok(())
    }

    /// The slot made last, if any.
    pub(crate) fn into_slot(self) -> Option<Slot> {
        self.slot
    }

    /// The slot made last, if any, which the caller now answers for.
    pub(crate) fn take_slot(&mut self) -> Option<Slot> {
        self.slot.take()
    }
}

/// The transactions running on the source that have written (hold a transaction ID), which
/// a new slot's snapshot waits for: `pid 123 (app, idle in transaction for 12s: UPDATE …)`,
/// and prepared transactions, which hold theirs until someone commits or rolls them back.
fn running_writers(client: &mut Client) -> Result<String> {
    let rows = client.query(
        "SELECT pid, usename::text, application_name, state,
                extract(epoch FROM now() - xact_start)::float8, left(query, 120)
           FROM pg_catalog.pg_stat_activity
          WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
          ORDER BY xact_start
          LIMIT 5",
        &[],
    )?;
    let mut found: Vec<String> = rows
        .iter()
        .map(|r| {
            let name: Option<String> = r.get(2);
            format!(
                "pid {} ({}{}, {} for {:.0}s: {})",
                r.get::<_, i32>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
                name.filter(|n| !n.is_empty())
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                r.get::<_, Option<String>>(3).unwrap_or_default(),
                r.get::<_, Option<f64>>(4).unwrap_or_default(),
                r.get::<_, Option<String>>(5).unwrap_or_default().trim()
            )
        })
        .collect();
    let prepared = client.query(
        "SELECT gid, owner::text, database::text,
                extract(epoch FROM now() - prepared)::float8
           FROM pg_catalog.pg_prepared_xacts
          ORDER BY prepared
          LIMIT 5",
        &[],
    )?;
    found.extend(prepared.iter().map(|r| {
        let gid: String = r.get(0);
        format!(
            "the prepared transaction {} ({} in {}, prepared {:.0}s ago: it waits for \
             COMMIT PREPARED or ROLLBACK PREPARED {})",
            quote_literal(&gid),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, Option<f64>>(3).unwrap_or_default(),
            quote_literal(&gid)
        )
    }));
    if found.is_empty() {
        return Ok(String::new());
    }
    Ok(found.join("; "))
}

/// The key of the publication's comment under which the follower's filters are.
const FOLLOWS: &str = "pgcopy follows";

/// The key under which the comment records the destination's tables (their OIDs, by
/// quoted name) that the follower applies changes to.
const INTO: &str = "pgcopy follows into";

/// The publication's comment, read as the JSON document pgcopy wrote there.
fn comment(client: &mut Client, name: &str) -> Result<Option<serde_json::Value>> {
    let comment: Option<String> = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication
              WHERE pubname = $1",
            &[&name],
        )
        .with_context(|| format!("reading the publication {name}"))?
        .and_then(|row| row.get(0));
    Ok(comment.and_then(|text| serde_json::from_str(&text).ok()))
}

/// The filters the follower of the publication `name` follows by, as its comment records
/// them; `None` when there is no such publication or it records none (a publication made
/// by an older pgcopy, which follows only the tables published).
pub(crate) fn recorded_filter(client: &mut Client, name: &str) -> Result<Option<TableFilter>> {
    Ok(comment(client, name)?.and_then(|doc| TableFilter::from_json(doc.get(FOLLOWS)?)))
}

/// The destination's tables the follower of `name` applies to, as the comment records
/// them: their OIDs by quoted name (none recorded by an older pgcopy).
pub(crate) fn recorded_tables(client: &mut Client, name: &str) -> Result<BTreeMap<String, u32>> {
    let Some(doc) = comment(client, name)? else {
        return Ok(BTreeMap::new());
    };
    Ok(doc
        .get(INTO)
        .and_then(|into| into.as_object())
        .map(|into| {
            into.iter()
                .filter_map(|(table, oid)| {
                    Some((table.clone(), u32::try_from(oid.as_u64()?).ok()?))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Records on the publication's comment the destination tables (OIDs by quoted name) the
/// follower of `name` applies to, beside those recorded before: a resumed follower checks
/// that they are still those tables (not dropped and made again by a restore).
pub(crate) fn record_tables(
    client: &mut Client,
    name: &str,
    tables: &BTreeMap<String, u32>,
) -> Result<()> {
    let mut doc = comment(client, name)?.unwrap_or_else(|| serde_json::json!({}));
    let into = doc
        .as_object_mut()
        .context("the publication's comment is not pgcopy's")?
        .entry(INTO)
        .or_insert_with(|| serde_json::json!({}));
    if let Some(into) = into.as_object_mut() {
        for (table, oid) in tables {
            into.insert(table.clone(), serde_json::json!(oid));
        }
    }
    client
        .batch_execute(&format!(
            "COMMENT ON PUBLICATION {} IS {}",
            quote_ident(name),
            quote_literal(&doc.to_string())
        ))
        .with_context(|| format!("recording the followed tables on the publication {name}"))
}

/// Drops the slot and the publication named `name`, those that exist; returns the slot as
/// it was, if there was one, and whether there was a publication. A slot some session is
/// still streaming from cannot be dropped: that is an error.
pub(crate) fn drop_both(client: &mut Client, name: &str) -> Result<(Option<Follower>, bool)> {
    let slot = find(client, name)?;
    if let Some(slot) = &slot {
        if slot.active {
            bail!("the replication slot {name} is in use by a running follower");
        }
        client
            .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&name])
            .with_context(|| format!("dropping the replication slot {name}"))?;
    }
    let publication = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&name],
        )?
        .is_some();
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .with_context(|| format!("dropping the publication {name}"))?;
    Ok((slot, publication))
}

/// A slot a `copy --follow` made, as the source sees it.
#[derive(Debug)]
pub(crate) struct Follower {
    pub(crate) slot: String,
    /// A follower streams from it now.
    pub(crate) active: bool,
    /// Bytes of WAL between the slot's confirmed position and the source's current one.
    pub(crate) behind: u64,
    /// Bytes of WAL the slot keeps on the source.
    pub(crate) held: u64,
    /// Seconds between the source writing WAL and the follower confirming it committed, as
    /// the source last measured it (`pg_stat_replication.flush_lag`); `None` when idle and
    /// caught up, not streaming, or not visible to the role.
    pub(crate) lag: Option<f64>,
}

/// The slots pgcopy made on this source, for `status` and for the warning every run gives
/// about those nobody streams from.
pub(crate) fn followers(client: &mut Client) -> Result<Vec<Follower>> {
    slots(client, "starts_with(slot_name::text, $1)", PREFIX)
}

/// The slot `name`, if the source has it.
/// Where the slot `name`'s stream starts for a follower that never confirmed any of it.
pub(crate) fn start_of(client: &mut Client, name: &str) -> Result<Lsn> {
    let sql = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1";
    let lsn: Option<String> = client
        .query_opt(sql, &[&name])
        .with_context(|| format!("reading the replication slot {name}"))?
        .and_then(|row| row.get(0));
    parse_lsn(&lsn.with_context(|| format!("the replication slot {name} is gone"))?)
}

pub(crate) fn find(client: &mut Client, name: &str) -> Result<Option<Follower>> {
    Ok(slots(client, "slot_name = $1", name)?.into_iter().next())
}

fn slots(client: &mut Client, condition: &str, value: &str) -> Result<Vec<Follower>> {
    let rows = client.query(
        &format!(
            "SELECT slot_name::text, active,
                    coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
                                                        confirmed_flush_lsn), 0)::bigint,
                    coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
                                                        restart_lsn), 0)::bigint,
                    extract(epoch FROM r.flush_lag)::float8
               FROM pg_catalog.pg_replication_slots s
               LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid
              WHERE {condition}
              ORDER BY 1"
        ),
        &[&value],
    )?;
    Ok(rows
        .iter()
        .map(|r| Follower {
            slot: r.get(0),
            active: r.get(1),
            behind: r.get::<_, i64>(2).max(0) as u64,
            held: r.get::<_, i64>(3).max(0) as u64,
            lag: r.get(4),
        })
        .collect())
}

/// Names each slot an earlier `copy --follow` left on the source and nobody streams from:
/// it keeps WAL there until it is dropped. `replaced` is the slot of a follower into this
/// destination, whose data this copy replaces: following cannot go on from it. Best
/// effort: a source that cannot say is not a reason to stop.
pub(crate) fn warn_left_behind(source: &mut Client, replaced: Option<&str>) {
    match followers(source) {
        Ok(slots) => {
            for follower in slots.into_iter().filter(|f| !f.active) {
                let (name, held) = (follower.slot, format_bytes(follower.held));
                if Some(name.as_str()) == replaced {
                    log::warn!(
                        "the replication slot {name} of a stopped `pgcopy copy --follow` into \
                         this destination is left on the source, holding {held} of WAL: this \
                         copy replaces the data it followed into, so it cannot go on from \
                         there; drop it with `pgcopy abandon` (a `copy --follow --resume` \
                         starts over with a new copy)"
                    );
                } else {
                    log::warn!(
                        "the replication slot {name} that a `pgcopy copy --follow` made is \
                         left on the source, holding {held} of WAL: go on with `pgcopy copy \
                         --follow --resume`, or drop it with `pgcopy abandon` (both with the \
                         --dest it followed into)"
                    );
                }
            }
        }
        Err(err) => log::debug!("could not list the source's replication slots: {err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_wal_positions() {
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(LsnText(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(LsnText(0).to_string(), "0/0");
        assert!(parse_lsn("16B374D848").is_err());
    }

    #[test]
    fn names_a_slot_after_the_destination() {
        let name = name_for("host=a port=5432 dbname=x");
        assert!(name.starts_with(PREFIX));
        assert_eq!(name.len(), PREFIX.len() + 16);
        assert_eq!(name, name_for("host=a port=5432 dbname=x"));
        assert_ne!(name, name_for("host=b port=5432 dbname=x"));
    }
}
