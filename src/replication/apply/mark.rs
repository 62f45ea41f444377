//! The cutover mark: `cutover` ends following by a message it writes into the source's WAL
//! for this follower's slot, or, where the source's pgoutput does not carry it (before 14),
//! by notifying the destination of where the mark is.

use super::state::Applier;
use crate::replication::decode::Lsn;
use crate::replication::slot::parse_lsn;
use anyhow::Result;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The prefix of the messages `cutover` writes into the source's WAL.
pub(crate) const MARK_PREFIX: &str = "pgcopy";

impl Applier<'_> {
    /// The other way `cutover` ends following, for sources whose pgoutput does not carry
    /// its mark (before 14): it notifies the destination of where the mark is in the WAL,
    /// and once the follower may confirm that position — every transaction that ends
    /// before it committed here, and the server said it has sent everything before it —
    /// the follower is done. `cutover` runs when the application has stopped writing, so
    /// nothing the application committed comes after the mark.
    pub(super) fn reached_notified_end(&mut self) -> Result<Option<Lsn>> {
        let mut notifications = self.catalog.notifications();
        // `iter` only hands out what the driver already read; waiting reads the socket.
        let mut pending = notifications.timeout_iter(Duration::from_millis(1));
        while let Some(notification) = pending.next()? {
            if notification.channel() == self.slot {
                let at = parse_lsn(notification.payload())?;
                self.notified_end = Some(self.notified_end.map_or(at, |e| e.max(at)));
            }
        }
        let confirmed = self.shared.confirmed.load(Ordering::SeqCst);
        Ok(self
            .notified_end
            .filter(|end| !self.group.open && confirmed >= *end))
    }
}

/// Whether a cutover mark's content is for the follower of `slot`: other followers of the
/// same source see it too.
pub(super) fn is_mark_for(content: &[u8], slot: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(content)
        .ok()
        .and_then(|mark| mark.get("cutover")?.as_str().map(|s| s == slot))
        .unwrap_or(false)
}

/// The content of the cutover mark for the follower of `slot`.
pub(crate) fn mark(slot: &str) -> String {
    serde_json::json!({ "cutover": slot }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_own_cutover_mark() {
        let content = mark("pgcopy_follow_1");
        assert!(is_mark_for(content.as_bytes(), "pgcopy_follow_1"));
        assert!(!is_mark_for(content.as_bytes(), "pgcopy_follow_2"));
        assert!(!is_mark_for(b"not json", "pgcopy_follow_1"));
    }
}
