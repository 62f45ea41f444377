//! How far behind the source a follower is, as the source's slot and the applier say: for
//! the progress line and the log.

use crate::replication::apply::Applied;
use crate::replication::receive;
use crate::replication::slot;
use crate::units::format_bytes;
use postgres::Client;

/// What the source and the applier say of how far behind the follower is.
pub(super) struct Lag {
    /// The slot, as the source sees it (when it could be asked).
    pub(super) slot: Option<slot::Follower>,
    /// Seconds since the last applied transaction committed on the source.
    pub(super) last_commit_ago: Option<f64>,
}

impl Lag {
    pub(super) fn now(source: &mut Client, name: &str, applied: &Applied) -> Lag {
        Lag {
            slot: slot::find(source, name).ok().flatten(),
            last_commit_ago: (applied.last_commit_time != 0).then(|| {
                ((receive::now_micros() - applied.last_commit_time) as f64 / 1e6).max(0.0)
            }),
        }
    }

    /// How far behind, in seconds, as the source measured it last; 0 when it has nothing
    /// to measure because the follower confirmed all there is.
    pub(super) fn seconds(&self) -> Option<f64> {
        let slot = self.slot.as_ref()?;
        slot.lag.or((slot.behind == 0).then_some(0.0))
    }

    /// `, 1.2 MiB behind the source (lag 0.4s), the slot holds 3.4 MiB of WAL, the last
    /// transaction applied committed there 0.8s ago`, or what of it is known.
    pub(super) fn sentence(&self) -> String {
        let mut text = String::new();
        if let Some(f) = &self.slot {
            text.push_str(&format!(
                ", {} behind the source{}, the slot holds {} of WAL",
                format_bytes(f.behind),
                f.lag.map(|s| format!(" (lag {s:.1}s)")).unwrap_or_default(),
                format_bytes(f.held)
            ));
        }
        if let Some(ago) = self.last_commit_ago {
            text.push_str(&format!(
                ", the last transaction applied committed there {ago:.1}s ago"
            ));
        }
        text
    }

    /// The same in few words, for the status line on a terminal.
    pub(super) fn short(&self) -> String {
        match &self.slot {
            Some(f) => format!(
                " · {} behind{} · slot holds {}",
                format_bytes(f.behind),
                f.lag.map(|s| format!(", lag {s:.1}s")).unwrap_or_default(),
                format_bytes(f.held)
            ),
            None => String::new(),
        }
    }
}
