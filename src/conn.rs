//! Connections: parsing a connection target, connecting with pgcopy's session settings, the
//! worker pools, and the exported snapshot that every reader shares.

use crate::sql::quote_literal;
use anyhow::{bail, Context, Result};
use postgres::config::Host;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The oldest server pgcopy supports: generated columns and `pg_partition_root` are 12+.
pub const MIN_SERVER_VERSION: i32 = 120000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A connection taken from a `Pool`; it goes back when dropped.
pub type PooledClient = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// A database to connect to. Its `Display` is `user@host:port/db`: never the password.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
}

impl Target {
    /// Parses a `postgres://` URL or a libpq `key=value` string and fills in what libpq would
    /// default: the local socket directory (or localhost) and the application name.
    pub fn parse(text: &str) -> Result<Target> {
        let mut config = postgres::Config::from_str(text).map_err(|err| {
            // The parser's message never contains the password, but be sure: say only why.
            anyhow::anyhow!("{err}")
        })?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            match ["/var/run/postgresql", "/tmp"]
                .iter()
                .find(|dir| Path::new(dir).join(".s.PGSQL.5432").exists())
            {
                Some(dir) => config.host_path(dir),
                None => config.host("localhost"),
            };
        }
        if config.get_application_name().is_none() {
            config.application_name("pgcopy");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Target { config })
    }

    /// Opens one connection and checks that the server is one pgcopy supports.
    pub fn connect(&self) -> Result<Client> {
        let mut client = self
            .config
            .connect(NoTls)
            .with_context(|| format!("connecting to {self}"))?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .with_context(|| format!("asking {self} for its version"))?
            .get(0);
        if version < MIN_SERVER_VERSION {
            bail!("{self} runs PostgreSQL {version}; pgcopy needs 12 or newer");
        }
        Ok(client)
    }

    /// A pool for the worker threads. Connections open when a worker first asks.
    pub fn pool(&self, size: usize) -> Result<Pool> {
        let manager = PostgresConnectionManager::new(self.config.clone(), NoTls);
        Ok(r2d2::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(manager))
    }

    fn user(&self) -> String {
        match self.config.get_user() {
            Some(user) => user.to_string(),
            None => std::env::var("USER").unwrap_or_else(|_| "?".into()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => match self.config.get_hostaddrs().first() {
                Some(addr) => addr.to_string(),
                None => "?".into(),
            },
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.user();
        let db = self.config.get_dbname().unwrap_or(&user);
        write!(f, "{user}@{host}:{port}/{db}")
    }
}

/// Never shows the password, unlike `postgres::Config`'s own `Debug`.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// Who a server and database are, whatever URL reached them (`localhost` or `127.0.0.1`,
/// a socket, another user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `pg_control_system().system_identifier`: set by initdb, shared only by physical copies.
    pub system_id: String,
    /// The port the server is configured with, which the URL may not show.
    pub port: String,
    pub database: String,
    /// The postmaster's start time: tells apart two running copies of one cluster.
    pub started: String,
}

impl Identity {
    pub fn read(client: &mut Client) -> Result<Identity> {
        let row = client
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                        current_setting('port'), current_database(),
                        pg_postmaster_start_time()::text",
                &[],
            )
            .context("asking the server who it is")?;
        Ok(Identity {
            system_id: row.get(0),
            port: row.get(1),
            database: row.get(2),
            started: row.get(3),
        })
    }

    /// What names this database across server restarts (state files use it).
    pub fn key(&self) -> String {
        format!("{}:{}/{}", self.system_id, self.port, self.database)
    }
}

/// Takes the session advisory lock that one pgcopy at a time holds on a destination
/// database. The server releases it when the session ends, even after `kill -9`, so a state
/// file found while holding the lock is one that no running pgcopy is still using.
pub fn lock_destination(client: &mut Client, target: &Target) -> Result<()> {
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('pgcopy destination'))",
            &[],
        )
        .context("taking pgcopy's lock on the destination")?
        .get(0);
    if !locked {
        bail!("another pgcopy is copying into {target} (it holds pgcopy's advisory lock there); wait for it to finish");
    }
    Ok(())
}

/// A source connection holding a REPEATABLE READ transaction open with its snapshot
/// exported: readers that import it see exactly what this transaction sees, for as long as
/// this value lives.
pub struct Snapshot {
    pub client: Client,
    pub id: String,
}

impl Snapshot {
    pub fn export(mut client: Client) -> Result<Snapshot> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .context("starting the source snapshot transaction")?;
        let id: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .context("exporting the source snapshot")?
            .get(0);
        Ok(Snapshot { client, id })
    }

    /// The statement a reader runs first in its own REPEATABLE READ transaction.
    pub fn import_sql(&self) -> String {
        format!("SET TRANSACTION SNAPSHOT {}", quote_literal(&self.id))
    }
}

/// An error and its causes on one line, server errors as `db_error` shows them.
pub fn describe(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            parts.push(db_error(pg));
        } else if cause.downcast_ref::<postgres::error::DbError>().is_none() {
            // A DbError is the source of the postgres::Error just described.
            parts.push(cause.to_string());
        }
    }
    parts.join(": ")
}

/// A server error on one line: the message, then its detail and hint; other errors as
/// they display.
pub fn db_error(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (DETAIL: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (HINT: {hint})"));
            }
            text
        }
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_targets_without_passwords() {
        let t = Target::parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        assert_eq!(t.to_string(), "alice@db.example:6543/app");
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = Target::parse("host=10.0.0.1 user=bob password=s3cret dbname=x").unwrap();
        assert_eq!(t.to_string(), "bob@10.0.0.1:5432/x");
    }

    #[test]
    fn rejects_malformed_strings_without_echoing_them() {
        let err = Target::parse("postgres://bob:s3cret@host:notaport/db").unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"));
    }
}
