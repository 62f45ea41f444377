//! The replication stream of a WAL sender session: `START_REPLICATION` turns the session into
//! CopyBoth mode, in which the server sends `CopyData` messages (WAL data, keepalives) and
//! pgcopy sends its own (standby status updates) on the same socket, until either side ends
//! it. Reads wait at most a given time, so the one thread that owns the session can answer
//! keepalives while it waits for data.

use super::{Connection, ServerError};
use anyhow::Result;
use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use std::io;
use std::time::Duration;

/// What one read of the stream gave.
pub(crate) enum Received {
    /// The body of a `CopyData` message.
    Data(Vec<u8>),
    /// Nothing arrived within the wait.
    Nothing,
    /// The server ended the stream (`CopyDone`), as it does when it shuts down cleanly.
    Ended,
}

impl Connection {
    /// Sends `START_REPLICATION …` and waits until the server starts streaming.
    pub(crate) fn start_copy_both(&mut self, command: &str) -> Result<()> {
        self.query(command)?;
        let mut error = None;
        loop {
            // CopyBothResponse is not among postgres-protocol's messages: read by its tag.
            if self.header()?.tag() == b'W' {
                let len = self.header()?.len() as usize;
                self.fill_to(1 + len)?;
                self.start += 1 + len;
                return Ok(());
            }
            match self.message()? {
                Message::ErrorResponse(body) => error = Some(ServerError::parse(&body)),
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    return Err(match error {
                        Some(error) => error.into(),
                        None => anyhow::anyhow!("the server did not start streaming"),
                    });
                }
                _ => {}
            }
        }
    }

    /// The next message of the stream, waiting at most `wait` for one to begin arriving.
    pub(crate) fn receive(&mut self, wait: Duration) -> Result<Received> {
        if self.end == self.start && !self.wait_readable(wait)? {
            return Ok(Received::Nothing);
        }
        let header = self.header()?;
        if header.tag() == b'd' {
            let len = header.len() as usize - 4;
            self.fill_to(5 + len)?;
            let body = self.buf[self.start + 5..self.start + 5 + len].to_vec();
            self.start += 5 + len;
            return Ok(Received::Data(body));
        }
        match self.message()? {
            Message::CopyDone => Ok(Received::Ended),
            Message::ErrorResponse(body) => {
                self.broken = true;
                Err(ServerError::parse(&body).into())
            }
            // Notices and parameter changes can come between stream messages.
            _ => Ok(Received::Nothing),
        }
    }

    /// Whether bytes of the stream are read and not taken yet: the next `receive` does not
    /// wait for the socket.
    pub(crate) fn buffered(&self) -> bool {
        self.end > self.start
    }

    /// Sends one `CopyData` message of the stream.
    pub(crate) fn send_copy_data(&mut self, body: &[u8]) -> Result<()> {
        let mut message = BytesMut::with_capacity(body.len() + 5);
        frontend::CopyData::new(body)?.write(&mut message);
        self.write_all(&message)
    }

    /// Ends pgcopy's side of the stream and reads until the server is ready again,
    /// skipping the rest of what it was sending.
    pub(crate) fn end_copy_both(&mut self) -> Result<()> {
        let mut message = BytesMut::new();
        frontend::copy_done(&mut message);
        self.write_all(&message)?;
        let mut error = None;
        loop {
            let header = self.header()?;
            if header.tag() == b'd' {
                let len = header.len() as usize;
                self.fill_to(1 + len)?;
                self.start += 1 + len;
                continue;
            }
            match self.message()? {
                Message::ErrorResponse(body) => error = Some(ServerError::parse(&body)),
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    break;
                }
                _ => {}
            }
        }
        match error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Waits at most `wait` for bytes to read; true when some arrived (and are buffered).
    fn wait_readable(&mut self, wait: Duration) -> Result<bool> {
        self.start = 0;
        self.end = 0;
        self.read_timeout(Some(wait))?;
        let read = loop {
            match io::Read::read(&mut self.stream, &mut self.buf[self.end..]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        self.read_timeout(None)?;
        match read {
            Ok(0) => {
                // A restart or a failover of the server: a lost session, as on every other.
                self.broken = true;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
                .into())
            }
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(err) => {
                self.broken = true;
                Err(err.into())
            }
        }
    }
}
