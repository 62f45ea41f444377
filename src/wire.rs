//! The readers' connections to the source: the PostgreSQL wire protocol spoken directly on
//! the socket, for the one job the postgres crate does slowly, streaming `COPY … TO STDOUT`.
//! The server sends one message per row, and the postgres crate enters its runtime for each
//! one, which cost more client CPU than everything else pgcopy does; here a reader takes the
//! rows out of large socket reads in a plain loop. Connecting follows the same
//! `postgres::Config` as every other connection (hosts, TLS, password, SCRAM), so a reader
//! reaches the server the main connection reached. `Manager` pools them with r2d2.

use crate::conn::Target;
use anyhow::{anyhow, bail, Context, Result};
use postgres::config::{Host, SslMode};
use postgres_protocol::authentication::{md5_hash, sasl};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Socket reads go into a buffer this big: one read takes many rows.
const READ_BUFFER: usize = 256 * 1024;

/// The largest message other than `CopyData` accepted (an error, a notice, a status).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The protocol version 3.0, and the codes of the requests sent in its place.
const PROTOCOL_3: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;

/// An error the server sent: what `conn::describe` shows and `retry` classifies.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an `ErrorResponse` body.
    fn parse(mut body: &[u8]) -> ServerError {
        let mut error = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        while let Some((&kind, rest)) = body.split_first() {
            if kind == 0 {
                break;
            }
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let value = String::from_utf8_lossy(&rest[..end]).into_owned();
            match kind {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
            body = rest.get(end + 1..).unwrap_or_default();
        }
        error
    }

    /// The SQLSTATE, such as `57P01`.
    pub fn code(&self) -> &str {
        &self.code
    }
}

/// On one line, as `conn::db_error` shows the postgres crate's server errors.
impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (DETAIL: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (HINT: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// The socket under the connection, TLS or not.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Ends a connection's socket from another thread: a reader blocked on it wakes up with an
/// error at once, and the server ends its session when it next writes.
pub struct Interrupter(Socket);

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Interrupter {
    pub fn interrupt(&self) {
        // Best effort: a socket already closed has nothing to interrupt.
        let _ = match &self.0 {
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// One session on the source.
pub struct Connection {
    stream: Stream,
    /// Received bytes not yet taken are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The transaction status of the last `ReadyForQuery`: `I` idle, `T` in a transaction,
    /// `E` in a failed one.
    status: u8,
    /// The session can no longer be used: it failed in the middle of a message exchange.
    broken: bool,
    interrupter: Socket,
}

impl Connection {
    /// Connects as `config` says, with `tls` when the server is asked for TLS; tries the
    /// hosts in order, as libpq does.
    pub fn connect(config: &postgres::Config, tls: &Arc<ClientConfig>) -> Result<Connection> {
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
            match Connection::connect_one(config, tls, host, addr, port) {
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
    ) -> Result<Connection> {
        let timeout = config.get_connect_timeout().copied();
        let (stream, interrupter) = match (host, hostaddr) {
            (Some(Host::Unix(dir)), None) => {
                let path = socket_path(dir, port);
                let socket = UnixStream::connect(&path)
                    .with_context(|| format!("connecting to {}", path.display()))?;
                let interrupter = Socket::Unix(socket.try_clone()?);
                (Stream::Unix(socket), interrupter)
            }
            (host, hostaddr) => {
                let name = match host {
                    Some(Host::Tcp(name)) => name.clone(),
                    _ => hostaddr.map(|a| a.to_string()).unwrap_or_default(),
                };
                let socket = tcp_connect(&name, hostaddr, port, timeout)?;
                let interrupter = Socket::Tcp(socket.try_clone()?);
                (tls_if_wanted(config, tls, &name, socket)?, interrupter)
            }
        };
        let mut conn = Connection {
            stream,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            status: b'I',
            broken: false,
            interrupter,
        };
        conn.startup(config)?;
        Ok(conn)
    }

    /// Sends the startup message, answers the server's password request and waits until the
    /// server is ready for queries.
    fn startup(&mut self, config: &postgres::Config) -> Result<()> {
        let user = config.get_user().unwrap_or_default();
        let mut params: Vec<(&str, &str)> = vec![("client_encoding", "UTF8"), ("user", user)];
        if let Some(dbname) = config.get_dbname() {
            params.push(("database", dbname));
        }
        if let Some(options) = config.get_options() {
            params.push(("options", options));
        }
        if let Some(name) = config.get_application_name() {
            params.push(("application_name", name));
        }
        let mut body = PROTOCOL_3.to_be_bytes().to_vec();
        for (key, value) in params {
            push_cstr(&mut body, key.as_bytes());
            push_cstr(&mut body, value.as_bytes());
        }
        body.push(0);
        self.send_untagged(&body)?;
        let password = config.get_password();
        let mut scram = None;
        loop {
            let (tag, body) = self.message()?;
            match tag {
                b'R' => {
                    let (kind, data) = split_i32(body)?;
                    match kind {
                        0 => {}
                        3 => {
                            let password = password.context("password missing")?;
                            let mut reply = password.to_vec();
                            reply.push(0);
                            self.send(b'p', &reply)?;
                        }
                        5 => {
                            let password = password.context("password missing")?;
                            let salt: [u8; 4] = data
                                .get(..4)
                                .and_then(|s| s.try_into().ok())
                                .context("the server's MD5 password request has no salt")?;
                            let mut reply = md5_hash(user.as_bytes(), password, salt).into_bytes();
                            reply.push(0);
                            self.send(b'p', &reply)?;
                        }
                        10 => {
                            let password = password.context("password missing")?;
                            let offered = data
                                .split(|&b| b == 0)
                                .any(|m| m == sasl::SCRAM_SHA_256.as_bytes());
                            if !offered {
                                bail!("the server offers no SASL mechanism pgcopy supports");
                            }
                            // No channel binding: `n` says the client does not do it, which
                            // servers accept whether or not they offer it.
                            let state = sasl::ScramSha256::new(
                                password,
                                sasl::ChannelBinding::unsupported(),
                            );
                            let mut reply = Vec::new();
                            push_cstr(&mut reply, sasl::SCRAM_SHA_256.as_bytes());
                            reply.extend_from_slice(&(state.message().len() as i32).to_be_bytes());
                            reply.extend_from_slice(state.message());
                            self.send(b'p', &reply)?;
                            scram = Some(state);
                        }
                        11 => {
                            let state = scram.as_mut().context("SASL data before SASL began")?;
                            state.update(data).context("SCRAM authentication")?;
                            let reply = state.message().to_vec();
                            self.send(b'p', &reply)?;
                        }
                        12 => {
                            let state = scram.as_mut().context("SASL end before SASL began")?;
                            state.finish(data).context("SCRAM authentication")?;
                        }
                        other => bail!("unsupported authentication method (request {other})"),
                    }
                }
                b'E' => return Err(ServerError::parse(body).into()),
                b'Z' => {
                    self.status = body.first().copied().unwrap_or(b'I');
                    return Ok(());
                }
                // Backend key data, parameter status, notices: nothing to act on.
                _ => {}
            }
        }
    }

    /// Runs statements whose results are not wanted, such as `BEGIN …; SET TRANSACTION
    /// SNAPSHOT …`.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.query(sql)?;
        let mut error = None;
        loop {
            let (tag, body) = match self.message() {
                Ok(message) => message,
                Err(err) => return Err(self.fail(error, err)),
            };
            match tag {
                b'E' => error = Some(ServerError::parse(body)),
                b'Z' => {
                    self.status = body.first().copied().unwrap_or(b'I');
                    break;
                }
                b'G' | b'H' | b'W' => {
                    self.broken = true;
                    bail!("the statement started a COPY, which `execute` does not run");
                }
                _ => {}
            }
        }
        match error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Runs `COPY … TO STDOUT` and hands the stream to `sink` in pieces as they arrive, not
    /// cut at rows. If `sink` fails, the session is left broken (the server is still
    /// sending) and its error returned.
    pub fn copy_out(&mut self, sql: &str, mut sink: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.query(sql)?;
        let mut error = None;
        loop {
            if let Err(err) = self.fill_to(5) {
                return Err(self.fail(error, err));
            }
            let tag = self.buf[self.start];
            let len = read_len(&self.buf[self.start + 1..self.start + 5])?;
            if tag != b'd' {
                let (tag, body) = match self.message() {
                    Ok(message) => message,
                    Err(err) => return Err(self.fail(error, err)),
                };
                match tag {
                    b'E' => error = Some(ServerError::parse(body)),
                    b'Z' => {
                        self.status = body.first().copied().unwrap_or(b'I');
                        break;
                    }
                    b'G' | b'W' => {
                        self.broken = true;
                        bail!("the server expected COPY data from pgcopy");
                    }
                    // CopyOutResponse, CopyDone, CommandComplete, notices, other statements'
                    // results.
                    _ => {}
                }
                continue;
            }
            // CopyData: its body goes to the sink as it is, in as many pieces as it comes.
            self.start += 5;
            let mut left = len;
            while left > 0 {
                if self.start == self.end {
                    if let Err(err) = self.read_more() {
                        return Err(self.fail(error, err));
                    }
                }
                let take = left.min(self.end - self.start);
                if let Err(err) = sink(&self.buf[self.start..self.start + take]) {
                    self.broken = true;
                    return Err(err);
                }
                self.start += take;
                left -= take;
            }
        }
        match error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Ends a transaction left open or failed by an earlier error, so the next one starts
    /// clean.
    pub fn reset(&mut self) -> Result<()> {
        if self.status != b'I' {
            self.execute("ROLLBACK")?;
        }
        Ok(())
    }

    /// Whether the session failed in a way that leaves it unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// A handle that ends this session's socket from another thread.
    pub fn interrupter(&self) -> Result<Interrupter> {
        Ok(Interrupter(match &self.interrupter {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        }))
    }

    /// The error a failed exchange ends with: the server's, when it said why before the
    /// connection went (a terminated backend sends its reason, then closes).
    fn fail(&mut self, server: Option<ServerError>, err: anyhow::Error) -> anyhow::Error {
        self.broken = true;
        match server {
            Some(server) => anyhow::Error::new(server),
            None => err,
        }
    }

    fn query(&mut self, sql: &str) -> Result<()> {
        if self.broken {
            bail!("connection closed");
        }
        let mut body = Vec::with_capacity(sql.len() + 1);
        push_cstr(&mut body, sql.as_bytes());
        self.send(b'Q', &body)
    }

    fn send(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        let mut message = Vec::with_capacity(body.len() + 5);
        message.push(tag);
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.write_all(&message)
    }

    /// The startup message has a length but no tag.
    fn send_untagged(&mut self, body: &[u8]) -> Result<()> {
        let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(body);
        self.write_all(&message)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let result = self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush());
        if result.is_err() {
            self.broken = true;
        }
        Ok(result?)
    }

    /// The next whole message: its tag and body.
    fn message(&mut self) -> Result<(u8, &[u8])> {
        self.fill_to(5)?;
        let tag = self.buf[self.start];
        let len = read_len(&self.buf[self.start + 1..self.start + 5])?;
        if len > MAX_MESSAGE {
            self.broken = true;
            bail!("the server sent a message of {len} bytes");
        }
        self.fill_to(5 + len)?;
        let body = self.start + 5..self.start + 5 + len;
        self.start = body.end;
        Ok((tag, &self.buf[body]))
    }

    /// Reads until at least `n` bytes are buffered, growing the buffer for a message larger
    /// than it.
    fn fill_to(&mut self, n: usize) -> Result<()> {
        while self.end - self.start < n {
            if self.start + n > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if n > self.buf.len() {
                    self.buf.resize(n, 0);
                }
            }
            self.read_more()?;
        }
        Ok(())
    }

    /// One socket read into the free end of the buffer (all of it, when nothing is pending).
    fn read_more(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let read = loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        match read {
            Ok(0) => {
                self.broken = true;
                Err(anyhow::Error::new(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )))
            }
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(err) => {
                self.broken = true;
                Err(err.into())
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.broken {
            // Terminate: the server ends the session without logging an unexpected EOF.
            let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]);
        }
    }
}

fn tcp_connect(
    name: &str,
    hostaddr: Option<IpAddr>,
    port: u16,
    timeout: Option<Duration>,
) -> Result<TcpStream> {
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
    let mut request = 8i32.to_be_bytes().to_vec();
    request.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    socket.write_all(&request)?;
    let mut answer = [0u8; 1];
    socket.read_exact(&mut answer)?;
    match answer[0] {
        b'S' => {}
        b'N' if mode == SslMode::Require => bail!("server does not support TLS"),
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

fn push_cstr(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(s);
    buf.push(0);
}

/// A message's length field, which counts itself: the length of its body.
fn read_len(bytes: &[u8]) -> Result<usize> {
    let len = i32::from_be_bytes(bytes.try_into()?);
    if len < 4 {
        bail!("the server sent a malformed message (length {len})");
    }
    Ok(len as usize - 4)
}

fn split_i32(body: &[u8]) -> Result<(i32, &[u8])> {
    let (head, rest) = body
        .split_at_checked(4)
        .context("the server sent a truncated message")?;
    Ok((i32::from_be_bytes(head.try_into()?), rest))
}

/// r2d2's connection manager for readers' sessions.
pub struct Manager {
    target: Target,
}

impl Manager {
    pub fn new(target: Target) -> Manager {
        Manager { target }
    }
}

/// A connection error as r2d2 needs it: a `std::error::Error` (anyhow's is not one).
#[derive(Debug)]
pub struct ConnectError(String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = ConnectError;

    fn connect(&self) -> Result<Connection, ConnectError> {
        Connection::connect(&self.target.config(), &self.target.tls_config())
            .map_err(|err| ConnectError(format!("{err:#}")))
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), ConnectError> {
        conn.reset()
            .and_then(|_| conn.execute(""))
            .map_err(|err| ConnectError(format!("{err:#}")))
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.is_broken()
    }
}

/// Where a Unix-domain socket of `dir` for `port` is, as libpq names it.
fn socket_path(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_error_response() {
        let body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0Dwhy\0\0";
        let error = ServerError::parse(body);
        assert_eq!(error.code(), "57P01");
        assert_eq!(error.severity, "FATAL");
        assert_eq!(
            error.to_string(),
            "terminating connection due to administrator command (DETAIL: why)"
        );
    }

    #[test]
    fn message_lengths_count_themselves() {
        assert_eq!(read_len(&[0, 0, 0, 4]).unwrap(), 0);
        assert_eq!(read_len(&[0, 0, 1, 4]).unwrap(), 256);
        assert!(read_len(&[0, 0, 0, 3]).is_err());
        assert!(read_len(&[255, 255, 255, 255]).is_err());
    }

    #[test]
    fn names_sockets_as_libpq_does() {
        assert_eq!(
            socket_path(Path::new("/run/postgresql"), 5433),
            Path::new("/run/postgresql/.s.PGSQL.5433")
        );
    }
}
