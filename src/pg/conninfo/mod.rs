//! Connection strings read as libpq reads them: a `postgres://` URL or a `key=value` string
//! (read into keywords and values by `params`), the `PG*` environment variables for what it
//! leaves out, then libpq's defaults, resolved into the driver's configuration, the TLS
//! settings and the password file to read. Connecting with the result is `target`'s
//! business. Values may be secrets: errors here never quote the string.

mod params;

use crate::pg::tls::{self, Tls};
use anyhow::{anyhow, Context, Result};
use params::Params;
use postgres::config::{Host, SslMode as WireMode};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// libpq's environment variables, and the keyword each one stands for when the connection
/// string leaves that keyword out.
pub(crate) const ENVIRONMENT: &[(&str, &str)] = &[
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

/// A connection string resolved: what connecting needs, before anything is connected.
pub(crate) struct Conninfo {
    /// The driver's configuration, with libpq's and pgcopy's defaults filled in.
    pub(crate) config: postgres::Config,
    pub(crate) tls: Tls,
    /// The password file to read at the first connection, when no password was given.
    pub(crate) passfile: Option<PathBuf>,
}

impl Conninfo {
    /// Reads a `postgres://` URL or a libpq `key=value` string the way libpq does: the `PG*`
    /// environment variables fill what it leaves out (the string always wins), then libpq's
    /// defaults (the local socket directory or localhost, port 5432, the operating-system
    /// user, a database named after the user). Adds `application_name=pgcopy` unless one is
    /// set, and a connect timeout.
    pub(crate) fn parse(text: &str) -> Result<Conninfo> {
        Conninfo::parse_with(text, &|name| std::env::var(name).ok())
    }

    /// `parse` with the environment given, for tests.
    pub(crate) fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Conninfo> {
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
        Ok(Conninfo {
            config,
            tls,
            passfile,
        })
    }
}

/// Never shows the password.
impl fmt::Debug for Conninfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conninfo")
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("tls", &self.tls)
            .field("passfile", &self.passfile)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Parses with exactly these environment variables (and no HOME, so no password file).
    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Conninfo> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Conninfo::parse_with(text, &|name| vars.get(name).cloned())
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
            let err = Conninfo::parse(text).unwrap_err();
            assert!(!format!("{err:#}").contains("s3cret"), "{text}: {err:#}");
        }
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
