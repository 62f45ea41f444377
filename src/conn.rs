//! Connections: a connection target read as libpq reads it (a URL or `key=value` string, the
//! `PG*` environment variables for what it leaves out, the password file, TLS), connecting
//! with pgcopy's session settings, the worker pools, and the exported snapshot that every
//! reader shares.

use crate::pgpass;
use crate::sql::quote_literal;
use crate::tls::{self, SslMode, Tls};
use anyhow::{anyhow, bail, Context, Result};
use postgres::config::{Host, SslMode as WireMode};
use postgres::error::SqlState;
use postgres::Client;
use r2d2_postgres::PostgresConnectionManager;
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The oldest server pgcopy supports: generated columns and `pg_partition_root` are 12+.
pub const MIN_SERVER_VERSION: i32 = 120000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's environment variables, and the keyword each one stands for when the connection
/// string leaves that keyword out.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
];

/// Where libpq looks for a server's socket when no host is given, in its order.
const SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

pub type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// A connection taken from a `Pool`; it goes back when dropped.
pub type PooledClient = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// A database to connect to. Its `Display` is `user@host:port/db`, and neither it nor `Debug`
/// ever shows the password.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    tls: Tls,
    /// The password file to read at the first connection, when no password was given.
    passfile: Option<PathBuf>,
    /// What the password file had, read once, so its warnings come once; clones share it.
    from_passfile: Arc<OnceLock<Option<String>>>,
    /// Set when a TLS handshake failed under `sslmode=allow` or `prefer` and pgcopy connected
    /// without TLS instead, as libpq does; the pools then connect without TLS too.
    plain_fallback: Arc<AtomicBool>,
}

impl Target {
    /// Reads a `postgres://` URL or a libpq `key=value` string the way libpq does: the `PG*`
    /// environment variables fill what it leaves out (the string always wins), then libpq's
    /// defaults (the local socket directory or localhost, port 5432, the operating-system
    /// user, a database named after the user). Adds `application_name=pgcopy` unless one is
    /// set, and a connect timeout.
    pub fn parse(text: &str) -> Result<Target> {
        Target::parse_with(text, &|name| std::env::var(name).ok())
    }

    /// `parse` with the environment given, for tests.
    fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
        // libpq takes an empty variable as set; an empty host or user helps nobody.
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        let mut params = Params::parse(text)?;
        for (keyword, variable) in ENVIRONMENT {
            if params.get(keyword).is_none() {
                if let Some(value) = env(variable) {
                    params.set(keyword, value);
                }
            }
        }
        // The keywords postgres::Config does not know (or, for sslmode, knows only in part).
        let home = env("HOME").map(PathBuf::from);
        let tls = Tls::new(&tls::Options {
            mode: params.take("sslmode"),
            root_cert: params.take("sslrootcert"),
            cert: params.take("sslcert"),
            key: params.take("sslkey"),
            home: home.clone(),
        })?;
        let passfile = params.take("passfile");

        let mut config = postgres::Config::from_str(&params.to_conninfo()).map_err(|err| {
            // The driver names the keyword that is wrong, never its value.
            match std::error::Error::source(&err) {
                Some(cause) => anyhow!("{err}: {cause}"),
                None => anyhow!("{err}"),
            }
        })?;
        if config.get_hosts().is_empty() {
            if config.get_hostaddrs().is_empty() {
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let socket = format!(".s.PGSQL.{port}");
                match SOCKET_DIRS
                    .iter()
                    .find(|dir| Path::new(dir).join(&socket).exists())
                {
                    Some(dir) => config.host_path(dir),
                    None => config.host("localhost"),
                };
            } else {
                // The address is the name TLS checks and the password file matches, as in
                // libpq; the driver wants a host for TLS.
                for addr in config.get_hostaddrs().to_vec() {
                    config.host(&addr.to_string());
                }
            }
        }
        if config.get_user().is_none() {
            let user = whoami::username().ok().or_else(|| env("USER")).context(
                "no user given and the operating-system user is unknown: set user= or PGUSER",
            )?;
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or_default().to_string();
            config.dbname(&user);
        }
        if config.get_application_name().is_none() {
            config.application_name("pgcopy");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // libpq never asks for TLS over a unix-domain socket, whatever sslmode says.
        let sockets_only = config.get_hostaddrs().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_)));
        config.ssl_mode(if sockets_only {
            WireMode::Disable
        } else {
            tls.wire_mode()
        });
        let passfile = match config.get_password() {
            Some(_) => None,
            None => passfile
                .map(PathBuf::from)
                .or_else(|| home.map(|home| home.join(".pgpass"))),
        };
        Ok(Target {
            config,
            tls,
            passfile,
            from_passfile: Arc::new(OnceLock::new()),
            plain_fallback: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens one connection and checks that the server is one pgcopy supports.
    pub fn connect(&self) -> Result<Client> {
        let config = self.config();
        let mut client = match config.connect(self.connector()) {
            // The driver has no error kind to ask for; its message for this one is fixed.
            Err(err)
                if config.get_ssl_mode() == WireMode::Prefer
                    && err.to_string() == "error performing TLS handshake" =>
            {
                log::warn!(
                    "TLS with {self} failed ({}); connecting without TLS, as sslmode={} allows",
                    self.explain(&err),
                    self.tls.mode()
                );
                self.plain_fallback.store(true, Ordering::Relaxed);
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
            bail!("{self} runs PostgreSQL {version}; pgcopy needs 12 or newer");
        }
        Ok(client)
    }

    /// A pool for the worker threads. Connections open when a worker first asks.
    pub fn pool(&self, size: usize) -> Result<Pool> {
        let manager = PostgresConnectionManager::new(self.config().into_owned(), self.connector());
        Ok(r2d2::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(0))
            // Short: a lane asking for a connection to a server that went away should fail
            // (and maybe retry) soon, not hold the copy up.
            .connection_timeout(POOL_TIMEOUT)
            .build_unchecked(manager))
    }

    /// The TLS connector of this target, for `postgres::Config::connect` and
    /// `CancelToken::cancel_query`.
    pub fn connector(&self) -> MakeRustlsConnect {
        self.tls.connector()
    }

    /// The configuration to connect with: with the password file's password when no password
    /// was given, and without TLS after a fallback. The file is read at the first connection,
    /// as libpq reads it when it connects, and after the logger is up, so its warnings show.
    fn config(&self) -> Cow<'_, postgres::Config> {
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
        if self.plain_fallback.load(Ordering::Relaxed) {
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
                && db.message().contains("no encryption")
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

/// A connection string's keywords and values as libpq reads them, from either form. Values
/// may be secrets: errors here never quote the string.
#[derive(Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(text: &str) -> Result<Params> {
        let text = text.trim();
        match ["postgresql://", "postgres://"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
        {
            Some(rest) => Params::parse_url(rest),
            None => Params::parse_keywords(text),
        }
    }

    /// `postgres://[user[:password]@][host][:port][,...][/dbname][?keyword=value&...]`, each
    /// part percent-decoded. A host in `[...]` is an IPv6 address; a host starting with `/`
    /// (written `%2F`) is a socket directory.
    fn parse_url(rest: &str) -> Result<Params> {
        let mut params = Params::default();
        let (authority, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        // The last `@`: a password with an unencoded `@` still works.
        let hosts = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (credentials, None),
                };
                params.set("user", percent_decode(user, "user name")?);
                if let Some(password) = password {
                    params.set("password", percent_decode(password, "password")?);
                }
                hosts
            }
            None => authority,
        };
        if !hosts.is_empty() {
            let mut names = Vec::new();
            let mut ports = Vec::new();
            for chunk in hosts.split(',') {
                let (host, port) = match chunk.strip_prefix('[') {
                    Some(inner) => {
                        let (host, after) = inner.split_once(']').context(
                            "invalid URL: an IPv6 address opens `[` but never closes it",
                        )?;
                        match after {
                            "" => (host, None),
                            after => (
                                host,
                                Some(after.strip_prefix(':').context(
                                    "invalid URL: an IPv6 address in `[...]` must be followed \
                                     by `:port` or nothing",
                                )?),
                            ),
                        }
                    }
                    None => match chunk.split_once(':') {
                        Some((host, port)) => (host, Some(port)),
                        None => (chunk, None),
                    },
                };
                names.push(percent_decode(host, "host")?);
                ports.push(percent_decode(port.unwrap_or(""), "port")?);
            }
            if names.iter().any(|name| !name.is_empty()) {
                params.set("host", names.join(","));
            }
            if ports.iter().any(|port| !port.is_empty()) {
                params.set("port", ports.join(","));
            }
        }
        if let Some(dbname) = path.strip_prefix('/') {
            params.set("dbname", percent_decode(dbname, "database name")?);
        }
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (keyword, value) = pair
                .split_once('=')
                .context("invalid URL: a query parameter has no `=`")?;
            let keyword = percent_decode(keyword, "query parameter")?;
            params.set(&keyword, percent_decode(value, "query parameter")?);
        }
        Ok(params)
    }

    /// `keyword=value ...`, whitespace around `=` allowed, a value in single quotes when it
    /// holds spaces, with `\'` and `\\` inside (and `\` escaping any character).
    fn parse_keywords(text: &str) -> Result<Params> {
        let mut params = Params::default();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                return Ok(params);
            }
            let mut keyword = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
                keyword.push(c);
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next() != Some('=') {
                // Not the keyword itself: it may be a password typed in the wrong place.
                bail!(
                    "invalid connection string: a keyword without `=` (the string is a URL \
                     starting postgres:// or keyword=value pairs)"
                );
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        None => bail!("invalid connection string: a quoted value is not closed"),
                        Some('\'') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => value.push(c),
                            None => {
                                bail!("invalid connection string: a quoted value is not closed")
                            }
                        },
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
            }
            params.set(&keyword, value);
        }
    }

    fn get(&self, keyword: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given wins, as in libpq; an empty value is no value.
    fn set(&mut self, keyword: &str, value: String) {
        self.0.retain(|(k, _)| k != keyword);
        if !value.is_empty() {
            self.0.push((keyword.to_string(), value));
        }
    }

    fn take(&mut self, keyword: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == keyword)?;
        Some(self.0.remove(index).1)
    }

    /// The `keyword='value'` string `postgres::Config` parses, every value quoted.
    fn to_conninfo(&self) -> String {
        self.0
            .iter()
            .map(|(keyword, value)| {
                format!(
                    "{keyword}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Undoes `%XY` escapes. `what` names the part in errors; its value is never shown.
fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .with_context(|| {
                    format!("invalid URL: a `%` in the {what} is not followed by two hex digits")
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| anyhow!("invalid URL: the {what} is not UTF-8 once percent-decoded"))
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
    use std::collections::HashMap;

    /// Parses with exactly these environment variables (and no HOME, so no password file).
    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Target> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Target::parse_with(text, &|name| vars.get(name).cloned())
    }

    fn params(text: &str) -> Vec<(String, String)> {
        Params::parse(text).unwrap().0
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
    fn rejects_malformed_strings_without_echoing_them() {
        for text in [
            "postgres://bob:s3cret@host:notaport/db",
            "postgres://bob:s3cret%zz@host/db",
            "postgres://bob:s3cret@host/db?sslmode",
            "host=db s3cret",
            "host=db password='s3cret",
            "postgres:/bob:s3cret@host/db",
        ] {
            let err = Target::parse(text).unwrap_err();
            assert!(!format!("{err:#}").contains("s3cret"), "{text}: {err:#}");
        }
    }

    #[test]
    fn reads_urls_as_libpq_does() {
        assert_eq!(
            params(
                "postgresql://al%40ce:p%40ss@db1:5433,[::1]:5434,db3/my%20db\
                 ?sslmode=verify-full&application_name=x"
            ),
            pairs(&[
                ("user", "al@ce"),
                ("password", "p@ss"),
                ("host", "db1,::1,db3"),
                ("port", "5433,5434,"),
                ("dbname", "my db"),
                ("sslmode", "verify-full"),
                ("application_name", "x"),
            ])
        );
        // A password with an unencoded `@`; no port means none, so PGPORT can fill it.
        assert_eq!(
            params("postgres://bob:a@b@db/app"),
            pairs(&[
                ("user", "bob"),
                ("password", "a@b"),
                ("host", "db"),
                ("dbname", "app")
            ])
        );
        assert_eq!(params("postgres://"), pairs(&[]));
        assert_eq!(
            params("postgres:///app?host=%2Fvar%2Frun%2Fpostgresql"),
            pairs(&[("dbname", "app"), ("host", "/var/run/postgresql")])
        );
    }

    #[test]
    fn reads_key_value_strings_with_libpq_quoting() {
        assert_eq!(
            params(r"host = db1 password='it\'s a \\ secret' dbname=app\ x user=''"),
            pairs(&[
                ("host", "db1"),
                ("password", r"it's a \ secret"),
                ("dbname", "app x"),
            ])
        );
        // The last value wins.
        assert_eq!(params("port=1 port=2"), pairs(&[("port", "2")]));
        // What postgres::Config is handed parses back to the same values.
        let tricky = Params(pairs(&[("password", r"a'b\c d"), ("dbname", "x")]));
        let config = postgres::Config::from_str(&tricky.to_conninfo()).unwrap();
        assert_eq!(config.get_password(), Some(&br"a'b\c d"[..]));
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

    #[test]
    fn defaults_to_pgcopy_settings_and_the_password_file() {
        let t = parse_env("host=db user=u", &[("HOME", "/home/u")]).unwrap();
        assert_eq!(t.config.get_application_name(), Some("pgcopy"));
        assert_eq!(t.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(t.config.get_dbname(), Some("u"));
        assert_eq!(t.passfile, Some(PathBuf::from("/home/u/.pgpass")));
        let t = parse_env(
            "host=db user=u",
            &[("HOME", "/home/u"), ("PGPASSFILE", "/etc/pgcopy/pass")],
        )
        .unwrap();
        assert_eq!(t.passfile, Some(PathBuf::from("/etc/pgcopy/pass")));
        let t = parse_env("host=db user=u passfile=/x", &[("HOME", "/home/u")]).unwrap();
        assert_eq!(t.passfile, Some(PathBuf::from("/x")));
        let t = parse_env("host=db", &[]).unwrap();
        assert!(t.config.get_user().is_some(), "the operating-system user");
    }

    #[test]
    fn takes_sslmode_out_of_the_string_for_libpq_modes_the_driver_lacks() {
        let t = parse_env("host=db user=u sslmode=allow", &[]).unwrap();
        assert_eq!(t.config.get_ssl_mode(), WireMode::Prefer);
        let t = parse_env("postgres://u@db/x?sslmode=require", &[]).unwrap();
        assert_eq!(t.config.get_ssl_mode(), WireMode::Require);
        let t = parse_env("postgres://u@db/x", &[("PGSSLMODE", "disable")]).unwrap();
        assert_eq!(t.config.get_ssl_mode(), WireMode::Disable);
        let t = parse_env("postgres://u@db/x", &[]).unwrap();
        assert_eq!(t.config.get_ssl_mode(), WireMode::Prefer);
        let err = parse_env(
            "host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
            &[],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
        // No TLS over a unix-domain socket, as in libpq.
        let t = parse_env("host=/run/pg user=u", &[("PGSSLMODE", "require")]).unwrap();
        assert_eq!(t.config.get_ssl_mode(), WireMode::Disable);
    }
}
