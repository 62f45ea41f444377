//! The readers' connections to the source: the PostgreSQL wire protocol spoken directly on
//! the socket, for the one job the postgres crate does slowly, streaming `COPY … TO STDOUT`.
//! The server sends one message per row, and the postgres crate enters its runtime for each
//! one, which cost more client CPU than everything else pgcopy does; here a reader takes the
//! rows out of large socket reads in a plain loop. Connecting follows the same
//! `postgres::Config` as every other connection (hosts, TLS, password, SCRAM), so a reader
//! reaches the server the main connection reached (see `connect`).
//!
//! The messages are `postgres-protocol`'s: its frontend encoders, and its backend header and
//! parser. Only a `CopyData` body is taken straight from the buffer, in pieces as it arrives,
//! so a row is never copied on its way to the writer. Nothing here knows `Target`: it opens
//! sessions from a `postgres::Config` and a rustls configuration it is given. The same client
//! opens the logical replication sessions (`Session::Replication`), whose commands return
//! rows the postgres crate cannot read (`query_rows`), and streams their changes
//! (`copy_both`); the follower applies those changes with it too, many statements per round
//! trip (`pipeline`).

mod connect;
mod copy_both;
mod pipeline;

pub(crate) use connect::{NoPassword, NoTls, Session};
pub(crate) use copy_both::Received;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorResponseBody, Header, Message};
use postgres_protocol::message::frontend;
use rustls::{ClientConnection, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Socket reads go into a buffer this big: one read takes many rows.
const READ_BUFFER: usize = 256 * 1024;

/// The largest message other than `CopyData` accepted (an error, a notice, a status).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long a failed write waits for the reason the server closed the connection.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(100);

/// An error the server sent: what `error::describe` shows and `error::kind` classifies.
#[derive(Debug, Clone)]
pub(crate) struct ServerError {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
    pub(crate) hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an `ErrorResponse`.
    fn parse(body: &ErrorResponseBody) -> ServerError {
        let mut error = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        let mut fields = body.fields();
        // A malformed field list keeps what was read before it.
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
        }
        error
    }

    /// The SQLSTATE, such as `57P01`.
    pub(crate) fn code(&self) -> &str {
        &self.code
    }
}

/// On one line, as `error::db_error` shows the postgres crate's server errors.
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
pub(crate) struct Interrupter(Socket);

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Interrupter {
    pub(crate) fn interrupt(&self) {
        // Best effort: a socket already closed has nothing to interrupt.
        let _ = match &self.0 {
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// One session on the source.
pub(crate) struct Connection {
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
    /// The socket under `stream`, for what is set on the socket itself (shutdown, timeouts).
    socket: Socket,
    /// Messages queued to be written together (see `pipeline`).
    outgoing: BytesMut,
}

impl Connection {
    /// Runs statements whose results are not wanted, such as `BEGIN …; SET TRANSACTION
    /// SNAPSHOT …`.
    pub(crate) fn execute(&mut self, sql: &str) -> Result<()> {
        self.run(sql, None::<fn(&[u8]) -> Result<()>>, None)
    }

    /// Runs a statement or replication command (`IDENTIFY_SYSTEM`) and returns the rows of
    /// its results, every value as the server's text (NULL as `None`).
    pub(crate) fn query_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        self.run(sql, None::<fn(&[u8]) -> Result<()>>, Some(&mut rows))?;
        Ok(rows)
    }

    /// Runs `COPY … TO STDOUT` and hands the stream to `sink` in pieces as they arrive, not
    /// cut at rows. If `sink` fails, the session is left broken (the server is still
    /// sending) and its error returned.
    pub(crate) fn copy_out(
        &mut self,
        sql: &str,
        sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.run(sql, Some(sink), None)
    }

    /// Sends `sql` and reads until the server is ready for the next query, handing COPY data
    /// to `sink` and result rows to `rows`. The first error the server reported is returned
    /// once it is ready; other results, notices and the COPY's own framing messages are
    /// skipped.
    fn run<F: FnMut(&[u8]) -> Result<()>>(
        &mut self,
        sql: &str,
        mut sink: Option<F>,
        mut rows: Option<&mut Vec<Vec<Option<String>>>>,
    ) -> Result<()> {
        self.query(sql)?;
        let mut error = None;
        loop {
            let header = match self.header() {
                Ok(header) => header,
                Err(err) => return Err(self.fail(error, err)),
            };
            if let (b'd', Some(sink)) = (header.tag(), sink.as_mut()) {
                // CopyData: its body goes to the sink as it is, in as many pieces as it comes.
                let mut left = header.len() as usize - 4;
                self.start += 5;
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
                continue;
            }
            let message = match self.message() {
                Ok(message) => message,
                Err(err) => return Err(self.fail(error, err)),
            };
            match message {
                Message::ErrorResponse(body) => error = Some(ServerError::parse(&body)),
                Message::DataRow(body) if rows.is_some() => {
                    let buffer = body.buffer();
                    let values: Vec<Option<String>> = body
                        .ranges()
                        .map(|range| {
                            Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()))
                        })
                        .collect()?;
                    if let Some(rows) = rows.as_mut() {
                        rows.push(values);
                    }
                }
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    break;
                }
                Message::CopyInResponse(_) => {
                    self.broken = true;
                    bail!("the server expected COPY data from pgcopy");
                }
                Message::CopyOutResponse(_) | Message::CopyData(_) if sink.is_none() => {
                    self.broken = true;
                    bail!("the statement started a COPY, which `execute` does not run");
                }
                // CopyOutResponse, CopyDone, CommandComplete, notices, other statements'
                // results.
                _ => {}
            }
        }
        match error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Ends a transaction left open or failed by an earlier error, so the next one starts
    /// clean.
    pub(crate) fn reset(&mut self) -> Result<()> {
        if self.status != b'I' {
            self.execute("ROLLBACK")?;
        }
        Ok(())
    }

    /// Whether the session failed in a way that leaves it unusable.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the server answers within `timeout`, as `postgres::Client::is_valid` asks. A
    /// session that does not is left broken.
    pub(crate) fn is_valid(&mut self, timeout: Duration) -> Result<()> {
        self.read_timeout(Some(timeout))?;
        let result = self.reset().and_then(|_| self.execute(""));
        self.read_timeout(None)?;
        result
    }

    fn read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.socket {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// A handle that ends this session's socket from another thread.
    pub(crate) fn interrupter(&self) -> Result<Interrupter> {
        Ok(Interrupter(match &self.socket {
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
        let mut message = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(sql, &mut message)?;
        self.write_all(&message)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let result = self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush());
        if let Err(err) = result {
            self.broken = true;
            // A server that ended the session said why before it closed the socket; a
            // Unix-domain socket refuses the write before that is read.
            return Err(match self.last_words() {
                Some(why) => anyhow::Error::new(why),
                None => err.into(),
            });
        }
        Ok(())
    }

    /// The error the server sent before the connection went, if it is there to read.
    fn last_words(&mut self) -> Option<ServerError> {
        self.read_timeout(Some(LAST_WORDS_WAIT)).ok()?;
        loop {
            match self.message() {
                Ok(Message::ErrorResponse(body)) => return Some(ServerError::parse(&body)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The header of the next message, which stays in the buffer.
    fn header(&mut self) -> Result<Header> {
        self.fill_to(5)?;
        let header = Header::parse(&self.buf[self.start..self.end])?
            .context("the server sent a truncated message")?;
        Ok(header)
    }

    /// The next whole message, parsed. Not for `CopyData`, which `run` streams: the other
    /// messages are few and small, so each is copied out of the buffer to be parsed.
    fn message(&mut self) -> Result<Message> {
        let len = self.header()?.len() as usize;
        if len > MAX_MESSAGE {
            self.broken = true;
            bail!("the server sent a message of {len} bytes");
        }
        self.fill_to(1 + len)?;
        let mut frame = BytesMut::from(&self.buf[self.start..self.start + 1 + len]);
        self.start += 1 + len;
        Message::parse(&mut frame)?.context("the server sent a truncated message")
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
            let mut message = BytesMut::new();
            frontend::terminate(&mut message);
            let _ = self.stream.write_all(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_error_response() {
        let body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0Dwhy\0\0";
        let mut frame = BytesMut::from(&b"E"[..]);
        frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        frame.extend_from_slice(body);
        let Some(Message::ErrorResponse(body)) = Message::parse(&mut frame).unwrap() else {
            panic!("not an error response");
        };
        let error = ServerError::parse(&body);
        assert_eq!(error.code(), "57P01");
        assert_eq!(error.severity, "FATAL");
        assert_eq!(
            error.to_string(),
            "terminating connection due to administrator command (DETAIL: why)"
        );
    }
}
