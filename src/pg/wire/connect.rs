//! Opening a reader's session: the socket (TCP or Unix-domain, hosts tried in order as libpq
//! does), TLS when the mode asks for it, the startup message and the password exchange
//! (cleartext, MD5, SCRAM-SHA-256), on `postgres-protocol`'s messages. The failures a caller
//! explains to the user are typed: `NoTls`, `NoPassword`, the server's `ServerError`, and
//! the `io::Error` or `rustls::Error` of the socket.

use super::{Connection, ServerError, Socket, Stream, READ_BUFFER};
use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres::config::{ChannelBinding, Host, SslMode, TargetSessionAttrs};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use sha2::{Digest, Sha256, Sha384, Sha512};
use socket2::{SockRef, TcpKeepalive};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_cert::der::oid::db::rfc5912;
use x509_cert::der::Decode;
use x509_cert::Certificate;

/// The server asked for a password and none was given.
#[derive(Debug)]
pub(crate) struct NoPassword;

impl fmt::Display for NoPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server asks for a password and none was given")
    }
}

impl std::error::Error for NoPassword {}

/// The server answered the TLS request with no, and the mode requires TLS.
#[derive(Debug)]
pub(crate) struct NoTls;

impl fmt::Display for NoTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server does not support TLS")
    }
}

impl std::error::Error for NoTls {}

/// What kind of session to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// An ordinary backend.
    Normal,
    /// A WAL sender for logical replication of the database.
    Replication,
}

impl Connection {
    /// Connects as `config` says, with `tls` when the server is asked for TLS; tries the
    /// hosts in order, as libpq does. A `Session::Replication` one is a WAL sender of the
    /// database (`replication=database`), which takes replication commands and SQL.
    pub(crate) fn connect(
        config: &postgres::Config,
        tls: &Arc<ClientConfig>,
        kind: Session,
    ) -> Result<Connection> {
        let hosts = config.get_hosts();
        let ports = config.get_ports();
        let hostaddrs = config.get_hostaddrs();
        let count = hosts.len().max(hostaddrs.len()).max(1);
        let mut last = None;
        for i in 0..count {
            let port = match ports {
                [] => 5432,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(5432),
            };
            let host = hosts.get(i);
            let addr = hostaddrs.get(i).copied();
            match Connection::connect_one(config, tls, host, addr, port, kind) {
                Ok(conn) => return Ok(conn),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no host to connect to")))
    }

    fn connect_one(
        config: &postgres::Config,
        tls: &Arc<ClientConfig>,
        host: Option<&Host>,
        hostaddr: Option<IpAddr>,
        port: u16,
        kind: Session,
    ) -> Result<Connection> {
        let (stream, socket) = match (host, hostaddr) {
            (Some(Host::Unix(dir)), None) => {
                let path = socket_path(dir, port);
                let socket = UnixStream::connect(&path)
                    .with_context(|| format!("connecting to {}", path.display()))?;
                let handle = Socket::Unix(socket.try_clone()?);
                (Stream::Unix(socket), handle)
            }
            (host, hostaddr) => {
                let name = match host {
                    Some(Host::Tcp(name)) => name.clone(),
                    _ => hostaddr.map(|a| a.to_string()).unwrap_or_default(),
                };
                let socket = tcp_connect(config, &name, hostaddr, port)?;
                let handle = Socket::Tcp(socket.try_clone()?);
                (tls_if_wanted(config, tls, &name, socket)?, handle)
            }
        };
        let mut conn = Connection {
            stream,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            status: b'I',
            broken: false,
            socket,
            outgoing: BytesMut::new(),
        };
        conn.startup(config, kind)?;
        conn.check_session_attrs(config.get_target_session_attrs())?;
        Ok(conn)
    }

    /// `target_session_attrs=read-write` or `read-only`: a server whose sessions are not so
    /// fails this host, and the next one is tried, as the postgres crate does for the main
    /// connection, so a reader ends up on the server the snapshot came from.
    fn check_session_attrs(&mut self, wanted: TargetSessionAttrs) -> Result<()> {
        let read_only = match wanted {
            TargetSessionAttrs::ReadWrite => "off",
            TargetSessionAttrs::ReadOnly => "on",
            _ => return Ok(()),
        };
        self.execute(&format!(
            "DO $$ BEGIN
                 IF current_setting('transaction_read_only') <> '{read_only}' THEN
                     RAISE EXCEPTION 'transaction_read_only is not {read_only} here';
                 END IF;
             END $$"
        ))
        .context("checking target_session_attrs")
    }

    /// Sends the startup message, answers the server's password request and waits until the
    /// server is ready for queries.
    fn startup(&mut self, config: &postgres::Config, kind: Session) -> Result<()> {
        let user = config.get_user().unwrap_or_default();
        let mut params: Vec<(&str, &str)> = vec![("client_encoding", "UTF8"), ("user", user)];
        if kind == Session::Replication {
            params.push(("replication", "database"));
        }
        if let Some(dbname) = config.get_dbname() {
            params.push(("database", dbname));
        }
        if let Some(options) = config.get_options() {
            params.push(("options", options));
        }
        if let Some(name) = config.get_application_name() {
            params.push(("application_name", name));
        }
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out)?;
        self.write_all(&out)?;
        let password = || config.get_password().ok_or(NoPassword);
        let setting = config.get_channel_binding();
        let mut end_point = match (&self.stream, setting) {
            (_, ChannelBinding::Disable) => None,
            (Stream::Tls(tls), _) => server_end_point(&tls.conn),
            _ => None,
        };
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let mut out = BytesMut::new();
            match self.message()? {
                Message::AuthenticationOk if scram.is_none() => {
                    can_skip_channel_binding(setting)?;
                }
                Message::AuthenticationCleartextPassword => {
                    can_skip_channel_binding(setting)?;
                    frontend::password_message(password()?, &mut out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    can_skip_channel_binding(setting)?;
                    let hash = md5_hash(user.as_bytes(), password()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                Message::AuthenticationSasl(body) => {
                    let password = password()?;
                    let offered: Vec<String> =
                        body.mechanisms().map(|m| Ok(m.to_string())).collect()?;
                    let (mechanism, binding) = choose_scram(&offered, end_point.take(), setting)?;
                    let state = sasl::ScramSha256::new(password, binding.into_sasl());
                    frontend::sasl_initial_response(mechanism, state.message(), &mut out)?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().context("SASL data before SASL began")?;
                    state.update(body.data()).context("SCRAM authentication")?;
                    frontend::sasl_response(state.message(), &mut out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram.as_mut().context("SASL end before SASL began")?;
                    state.finish(body.data()).context("SCRAM authentication")?;
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationGssContinue(_)
                | Message::AuthenticationSspi => {
                    bail!("the server asks for an authentication method pgcopy does not support (GSS, SSPI or Kerberos)")
                }
                Message::ErrorResponse(body) => return Err(ServerError::parse(&body).into()),
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    return Ok(());
                }
                // Backend key data, parameter status, notices: nothing to act on.
                _ => {}
            }
            if !out.is_empty() {
                self.write_all(&out)?;
            }
        }
    }
}

/// Fails when `channel_binding=require` and the server authenticates without SCRAM channel
/// binding, as the postgres crate does.
fn can_skip_channel_binding(setting: ChannelBinding) -> Result<()> {
    if setting == ChannelBinding::Require {
        bail!("the server did not use channel binding, which channel_binding=require requires");
    }
    Ok(())
}

/// What the client says about channel binding in its first SCRAM message.
#[derive(Debug, PartialEq, Eq)]
enum Binding {
    /// `n`: the client does not do it.
    Unsupported,
    /// `y`: the client could, but the server did not offer it.
    Unrequested,
    /// `p=tls-server-end-point`, with the hash of the server's certificate.
    EndPoint(Vec<u8>),
}

impl Binding {
    fn into_sasl(self) -> sasl::ChannelBinding {
        match self {
            Binding::Unsupported => sasl::ChannelBinding::unsupported(),
            Binding::Unrequested => sasl::ChannelBinding::unrequested(),
            Binding::EndPoint(hash) => sasl::ChannelBinding::tls_server_end_point(hash),
        }
    }
}

/// The SCRAM mechanism and channel binding to use, as the postgres crate chooses them: with
/// the TLS session's end point (`None` without TLS, or with `channel_binding=disable`) binding
/// whenever the server offers `SCRAM-SHA-256-PLUS`.
fn choose_scram(
    offered: &[String],
    end_point: Option<Vec<u8>>,
    setting: ChannelBinding,
) -> Result<(&'static str, Binding)> {
    let has = |name: &str| offered.iter().any(|m| m == name);
    let choice = match (has(sasl::SCRAM_SHA_256_PLUS), end_point) {
        (true, Some(hash)) => (sasl::SCRAM_SHA_256_PLUS, Binding::EndPoint(hash)),
        (_, end_point) if has(sasl::SCRAM_SHA_256) => {
            let binding = if end_point.is_some() {
                Binding::Unrequested
            } else {
                Binding::Unsupported
            };
            (sasl::SCRAM_SHA_256, binding)
        }
        _ => bail!("the server offers no SASL mechanism pgcopy supports"),
    };
    if choice.0 != sasl::SCRAM_SHA_256_PLUS {
        can_skip_channel_binding(setting)?;
    }
    Ok(choice)
}

/// The `tls-server-end-point` channel binding of a TLS session (RFC 5929): the server
/// certificate hashed with its signature's hash function, SHA-256 in place of MD5 and SHA-1.
/// `None` for signatures without one (Ed25519).
fn server_end_point(tls: &ClientConnection) -> Option<Vec<u8>> {
    let der = tls.peer_certificates()?.first()?;
    let certificate = Certificate::from_der(der).ok()?;
    let hash = match certificate.signature_algorithm.oid {
        rfc5912::MD_5_WITH_RSA_ENCRYPTION
        | rfc5912::ID_SHA_1
        | rfc5912::SHA_1_WITH_RSA_ENCRYPTION
        | rfc5912::ID_SHA_256
        | rfc5912::SHA_256_WITH_RSA_ENCRYPTION
        | rfc5912::ECDSA_WITH_SHA_256 => Sha256::digest(der).to_vec(),
        rfc5912::ID_SHA_384
        | rfc5912::SHA_384_WITH_RSA_ENCRYPTION
        | rfc5912::ECDSA_WITH_SHA_384 => Sha384::digest(der).to_vec(),
        rfc5912::ID_SHA_512
        | rfc5912::SHA_512_WITH_RSA_ENCRYPTION
        | rfc5912::ECDSA_WITH_SHA_512 => Sha512::digest(der).to_vec(),
        _ => return None,
    };
    Some(hash)
}

/// A TCP connection to `name` (or `hostaddr`) with the socket options the postgres crate
/// sets: no Nagle delay, keepalives and the TCP user timeout as `config` says, so a reader
/// whose server vanished from the network finds out as a writer would.
fn tcp_connect(
    config: &postgres::Config,
    name: &str,
    hostaddr: Option<IpAddr>,
    port: u16,
) -> Result<TcpStream> {
    let timeout = config.get_connect_timeout().copied();
    let addrs: Vec<SocketAddr> = match hostaddr {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => (name, port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {name}"))?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        let result = match timeout {
            Some(timeout) => TcpStream::connect_timeout(&addr, timeout),
            None => TcpStream::connect(addr),
        };
        match result {
            Ok(socket) => {
                socket.set_nodelay(true)?;
                let options = SockRef::from(&socket);
                if config.get_keepalives() {
                    let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    if let Some(interval) = config.get_keepalives_interval() {
                        keepalive = keepalive.with_interval(interval);
                    }
                    if let Some(retries) = config.get_keepalives_retries() {
                        keepalive = keepalive.with_retries(retries);
                    }
                    options.set_tcp_keepalive(&keepalive)?;
                }
                if let Some(timeout) = config.get_tcp_user_timeout() {
                    options.set_tcp_user_timeout(Some(*timeout))?;
                }
                return Ok(socket);
            }
            Err(err) => last = Some(err),
        }
    }
    let err = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"));
    Err(anyhow::Error::new(err).context(format!("connecting to {name}:{port}")))
}

/// Asks the server for TLS unless `sslmode=disable`, and sets it up when the server agrees;
/// without it, goes on in plain text only where the mode allows.
fn tls_if_wanted(
    config: &postgres::Config,
    tls: &Arc<ClientConfig>,
    name: &str,
    mut socket: TcpStream,
) -> Result<Stream> {
    let mode = config.get_ssl_mode();
    if mode == SslMode::Disable {
        return Ok(Stream::Tcp(socket));
    }
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    socket.write_all(&request)?;
    let mut answer = [0u8; 1];
    socket.read_exact(&mut answer)?;
    match answer[0] {
        b'S' => {}
        b'N' if mode == SslMode::Require => return Err(NoTls.into()),
        b'N' => return Ok(Stream::Tcp(socket)),
        other => bail!("unexpected answer {other} to the TLS request"),
    }
    let server = ServerName::try_from(name.to_string())
        .map_err(|_| anyhow!("{name:?} is not a valid TLS server name"))?;
    let mut session = ClientConnection::new(tls.clone(), server)?;
    while session.is_handshaking() {
        session
            .complete_io(&mut socket)
            .context("TLS handshake failed")?;
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(session, socket))))
}

/// Where a Unix-domain socket of `dir` for `port` is, as libpq names it.
fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_the_channel_whenever_the_server_offers_it() {
        let names =
            |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
        let plus = &names(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let plain = &names(&["SCRAM-SHA-256"]);
        let hash = || Some(vec![1, 2, 3]);
        let prefer = ChannelBinding::Prefer;
        assert_eq!(
            choose_scram(plus, hash(), prefer).unwrap(),
            ("SCRAM-SHA-256-PLUS", Binding::EndPoint(vec![1, 2, 3]))
        );
        assert_eq!(
            choose_scram(plus, None, prefer).unwrap(),
            ("SCRAM-SHA-256", Binding::Unsupported)
        );
        assert_eq!(
            choose_scram(plain, hash(), prefer).unwrap(),
            ("SCRAM-SHA-256", Binding::Unrequested)
        );
        assert_eq!(
            choose_scram(plain, None, prefer).unwrap(),
            ("SCRAM-SHA-256", Binding::Unsupported)
        );
        let require = ChannelBinding::Require;
        assert!(choose_scram(plus, hash(), require).is_ok());
        assert!(choose_scram(plus, None, require).is_err());
        assert!(choose_scram(plain, hash(), require).is_err());
        assert!(choose_scram(&names(&["OTHER"]), hash(), prefer).is_err());
        assert!(can_skip_channel_binding(require).is_err());
        assert!(can_skip_channel_binding(ChannelBinding::Disable).is_ok());
    }

    #[test]
    fn names_sockets_as_libpq_does() {
        assert_eq!(
            socket_path(Path::new("/run/postgresql"), 5433),
            Path::new("/run/postgresql/.s.PGSQL.5433")
        );
    }
}
