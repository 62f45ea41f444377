//! A database to connect to, and the one way every session pgcopy opens gets there: the
//! target's configuration (read by `conninfo`, with the password file read at the first
//! connection), the fallback from TLS that libpq allows, setting the session up, and why a
//! connection failed, said the same way for the postgres crate's sessions and the readers'
//! own (`wire`).

use crate::pg::conninfo::Conninfo;
use crate::pg::error;
use crate::pg::pgpass;
use crate::pg::session_setup;
use crate::pg::tls::{self, SslMode, Tls};
use crate::pg::wire;
use anyhow::{bail, Context, Result};
use postgres::config::{Host, LoadBalanceHosts, SslMode as WireMode};
use postgres::error::SqlState;
use postgres::Client;
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The oldest server pgcopy supports, and tests: 13. (12 is past its end of life.)
pub(crate) const MIN_SERVER_VERSION: i32 = 130000;

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
    /// Which side of a copy it is ("the source"), for messages that must say so.
    side: Option<&'static str>,
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
            side: None,
        }
    }

    /// The same target, named as a side of a copy in the messages of a failed connection.
    pub(crate) fn with_side(mut self, side: &'static str) -> Target {
        self.side = Some(side);
        self
    }

    /// Opens a session of the postgres crate, set up (see `session_setup`), and checks that
    /// the server is one pgcopy supports.
    pub(crate) fn connect(&self) -> Result<Client> {
        let mut client = self.open_client()?;
        let version = crate::pg::server::version(&mut client)
            .with_context(|| format!("asking {self} for its version"))?;
        if version < MIN_SERVER_VERSION {
            bail!(
                "{self} runs PostgreSQL {}.{}; pgcopy needs 13 or newer (older versions are past \
                 their end of life, and untested)",
                version / 10000,
                version % 10000
            );
        }
        Ok(client)
    }

    /// Opens a session of the postgres crate, set up; what the pools hand out.
    pub(crate) fn open_client(&self) -> Result<Client> {
        let mut client = self.open(|config| {
            config.connect(self.connector()).map_err(|err| {
                let err = anyhow::Error::new(err);
                self.diagnose(err)
            })
        })?;
        session_setup::apply(&mut client)
            .with_context(|| format!("setting up a session on {self}"))?;
        Ok(client)
    }

    /// Opens a reader's session (see `wire`), set up as every other session is.
    pub(crate) fn connect_reader(&self) -> Result<wire::Connection> {
        self.connect_wire(wire::Session::Normal)
    }

    /// Opens a logical replication session of the database (a WAL sender), set up as every
    /// other session is, through the same hosts, TLS and passwords.
    pub(crate) fn connect_replication(&self) -> Result<wire::Connection> {
        self.connect_wire(wire::Session::Replication)
    }

    fn connect_wire(&self, kind: wire::Session) -> Result<wire::Connection> {
        let mut conn =
            self.open(|config| wire::Connection::connect(config, &self.tls.config(), kind))?;
        conn.execute(session_setup::SESSION_SETUP)
            .with_context(|| format!("setting up a session on {self}"))?;
        Ok(conn)
    }

    /// Connects with `connect`, either kind of session: once, and once more the other way
    /// when libpq would (see `may_switch`); a failure explained for an operator.
    fn open<C>(&self, connect: impl Fn(&postgres::Config) -> Result<C>) -> Result<C> {
        let config = self.config();
        match connect(&config) {
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
                connect(&self.config())
            }
            result => result,
        }
        .map_err(|err| {
            anyhow::Error::new(error::Explained {
                text: self.explain(&err),
                cause: err,
            })
        })
        .with_context(|| match self.side {
            Some(side) => format!("connecting to {side} ({self})"),
            None => format!("connecting to {self}"),
        })
    }

    /// The postgres crate says why a connection failed only in words where its own
    /// negotiation failed (the server refused TLS that the mode requires, a password was
    /// missing): such a failure is tried again with the readers' client, which says it
    /// with a type. Any other failure is kept as it is.
    fn diagnose(&self, err: anyhow::Error) -> anyhow::Error {
        let opaque = err.chain().all(|cause| {
            cause
                .downcast_ref::<postgres::Error>()
                .is_none_or(|pg| pg.as_db_error().is_none() && !pg.is_closed())
                && !cause.is::<std::io::Error>()
        }) && error::tls_failure(&err).is_none();
        if !opaque {
            return err;
        }
        match wire::Connection::connect(&self.config(), &self.tls.config(), wire::Session::Normal) {
            Err(typed) => typed,
            Ok(_) => err,
        }
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
    fn may_switch(&self, config: &postgres::Config, err: &anyhow::Error) -> bool {
        if !matches!(self.tls.mode(), SslMode::Prefer | SslMode::Allow) {
            return false;
        }
        let refused = error::sqlstate(err) == Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        match config.get_ssl_mode() {
            WireMode::Prefer => refused || error::tls_failure(err).is_some(),
            _ => refused && self.tls.mode() == SslMode::Allow,
        }
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

    /// Why a connection failed, said so an operator knows what to change, whichever kind of
    /// session failed.
    fn explain(&self, err: &anyhow::Error) -> String {
        let server = err.chain().find_map(|cause| {
            if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
                return pg.code().map(|code| (code.clone(), error::db_error(pg)));
            }
            let server = cause.downcast_ref::<wire::ServerError>()?;
            Some((SqlState::from_code(server.code()), server.to_string()))
        });
        if let Some((code, mut text)) = server {
            if code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && self.tls.mode() == SslMode::Disable
            {
                text.push_str(
                    " (if the server accepts this connection only over TLS, leave out \
                     sslmode=disable)",
                );
            }
            return text;
        }
        if let Some(text) =
            error::tls_failure(err).and_then(|e| tls::explain_handshake_error(e, &self.tls))
        {
            return format!("TLS handshake failed: {text}");
        }
        for cause in err.chain() {
            match cause
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind)
            {
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
            if cause.is::<wire::NoTls>() {
                return format!(
                    "the server does not support TLS, and sslmode={} requires it (enable ssl on \
                     the server, or use sslmode=prefer to connect without TLS)",
                    self.tls.mode()
                );
            }
            if cause.is::<wire::NoPassword>() {
                return format!(
                    "no password supplied: the server asks for one; give it in the connection \
                     string, in PGPASSWORD or in the password file{}",
                    match &self.passfile {
                        Some(path) => format!(" ({})", path.display()),
                        None => String::new(),
                    }
                );
            }
        }
        error::describe(err)
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
