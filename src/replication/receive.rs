//! The receiver: the one thread that owns the slot's replication session while following. It
//! reads the stream (`XLogData` and keepalives), decodes each change and hands it to the
//! applier through a bounded channel (a streamed transaction's changes once it commits,
//! held until then in a spool file: `spool`), and tells the source what the destination
//! has made durable (standby status updates), in time for `wal_sender_timeout` even while
//! the applier is busy and the channel full.
//!
//! What it reports as flushed is only what the applier committed: the end of the last
//! source transaction applied, or — when every transaction it handed over is applied and it
//! is not inside one — the position of the server's last keepalive, which comes after every
//! change the server sent before it. Everything before a flushed position is never sent
//! again, so a position reported too early would lose transactions after a restart.

use crate::pg::error::TryLater;
use crate::pg::wire::{self, Received};
use crate::replication::decode::{self, Lsn, Message};
use crate::replication::spool::{Replay, Spools};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{SendTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Messages handed to the applier at a time: one wake-up for many small transactions.
pub(crate) const BATCH: usize = 64;

/// How long one read waits before the receiver looks at the clock and its flags.
const WAIT: Duration = Duration::from_millis(200);

/// A status update goes at least this often, well inside the default 60 s
/// `wal_sender_timeout`; and sooner when the applied position moved.
const STATUS_EVERY: Duration = Duration::from_secs(10);
const STATUS_MOVED_EVERY: Duration = Duration::from_millis(100);

/// Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// What the receiver and the applier share.
#[derive(Default)]
pub(crate) struct Shared {
    /// The end of the last source transaction committed on the destination.
    pub(crate) applied: AtomicU64,
    /// The furthest position the server said it has sent (its keepalives).
    pub(crate) server_end: AtomicU64,
    /// The position safe to confirm, as of the receiver's last look: every transaction
    /// that ends before it is committed on the destination.
    pub(crate) confirmed: AtomicU64,
    /// Set by the applier when it is done (the cutover mark applied, or it failed): the
    /// receiver ends the stream.
    pub(crate) stop: AtomicBool,
}

/// Streams from `session` (already in CopyBoth mode) into `changes` until the applier sets
/// `stop`, the applier goes away, or the stream fails. Returns the session, back out of the
/// stream, when it ended cleanly.
pub(crate) fn receive(
    mut session: wire::Connection,
    changes: Sender<Vec<Message>>,
    shared: &Shared,
    interrupted: impl Fn() -> bool,
) -> Result<wire::Connection> {
    let mut state = Feedback {
        last_commit: shared.applied.load(Ordering::SeqCst),
        ..Feedback::default()
    };
    // Streamed transactions wait for their commit in files of their own, on this side.
    let mut spools = Spools::new(std::env::temp_dir());
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // What was read goes over before the socket is waited on, and in batches meanwhile.
        if batch.len() >= BATCH || (!batch.is_empty() && !session.buffered()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if !hand_over(&mut session, &changes, full, shared, &mut state)? {
                // The applier is gone; it says why.
                return Ok(session);
            }
        }
        if shared.stop.load(Ordering::SeqCst) || interrupted() {
            send_status(&mut session, shared, &mut state)?;
            session
                .end_copy_both()
                .context("ending the replication stream")?;
            return Ok(session);
        }
        match session
            .receive(wait_for(shared, &state))
            .context("reading the replication stream")?
        {
            Received::Data(body) => match body.first() {
                Some(b'w') => {
                    let payload = xlog_data(&body)?;
                    let messages = if spools.streaming() || decode::streams(payload) {
                        spools.take(payload)?
                    } else {
                        Some(Replay::one(decode::parse(payload)?))
                    };
                    if let Some(mut messages) = messages {
                        while let Some(message) = messages.next_message()? {
                            state.note(&message);
                            batch.push(message);
                            if batch.len() >= BATCH {
                                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                                if !hand_over(&mut session, &changes, full, shared, &mut state)? {
                                    return Ok(session);
                                }
                            }
                        }
                    }
                }
                Some(b'k') => {
                    let (end, reply) = keepalive(&body)?;
                    shared.server_end.fetch_max(end, Ordering::SeqCst);
                    if reply {
                        send_status(&mut session, shared, &mut state)?;
                    }
                }
                other => bail!(
                    "the replication stream sent an unknown message {:?}",
                    other.map(|b| *b as char)
                ),
            },
            Received::Nothing => {}
            // The walsender of a server shutting down ends the stream once it has sent
            // everything: the source is going away, and is worth another try.
            Received::Ended => {
                return Err(anyhow::Error::new(TryLater(
                    "the source ended the replication stream".into(),
                )))
            }
        }
        shared
            .confirmed
            .fetch_max(state.flush(shared), Ordering::SeqCst);
        send_status_when_due(&mut session, shared, &mut state)?;
    }
}

/// What the receiver knows to say in its status updates.
#[derive(Default)]
struct Feedback {
    /// Inside a transaction: between its `Begin` and its `Commit`.
    in_transaction: bool,
    /// The end of the last transaction handed over.
    last_commit: Lsn,
    last_sent: Option<Instant>,
    last_flush: Lsn,
}

impl Feedback {
    fn note(&mut self, message: &Message) {
        match message {
            Message::Begin { .. } => self.in_transaction = true,
            Message::Commit { end_lsn, .. } => {
                self.in_transaction = false;
                self.last_commit = *end_lsn;
            }
            _ => {}
        }
    }

    /// The position that is safe to confirm (see the module's comment).
    fn flush(&self, shared: &Shared) -> Lsn {
        let applied = shared.applied.load(Ordering::SeqCst);
        if !self.in_transaction && applied >= self.last_commit {
            applied.max(shared.server_end.load(Ordering::SeqCst))
        } else {
            applied
        }
    }
}

/// Sends a batch of messages to the applier, answering the server while the channel is
/// full. False when the applier has gone.
fn hand_over(
    session: &mut wire::Connection,
    changes: &Sender<Vec<Message>>,
    mut message: Vec<Message>,
    shared: &Shared,
    state: &mut Feedback,
) -> Result<bool> {
    loop {
        match changes.send_timeout(message, WAIT) {
            Ok(()) => return Ok(true),
            Err(SendTimeoutError::Disconnected(_)) => return Ok(false),
            Err(SendTimeoutError::Timeout(back)) => {
                message = back;
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                send_status_when_due(session, shared, state)?;
            }
        }
    }
}

/// How long the next read may wait: until a status update that moved is due, at most
/// `WAIT`, so that the source hears of what was applied without a read's delay.
fn wait_for(shared: &Shared, state: &Feedback) -> Duration {
    match state.last_sent {
        Some(sent) if state.flush(shared) != state.last_flush => STATUS_MOVED_EVERY
            .saturating_sub(sent.elapsed())
            .clamp(Duration::from_millis(1), WAIT),
        _ => WAIT,
    }
}

fn send_status_when_due(
    session: &mut wire::Connection,
    shared: &Shared,
    state: &mut Feedback,
) -> Result<()> {
    let since = state.last_sent.map(|t| t.elapsed());
    let moved = state.flush(shared) != state.last_flush;
    let due = match since {
        None => true,
        Some(since) => since >= STATUS_EVERY || (moved && since >= STATUS_MOVED_EVERY),
    };
    if due {
        send_status(session, shared, state)?;
    }
    Ok(())
}

/// A standby status update: written, flushed and applied are all what the destination has
/// committed (pgcopy keeps nothing of its own it could count as written).
fn send_status(
    session: &mut wire::Connection,
    shared: &Shared,
    state: &mut Feedback,
) -> Result<()> {
    let flush = state.flush(shared);
    session
        .send_copy_data(&status_update(flush, now_micros()))
        .context("answering the source")?;
    state.last_sent = Some(Instant::now());
    state.last_flush = flush;
    Ok(())
}

/// The time in microseconds since PostgreSQL's epoch, as the server writes commit times.
pub(crate) fn now_micros() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    unix - POSTGRES_EPOCH_MICROS
}

/// `r`, written, flushed, applied, the client's time, and no request for a reply.
fn status_update(flush: Lsn, now: i64) -> Vec<u8> {
    let mut body = Vec::with_capacity(34);
    body.push(b'r');
    for _ in 0..3 {
        body.extend_from_slice(&flush.to_be_bytes());
    }
    body.extend_from_slice(&now.to_be_bytes());
    body.push(0);
    body
}

/// `w`, the data's start, the server's end of WAL, its time, then one pgoutput message,
/// which this returns.
fn xlog_data(body: &[u8]) -> Result<&[u8]> {
    if body.len() < 25 {
        bail!("the replication stream sent a truncated XLogData message");
    }
    Ok(&body[25..])
}

/// `k`, the server's end of WAL, its time, and whether it asks for a reply at once.
fn keepalive(body: &[u8]) -> Result<(Lsn, bool)> {
    if body.len() < 18 {
        bail!("the replication stream sent a truncated keepalive");
    }
    let mut end = [0; 8];
    end.copy_from_slice(&body[1..9]);
    Ok((u64::from_be_bytes(end), body[17] != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_standby_status_update() {
        let body = status_update(0x1_0000_0002, 5);
        assert_eq!(body.len(), 34);
        assert_eq!(body[0], b'r');
        assert_eq!(&body[1..9], &0x1_0000_0002u64.to_be_bytes());
        assert_eq!(&body[17..25], &0x1_0000_0002u64.to_be_bytes());
        assert_eq!(&body[25..33], &5i64.to_be_bytes());
        assert_eq!(body[33], 0);
    }

    #[test]
    fn reads_a_keepalive() {
        let mut body = vec![b'k'];
        body.extend_from_slice(&42u64.to_be_bytes());
        body.extend_from_slice(&7i64.to_be_bytes());
        body.push(1);
        assert_eq!(keepalive(&body).unwrap(), (42, true));
        assert!(keepalive(&body[..10]).is_err());
    }

    #[test]
    fn confirms_the_servers_position_only_when_everything_handed_over_is_applied() {
        let shared = Shared::default();
        shared.server_end.store(900, Ordering::SeqCst);
        let mut state = Feedback::default();
        state.note(&Message::Begin {
            final_lsn: 100,
            commit_time: 0,
            xid: 1,
        });
        // Inside a transaction: only what was applied.
        assert_eq!(state.flush(&shared), 0);
        state.note(&Message::Commit {
            flags: 0,
            commit_lsn: 100,
            end_lsn: 120,
            commit_time: 0,
        });
        // Handed over, not yet applied.
        assert_eq!(state.flush(&shared), 0);
        shared.applied.store(120, Ordering::SeqCst);
        assert_eq!(state.flush(&shared), 900);
    }
}
