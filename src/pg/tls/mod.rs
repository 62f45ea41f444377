//! TLS as libpq does it: `sslmode`, `sslrootcert`, `sslcert` and `sslkey` turned into the one
//! connector type every connection uses (rustls with the ring provider, so pgcopy stays one
//! binary that needs no OpenSSL, only libc).
//!
//! `postgres::Config` only knows `disable`, `prefer` and `require`, and does no certificate
//! checks of its own: what libpq's `verify-ca` and `verify-full` add is the verifier of the
//! rustls configuration built here.

use anyhow::{bail, Result};
use postgres::config::SslMode as WireMode;
use rustls::{CertificateError, ClientConfig};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

mod config;

use config::client_config;

/// libpq's `sslmode`, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!(
                "invalid sslmode {other:?}: use disable, allow, prefer, require, verify-ca or \
                 verify-full"
            ),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The TLS settings of a connection string (or of `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
/// `PGSSLKEY`), as given.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) mode: Option<String>,
    pub(crate) root_cert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    /// The home directory, for libpq's default root certificate `~/.postgresql/root.crt`.
    pub(crate) home: Option<PathBuf>,
}

/// What the server's certificate is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the CAs the operating system trusts.
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::File(path) => write!(f, "sslrootcert {}", path.display()),
            Roots::System => f.write_str("the system's CA certificates (sslrootcert=system)"),
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Check {
    /// Nothing: the connection is encrypted but the server is not authenticated.
    Nothing,
    /// The chain up to a trusted CA, not the host name (`verify-ca`, or `require` with a root
    /// certificate).
    Chain(Roots),
    /// The chain and the host name (`verify-full`).
    Full(Roots),
}

/// A connection's TLS, ready to connect with.
#[derive(Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    check: Check,
    connector: MakeRustlsConnect,
    /// The same configuration, for the readers' own connections (`wire`).
    config: Arc<ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Resolves the options as libpq does:
    /// - `disable`: no TLS. `prefer`: TLS when the server offers it, `allow`: only when the
    ///   server refuses plain connections (see `Target::connect`); the certificate unchecked.
    /// - `require`: TLS or no connection; the certificate is not checked unless there is a
    ///   root certificate (`sslrootcert`, or `~/.postgresql/root.crt` exists), and then it is
    ///   checked as `verify-ca` does (libpq documents this).
    /// - `verify-ca`: the certificate must chain to a trusted CA; `verify-full`: and name the
    ///   host. The CAs are `sslrootcert`, else `~/.postgresql/root.crt`.
    /// - `sslrootcert=system` makes the default `verify-full`, and forbids weaker modes.
    pub(crate) fn new(options: &Options) -> Result<Tls> {
        let default_root = options
            .home
            .as_ref()
            .map(|home| home.join(".postgresql").join("root.crt"));
        let given_roots = match options.root_cert.as_deref() {
            None => None,
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
        };
        let mode = match options.mode.as_deref() {
            Some(text) => text.parse()?,
            None if given_roots == Some(Roots::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if given_roots == Some(Roots::System) && mode != SslMode::VerifyFull {
            bail!(
                "sslmode={mode} may not be used with sslrootcert=system, which trusts every CA \
                 the system knows: use sslmode=verify-full"
            );
        }
        let roots = || -> Result<Roots> {
            match (&given_roots, &default_root) {
                (Some(roots), _) => Ok(roots.clone()),
                (None, Some(path)) if path.exists() => Ok(Roots::File(path.clone())),
                _ => bail!(
                    "sslmode={mode} checks the server's certificate and needs the CA \
                     certificate that signed it: set sslrootcert=/path/to/ca.pem (or \
                     PGSSLROOTCERT), or put it in {}",
                    default_root
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.postgresql/root.crt".into())
                ),
            }
        };
        let check = match mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Check::Nothing,
            SslMode::Require => match roots() {
                Ok(roots) => Check::Chain(roots),
                Err(_) => Check::Nothing,
            },
            SslMode::VerifyCa => Check::Chain(roots()?),
            SslMode::VerifyFull => Check::Full(roots()?),
        };
        let client_cert = match (&options.cert, &options.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
            (Some(_), None) => bail!("sslcert needs sslkey: the client certificate's key"),
            (None, Some(_)) => bail!("sslkey needs sslcert: the client certificate"),
        };
        let config = client_config(&check, client_cert)?;
        Ok(Tls {
            mode,
            check,
            connector: MakeRustlsConnect::new(config.clone()),
            config: Arc::new(config),
        })
    }

    /// The mode as the connection string (or `PGSSLMODE`) gave it, `prefer` by default.
    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }

    /// What `postgres::Config` is told: whether to ask the server for TLS, and whether to
    /// give up without it. The certificate checks are the connector's.
    pub(crate) fn wire_mode(&self) -> WireMode {
        match self.mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Allow | SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }

    /// The connector for `postgres::Config::connect` and the pools.
    pub(crate) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// The rustls configuration behind the connector.
    pub(crate) fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Where the trusted CA certificates come from, when the server's certificate is checked.
    pub(crate) fn roots(&self) -> Option<String> {
        match &self.check {
            Check::Nothing => None,
            Check::Chain(roots) | Check::Full(roots) => Some(roots.to_string()),
        }
    }
}

/// The connector for cancel requests. It checks no certificate: a cancel request carries only
/// the backend's process id and cancel key, never a credential (libpq before PostgreSQL 17
/// sends it without TLS at all), and the tokens of source and destination, whose CAs may
/// differ, are cancelled together.
pub(crate) fn cancel_connector() -> MakeRustlsConnect {
    // Building a configuration that checks nothing and sends no certificate cannot fail.
    match client_config(&Check::Nothing, None) {
        Ok(config) => MakeRustlsConnect::new(config),
        Err(err) => unreachable!("a TLS configuration without certificates failed: {err:#}"),
    }
}

/// A handshake failure said so an operator knows what to change, or `None` when `err` is not
/// one pgcopy knows more about than rustls says.
pub(crate) fn explain_handshake_error(err: &rustls::Error, tls: &Tls) -> Option<String> {
    let cert = match err {
        rustls::Error::InvalidCertificate(cert) => cert,
        rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            return Some(
                "the server offers no TLS version pgcopy speaks (TLS 1.2 or 1.3; see the \
                 server's ssl_min_protocol_version and ssl_max_protocol_version)"
                    .into(),
            )
        }
        _ => return None,
    };
    let roots = tls.roots().unwrap_or_else(|| "the trusted CAs".into());
    Some(match cert {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by a CA in {roots} (sslmode={})",
            tls.mode
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the server's certificate does not name the host connected to ({cert}); \
                 sslmode=verify-full checks the host name, verify-ca does not"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the server's certificate has expired ({cert})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the server's certificate is not valid yet ({cert})")
        }
        other => format!("the server's certificate was refused: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: Option<&str>, root_cert: Option<&str>, home: Option<&Path>) -> Options {
        Options {
            mode: mode.map(str::to_string),
            root_cert: root_cert.map(str::to_string),
            home: home.map(Path::to_path_buf),
            ..Options::default()
        }
    }

    #[test]
    fn maps_libpq_modes_to_what_the_driver_asks_for() {
        for (mode, wire) in [
            ("disable", WireMode::Disable),
            ("allow", WireMode::Prefer),
            ("prefer", WireMode::Prefer),
            ("require", WireMode::Require),
        ] {
            let tls = Tls::new(&options(Some(mode), None, None)).unwrap();
            assert_eq!(tls.wire_mode(), wire, "{mode}");
            assert_eq!(tls.check, Check::Nothing, "{mode}");
        }
        let tls = Tls::new(&options(None, None, None)).unwrap();
        assert_eq!(tls.mode(), SslMode::Prefer);
        let err = Tls::new(&options(Some("verify"), None, None)).unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn verify_modes_without_a_root_certificate_name_sslrootcert() {
        let home = std::env::temp_dir().join(format!("pgcopy-tls-home-{}", std::process::id()));
        for mode in ["verify-ca", "verify-full"] {
            let err = Tls::new(&options(Some(mode), None, Some(&home)))
                .err()
                .unwrap_or_else(|| panic!("{mode} without a root certificate connected"));
            let text = format!("{err:#}");
            assert!(text.contains("sslrootcert"), "{text}");
            assert!(text.contains(".postgresql/root.crt"), "{text}");
        }
        let err = Tls::new(&options(
            Some("verify-full"),
            Some("/nonexistent/ca.pem"),
            None,
        ))
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn system_roots_demand_verify_full() {
        let err = Tls::new(&options(Some("require"), Some("system"), None))
            .err()
            .unwrap();
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let err = Tls::new(&Options {
            cert: Some("/tmp/client.crt".into()),
            ..Options::default()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("sslkey"), "{err}");
    }
}
