//! One lane: a reader–writer pair's state, which the main thread watches, and what a
//! reader tells its writer.

use crate::transfer::read::Read;
use crate::transfer::schedule::Job;
use crate::transfer::sessions::Cancels;
use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// No table in flight on a lane.
pub(super) const IDLE: usize = usize::MAX;

/// What a reader tells its writer.
pub(super) enum Msg {
    /// The next table to write.
    Begin(Job),
    Chunk(Vec<u8>),
    /// The table's stream ended: what the source sent, or why it stopped.
    End(Result<Read>),
}

/// One reader–writer pair; its counters let the main thread show what is in flight.
pub(crate) struct Lane {
    /// The plan index of the table being written, or `IDLE`.
    pub(crate) current: AtomicUsize,
    /// The ticket of a try whose writer failed: its reader stops reading.
    pub(super) abandon: AtomicUsize,
    /// Cancel handles for the lane's two connections, used when the user interrupts.
    pub(super) cancel: Mutex<Cancels>,
}

impl Lane {
    /// Whether a table is in flight on it.
    pub(crate) fn busy(&self) -> bool {
        self.current.load(Ordering::Relaxed) != IDLE
    }
}
