//! Connections: connecting to a target (read from a connection string by `conninfo`) with
//! pgcopy's session settings, the password file read at the first connection, the fallback
//! from TLS that libpq allows, and why a connection failed; the worker pools; who a server
//! is; and the destination lock.

use crate::pg::conninfo::Conninfo;
use crate::pg::pgpass;
use crate::pg::session_setup;
use crate::pg::tls::{self, SslMode, Tls};
use crate::pg::wire;
use anyhow::{anyhow, bail, Context, Result};
use postgres::config::{Host, LoadBalanceHosts, SslMode as WireMode};
use postgres::error::SqlState;
use postgres::Client;
use r2d2_postgres::PostgresConnectionManager;
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The oldest server pgcopy supports, and tests: 13. (12 is past its end of life.)
pub(crate) const MIN_SERVER_VERSION: i32 = 130000;

const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The pools' connection manager for postgres-crate sessions.
pub(crate) type Manager = PostgresConnectionManager<MakeRustlsConnect>;

pub(crate) type Pool = r2d2::Pool<Manager>;

/// The readers' sessions on the source.
pub(crate) type WirePool = r2d2::Pool<wire::Manager>;

/// A connection taken from a `Pool`; it goes back when dropped.
pub(crate) type PooledClient = r2d2::PooledConnection<Manager>;

/// A database to connect to. Its `Display` is `user@host:port/db`, and neither it nor `Debug`
/// ever shows the password.
#[derive(Clone)]
pub(crate) struct Target {
    config: postgres::Config,
    tls: Tls,
    /// The password file to read at the first connection, when no password was given.
    passfile: Option<PathBuf>,
    /// What the password file had, read once, so its warnings come once; clones share it.
    from_passfile: Arc<OnceLock<Option<String>>>,
    /// Whether to connect without TLS: from the start under `sslmode=allow`, after TLS
    /// failed under `prefer`, as libpq does; every later connection (pools, readers) follows.
    plain: Arc<AtomicBool>,
}

impl Target {
    /// Reads a `postgres://` URL or a libpq `key=value` string the way libpq does, the `PG*`
    /// environment variables and libpq's defaults filling what it leaves out (see
    /// `Conninfo::parse`).
    pub(crate) fn parse(text: &str) -> Result<Target> {
        Conninfo::parse(text).map(Target::new)
    }

    fn new(conninfo: Conninfo) -> Target {
        let Conninfo {
            config,
            tls,
            passfile,
        } = conninfo;
        Target {
            plain: Arc::new(AtomicBool::new(tls.mode() == SslMode::Allow)),
            config,
            tls,
            passfile,
            from_passfile: Arc::new(OnceLock::new()),
        }
    }

    /// Opens one connection and checks that the server is one pgcopy supports.
    pub(crate) fn connect(&self) -> Result<Client> {
        let config = self.config();
        let mut client = match config.connect(self.connector()) {
            Err(err) if self.may_switch(&config, &err) => {
                let tried_tls = config.get_ssl_mode() != WireMode::Disable;
                if tried_tls {
                    log::warn!(
                        "TLS with {self} failed ({}); connecting without TLS, as sslmode={} \
                         allows",
                        self.explain(&err),
                        self.tls.mode()
                    );
                } else {
                    log::info!(
                        "{self} refused a connection without TLS ({}); connecting with TLS, as \
                         sslmode=allow does",
                        self.explain(&err)
                    );
                }
                self.plain.store(tried_tls, Ordering::Relaxed);
                self.config().connect(self.connector())
            }
            result => result,
        }
        .map_err(|err| anyhow!("{}", self.explain(&err)))
        .with_context(|| format!("connecting to {self}"))?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .with_context(|| format!("asking {self} for its version"))?
            .get(0);
        if version < MIN_SERVER_VERSION {
            bail!(
                "{self} runs PostgreSQL {}.{}; pgcopy needs 13 or newer (older versions are past \
                 their end of life, and untested)",
                version / 10000,
                version % 10000
            );
        }
        session_setup::apply(&mut client)
            .with_context(|| format!("setting up a session on {self}"))?;
        Ok(client)
    }

    /// Whether each connection picks among the hosts at random (`load_balance_hosts=random`).
    pub(crate) fn balances_hosts(&self) -> bool {
        self.config.get_load_balance_hosts() == LoadBalanceHosts::Random
    }

    /// Whether a failed first try may be made again the other way, as libpq does:
    /// `sslmode=prefer` tries TLS first and goes on without it when the handshake fails or the
    /// server refuses the TLS connection; `allow` tries without TLS first and goes on with it
    /// when the server refuses that. A refusal is the server's `pg_hba.conf` saying no (28000),
    /// not a wrong password.
    fn may_switch(&self, config: &postgres::Config, err: &postgres::Error) -> bool {
        if !matches!(self.tls.mode(), SslMode::Prefer | SslMode::Allow) {
            return false;
        }
        let refused = err.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        match config.get_ssl_mode() {
            // The driver has no error kind to ask for; its message for this one is fixed.
            WireMode::Prefer => refused || err.to_string() == "error performing TLS handshake",
            _ => refused && self.tls.mode() == SslMode::Allow,
        }
    }

    /// A pool for the worker threads. Connections open when a worker first asks.
    pub(crate) fn pool(&self, size: usize) -> Result<Pool> {
        let manager = PostgresConnectionManager::new(self.config().into_owned(), self.connector());
        Ok(r2d2::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(0))
            // Short: a lane asking for a connection to a server that went away should fail
            // (and maybe retry) soon, not hold the copy up.
            .connection_timeout(POOL_TIMEOUT)
            .connection_customizer(Box::new(session_setup::OnConnect))
            .build_unchecked(manager))
    }

    /// A pool of the readers' own sessions (see `wire`). Connections open when a reader asks.
    pub(crate) fn wire_pool(&self, size: usize) -> WirePool {
        r2d2::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(0))
            .connection_timeout(POOL_TIMEOUT)
            .build_unchecked(wire::Manager::new(self.clone()))
    }

    /// The rustls configuration of this target, for the readers' own sessions.
    pub(crate) fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.config()
    }

    /// The TLS connector of this target, for `postgres::Config::connect` and
    /// `CancelToken::cancel_query`.
    pub(crate) fn connector(&self) -> MakeRustlsConnect {
        self.tls.connector()
    }

    /// The configuration to connect with: with the password file's password when no password
    /// was given, and without TLS after a fallback. The file is read at the first connection,
    /// as libpq reads it when it connects, and after the logger is up, so its warnings show.
    pub(crate) fn config(&self) -> Cow<'_, postgres::Config> {
        let mut config = Cow::Borrowed(&self.config);
        if let Some(passfile) = &self.passfile {
            let password = self.from_passfile.get_or_init(|| {
                let user = self.user();
                let wanted = pgpass::Wanted {
                    host: &self.passfile_host(),
                    port: self.port(),
                    database: self.config.get_dbname().unwrap_or(&user),
                    user: &user,
                };
                pgpass::lookup(passfile, &wanted)
            });
            if let Some(password) = password {
                config.to_mut().password(password.as_str());
            }
        }
        if self.plain.load(Ordering::Relaxed) {
            config.to_mut().ssl_mode(WireMode::Disable);
        }
        config
    }

    /// The host name the password file is matched against: the first host (a password file
    /// line names one host). For a unix-domain socket libpq matches `localhost` when the
    /// socket is in the default directory and the directory otherwise; pgcopy matches
    /// `localhost` for every socket.
    fn passfile_host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(_)) | None => "localhost".into(),
        }
    }

    fn user(&self) -> String {
        self.config.get_user().unwrap_or("?").to_string()
    }

    fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => match self.config.get_hostaddrs().first() {
                Some(addr) => addr.to_string(),
                None => "?".into(),
            },
        }
    }

    /// Why a connection failed, said so an operator knows what to change.
    fn explain(&self, err: &postgres::Error) -> String {
        if let Some(db) = err.as_db_error() {
            let mut text = db_error(err);
            if db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                // "no encryption" from 14 on, "SSL off" before.
                && (db.message().contains("no encryption") || db.message().contains("SSL off"))
                && self.tls.mode() == SslMode::Disable
            {
                text.push_str(
                    " (the server accepts this connection only over TLS: leave out \
                     sslmode=disable)",
                );
            }
            return text;
        }
        let mut cause = std::error::Error::source(err);
        while let Some(current) = cause {
            let io = current.downcast_ref::<std::io::Error>();
            let rustls = current
                .downcast_ref::<rustls::Error>()
                .or_else(|| io.and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>()));
            if let Some(text) = rustls.and_then(|e| tls::explain_handshake_error(e, &self.tls)) {
                return format!("TLS handshake failed: {text}");
            }
            match io.map(std::io::Error::kind) {
                Some(std::io::ErrorKind::ConnectionRefused) => {
                    return format!(
                        "connection refused: is the server running on {}:{} and accepting \
                         TCP/IP connections?",
                        self.host(),
                        self.port()
                    )
                }
                Some(std::io::ErrorKind::NotFound) if self.host().starts_with('/') => {
                    return format!(
                        "no server is listening on the socket {}/.s.PGSQL.{}",
                        self.host(),
                        self.port()
                    )
                }
                _ => {}
            }
            cause = current.source();
        }
        let cause = std::error::Error::source(err).map(ToString::to_string);
        match cause.as_deref() {
            Some("server does not support TLS") => format!(
                "the server does not support TLS, and sslmode={} requires it (enable ssl on \
                 the server, or use sslmode=prefer to connect without TLS)",
                self.tls.mode()
            ),
            Some("password missing") => format!(
                "no password supplied: the server asks for one; give it in the connection \
                 string, in PGPASSWORD or in the password file{}",
                match &self.passfile {
                    Some(path) => format!(" ({})", path.display()),
                    None => String::new(),
                }
            ),
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user();
        let db = self.config.get_dbname().unwrap_or(&user);
        write!(f, "{user}@{}:{}/{db}", self.host(), self.port())
    }
}

/// Never shows the password, unlike `postgres::Config`'s own `Debug`.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self}, sslmode={})", self.tls.mode())
    }
}

/// Who a server and database are, whatever URL reached them (`localhost` or `127.0.0.1`,
/// a socket, another user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `pg_control_system().system_identifier`: set by initdb, shared only by physical copies.
    pub(crate) system_id: String,
    /// The port the server is configured with, which the URL may not show.
    pub(crate) port: String,
    pub(crate) database: String,
    /// The postmaster's start time: tells apart two running copies of one cluster.
    pub(crate) started: String,
}

impl Identity {
    pub(crate) fn read(client: &mut Client) -> Result<Identity> {
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
    pub(crate) fn key(&self) -> String {
        format!("{}:{}/{}", self.system_id, self.port, self.database)
    }
}

/// Takes the session advisory lock that one pgcopy at a time holds on a destination
/// database. The server releases it when the session ends, even after `kill -9`, so a state
/// file found while holding the lock is one that no running pgcopy is still using.
pub(crate) fn lock_destination(client: &mut Client, target: &Target) -> Result<()> {
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

/// An error and its causes on one line, server errors as `db_error` shows them.
pub(crate) fn describe(err: &anyhow::Error) -> String {
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
pub(crate) fn db_error(err: &postgres::Error) -> String {
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
    use std::collections::HashMap;

    /// Parses with exactly these environment variables (and no HOME, so no password file).
    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Target> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Conninfo::parse_with(text, &|name| vars.get(name).cloned()).map(Target::new)
    }

    #[test]
    fn displays_targets_without_passwords() {
        let t = Target::parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        assert_eq!(t.to_string(), "alice@db.example:6543/app");
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = Target::parse("host=10.0.0.1 user=bob password=s3cret dbname=x").unwrap();
        assert_eq!(t.to_string(), "bob@10.0.0.1:5432/x");
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn the_environment_fills_what_the_string_leaves_out() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGAPPNAME", "cron-refresh"),
        ];
        let t = parse_env("", &env).unwrap();
        assert_eq!(t.to_string(), "envuser@envhost:6000/envdb");
        assert_eq!(t.config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(t.config.get_application_name(), Some("cron-refresh"));
        assert_eq!(t.passfile, None, "a password was given");
        // The string always wins, in either form.
        let t = parse_env("postgres://bob:pw@db/app?port=7000", &env).unwrap();
        assert_eq!(t.to_string(), "bob@db:7000/app");
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        let t = parse_env("dbname=app", &env).unwrap();
        assert_eq!(t.to_string(), "envuser@envhost:6000/app");
        // A socket directory in PGHOST.
        let t = parse_env("", &[("PGHOST", "/run/pg"), ("PGUSER", "u")]).unwrap();
        assert_eq!(t.to_string(), "u@/run/pg:5432/u");
    }
}
