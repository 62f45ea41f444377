//! A lane's two sessions, kept alive across tables: a lane that loses its session (a
//! terminated backend, a restart) takes a new one from the pool, and tells the other lanes,
//! whose idle sessions to the same server may be gone too without knowing it yet; and the
//! handles that stop what a session is doing when the user interrupts.

use crate::pg::error::{self, Kind};
use crate::pg::pool::{ReaderSessions, Sessions};
use crate::pg::wire;
use anyhow::Result;
use postgres::{CancelToken, Client};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Sessions lost so far, to the source (`SOURCE`) and to the destination (`DEST`).
pub(crate) type Losses = [AtomicUsize; 2];

/// A lane's cancel handles, by side.
pub(crate) type Cancels = [Option<Cancel>; 2];

/// How to stop what a lane's connection is doing, from the main thread.
pub(crate) enum Cancel {
    /// A reader's session: its socket is shut, which ends the read at once.
    Socket(wire::Interrupter),
    /// A writer's session: the server is asked to cancel the statement.
    Query(CancelToken),
}

/// The source side of a lane (the reader's connection), and the destination side.
pub(crate) const SOURCE: usize = 0;
pub(crate) const DEST: usize = 1;

/// How long a lane waits for a session it suspects to answer before replacing it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a lane needs of a connection to keep it alive across tables.
pub(crate) trait LaneConnection: r2d2::ManageConnection {
    /// Whether the session is known to be gone, without asking the server.
    fn closed(conn: &Self::Connection) -> bool;
    /// Whether the server answers on it.
    fn valid(conn: &mut Self::Connection) -> bool;
    /// How to stop what it is doing from another thread.
    fn cancel(conn: &Self::Connection) -> Option<Cancel>;
}

impl LaneConnection for ReaderSessions {
    fn closed(conn: &wire::Connection) -> bool {
        conn.is_broken()
    }

    fn valid(conn: &mut wire::Connection) -> bool {
        conn.is_valid(CHECK_TIMEOUT).is_ok()
    }

    fn cancel(conn: &wire::Connection) -> Option<Cancel> {
        conn.interrupter().ok().map(Cancel::Socket)
    }
}

impl LaneConnection for Sessions {
    fn closed(conn: &Client) -> bool {
        conn.is_closed()
    }

    fn valid(conn: &mut Client) -> bool {
        conn.is_valid(CHECK_TIMEOUT).is_ok()
    }

    fn cancel(conn: &Client) -> Option<Cancel> {
        Some(Cancel::Query(conn.cancel_token()))
    }
}

/// One side's session of a lane, kept alive across tables.
pub(crate) struct Session<'p, M: LaneConnection> {
    /// `SOURCE` or `DEST`: the slot of its cancel handle and of its loss count.
    side: usize,
    pool: &'p r2d2::Pool<M>,
    pub(crate) client: r2d2::PooledConnection<M>,
    /// The last try on this session failed: it may be dead without looking closed.
    suspect: bool,
    /// The side's loss count when this session was last known to be alive.
    seen: usize,
}

impl<'p, M: LaneConnection> Session<'p, M> {
    /// A session taken from `pool` for `side`, alive as of `losses` sessions lost.
    pub(crate) fn new(
        side: usize,
        pool: &'p r2d2::Pool<M>,
        client: r2d2::PooledConnection<M>,
        losses: &Losses,
    ) -> Self {
        Session {
            side,
            pool,
            client,
            suspect: false,
            seen: losses[side].load(Ordering::SeqCst),
        }
    }

    /// Makes sure the session is alive before the next table. After its own failure it is
    /// replaced; after another lane lost a session to the same server, it is asked first. A
    /// dead session is replaced from the pool; if the server is not back yet, the table fails
    /// on the old one and is retried later, so this never waits long.
    pub(crate) fn renew(&mut self, losses: &Losses, cancel: &Mutex<Cancels>) {
        let losses = losses[self.side].load(Ordering::SeqCst);
        let dead = self.suspect
            || M::closed(&self.client)
            || (losses != self.seen && !M::valid(&mut self.client));
        if !dead {
            self.seen = losses;
            return;
        }
        log::debug!(
            "lane session to the {} is gone; taking a new one",
            if self.side == SOURCE {
                "source"
            } else {
                "destination"
            }
        );
        if let Ok(fresh) = self.pool.get() {
            if let Ok(mut cancels) = cancel.lock() {
                cancels[self.side] = M::cancel(&fresh);
            }
            self.client = fresh;
            self.suspect = false;
            self.seen = losses;
        }
    }

    /// Whether the session still answers after a statement on it failed. One that does not
    /// counts as lost (the other lanes check theirs), and `renew` replaces it.
    pub(crate) fn answers(&mut self, losses: &Losses) -> bool {
        if !M::closed(&self.client) && M::valid(&mut self.client) {
            return true;
        }
        self.suspect = true;
        losses[self.side].fetch_add(1, Ordering::SeqCst);
        false
    }

    /// Records how a try on this session went; `ours` is false when the failure came from
    /// the other side.
    pub(crate) fn ended<T>(&mut self, losses: &Losses, result: &Result<T>, ours: bool) {
        self.suspect = result.is_err();
        if let Err(err) = result {
            if ours && error::kind(err) == Kind::Lost {
                losses[self.side].fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Stops what every session in `cancels` is doing. Best effort: a connection that is already
/// gone has nothing to cancel.
pub(crate) fn cancel_all<'a>(cancels: impl Iterator<Item = &'a Mutex<Cancels>>) {
    for cancel in cancels {
        if let Ok(handles) = cancel.lock() {
            for handle in handles.iter().flatten() {
                match handle {
                    Cancel::Socket(socket) => socket.interrupt(),
                    Cancel::Query(token) => {
                        let _ = token.cancel_query(crate::pg::tls::cancel_connector());
                    }
                }
            }
        }
    }
}
