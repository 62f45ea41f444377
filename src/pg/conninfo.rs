//! Connection strings read as libpq reads them: a `postgres://` URL or a `key=value` string,
//! the `PG*` environment variables for what it leaves out, then libpq's defaults, resolved
//! into the driver's configuration, the TLS settings and the password file to read.
//! Connecting with the result is `conn`'s business. Values may be secrets: errors here never
//! quote the string.

use crate::pg::tls::{self, Tls};
use anyhow::{anyhow, bail, Context, Result};
use postgres::config::{Host, SslMode as WireMode};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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

    fn params(text: &str) -> Vec<(String, String)> {
        Params::parse(text).unwrap().0
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
