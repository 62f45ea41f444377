//! Whether a source transaction is visible in a chunk's snapshot: the snapshot as
//! `pg_current_snapshot()` gives it (64-bit transaction ids), and the 32-bit id pgoutput's
//! `BEGIN` carries widened to it. What the applier decides each change of a chunked table
//! by: a change the chunk's snapshot sees is in the chunk already.

use anyhow::{bail, Context, Result};

/// A snapshot: `xmin:xmax:xip,…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    xmin: u64,
    xmax: u64,
    /// In progress when it was taken, sorted.
    xip: Vec<u64>,
}

impl Snapshot {
    /// Reads `pg_current_snapshot()`'s text.
    pub(crate) fn parse(text: &str) -> Result<Snapshot> {
        let mut parts = text.trim().splitn(3, ':');
        let (Some(xmin), Some(xmax), Some(xip)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("not a snapshot: {text:?}");
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .with_context(|| format!("not a transaction id in a snapshot: {s:?}"))
        };
        let mut xip = xip
            .split(',')
            .filter(|s| !s.is_empty())
            .map(number)
            .collect::<Result<Vec<u64>>>()?;
        xip.sort_unstable();
        let snapshot = Snapshot {
            xmin: number(xmin)?,
            xmax: number(xmax)?,
            xip,
        };
        if snapshot.xmin > snapshot.xmax {
            bail!("not a snapshot (xmin after xmax): {text:?}");
        }
        Ok(snapshot)
    }

    /// The 64-bit id of `xid`, a transaction near this snapshot: the one within 2^31 of
    /// its xmax, as PostgreSQL's own comparisons take a 32-bit id.
    fn widen(&self, xid: u32) -> u64 {
        let epoch = self.xmax >> 32;
        let candidate = (epoch << 32) | u64::from(xid);
        const HALF: u64 = 1 << 31;
        if candidate > self.xmax.saturating_add(HALF) && candidate >= 1 << 32 {
            candidate - (1 << 32)
        } else if candidate.saturating_add(HALF) < self.xmax {
            candidate + (1 << 32)
        } else {
            candidate
        }
    }

    /// Whether this snapshot sees every transaction `earlier` sees: none `earlier` saw
    /// committed is still running in it.
    pub(crate) fn covers(&self, earlier: &Snapshot) -> bool {
        self.xmax >= earlier.xmax
            && self
                .xip
                .iter()
                .all(|x| *x >= earlier.xmax || earlier.xip.binary_search(x).is_ok())
    }

    /// Whether the transaction `xid`, which committed (its changes are in the stream), had
    /// committed when the snapshot was taken.
    pub(crate) fn sees(&self, xid: u32) -> bool {
        let xid = self.widen(xid);
        xid < self.xmin || (xid < self.xmax && self.xip.binary_search(&xid).is_err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_what_committed_before_it() {
        let s = Snapshot::parse("100:110:103,105").unwrap();
        assert!(s.sees(99));
        assert!(s.sees(100), "below xmax and not running: committed");
        assert!(s.sees(104));
        assert!(!s.sees(103), "running when it was taken");
        assert!(!s.sees(105));
        assert!(!s.sees(110), "xmax and after: not yet started");
        assert!(!s.sees(200));
        assert!(Snapshot::parse("5:5:").unwrap().sees(4));
        assert!(Snapshot::parse("nonsense").is_err());
        assert!(Snapshot::parse("9:5:").is_err());
    }

    #[test]
    fn covers_what_an_earlier_snapshot_saw() {
        let earlier = Snapshot::parse("100:110:103,105").unwrap();
        assert!(Snapshot::parse("103:120:103,111").unwrap().covers(&earlier));
        assert!(Snapshot::parse("120:120:").unwrap().covers(&earlier));
        // 104 had committed for the earlier one, and is still running here: a transaction
        // whose commit was written but that has not left the running set yet.
        assert!(!Snapshot::parse("104:120:104").unwrap().covers(&earlier));
        assert!(!Snapshot::parse("100:109:").unwrap().covers(&earlier));
    }

    #[test]
    fn widens_across_the_epoch() {
        // Epoch 1, xmax just past the wrap: a 32-bit id near 2^32 is the epoch before.
        let base = 1u64 << 32;
        let s = Snapshot::parse(&format!("{}:{}:{}", base - 10, base + 10, base + 2)).unwrap();
        assert!(s.sees(u32::MAX - 20), "epoch 0's, long committed");
        assert!(s.sees(u32::MAX - 5), "epoch 0's, between xmin and xmax");
        assert!(s.sees(1), "epoch 1's, below xmax");
        assert!(!s.sees(2), "running");
        assert!(!s.sees(11), "after xmax");
    }
}
