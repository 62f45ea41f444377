//! The worker pools: r2d2 managers that open every session through `Target`, so a pooled
//! session is set up, falls back from TLS and explains its failure as the first one did;
//! one pool of the postgres crate's sessions (writers, verify) and one of the readers' own.

use crate::pg::target::Target;
use crate::pg::wire;
use postgres::Client;
use std::fmt;
use std::time::Duration;

/// How long a lane waits for a session from a pool before its table fails (and maybe is
/// retried): a server that went away should not hold the copy up.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the pool waits for a reader's session it hands out to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sessions of the postgres crate.
pub(crate) struct Sessions(Target);

/// The readers' sessions (see `wire`).
pub(crate) struct ReaderSessions(Target);

pub(crate) type Pool = r2d2::Pool<Sessions>;

pub(crate) type ReaderPool = r2d2::Pool<ReaderSessions>;

/// A session taken from a `Pool`; it goes back when dropped.
pub(crate) type PooledClient = r2d2::PooledConnection<Sessions>;

impl Target {
    /// A pool of `size` sessions for the worker threads. Sessions open when a worker first
    /// asks.
    pub(crate) fn pool(&self, size: usize) -> Pool {
        builder(size).build_unchecked(Sessions(self.clone()))
    }

    /// A pool of `size` readers' sessions.
    pub(crate) fn reader_pool(&self, size: usize) -> ReaderPool {
        builder(size).build_unchecked(ReaderSessions(self.clone()))
    }
}

fn builder<M: r2d2::ManageConnection>(size: usize) -> r2d2::Builder<M> {
    r2d2::Pool::builder()
        .max_size(size as u32)
        .min_idle(Some(0))
        .connection_timeout(POOL_TIMEOUT)
}

/// A connection error as r2d2 needs it: a `std::error::Error` (anyhow's is not one), with
/// the whole explanation.
#[derive(Debug)]
pub(crate) struct ConnectError(String);

impl ConnectError {
    fn new(err: anyhow::Error) -> ConnectError {
        ConnectError(format!("{err:#}"))
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl r2d2::ManageConnection for Sessions {
    type Connection = Client;
    type Error = ConnectError;

    fn connect(&self) -> Result<Client, ConnectError> {
        self.0.open_client().map_err(ConnectError::new)
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), ConnectError> {
        client
            .simple_query("")
            .map(drop)
            .map_err(|err| ConnectError::new(err.into()))
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }
}

impl r2d2::ManageConnection for ReaderSessions {
    type Connection = wire::Connection;
    type Error = ConnectError;

    fn connect(&self) -> Result<wire::Connection, ConnectError> {
        self.0.connect_reader().map_err(ConnectError::new)
    }

    fn is_valid(&self, conn: &mut wire::Connection) -> Result<(), ConnectError> {
        conn.is_valid(CHECK_TIMEOUT).map_err(ConnectError::new)
    }

    fn has_broken(&self, conn: &mut wire::Connection) -> bool {
        conn.is_broken()
    }
}
