//! What a running copy or follower has done so far, for `--metrics-listen`: atomics the
//! copy's main thread and the follower set as they go (never the lanes' threads, which
//! count into `transfer::Counters`), read by the endpoint's thread at each scrape.

use super::{Family, Kind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The live figures.
pub(crate) struct Live {
    tables_planned: AtomicU64,
    tables_in_flight: AtomicU64,
    tables_done: AtomicU64,
    tables_failed: AtomicU64,
    planned_bytes: AtomicU64,
    bytes: AtomicU64,
    in_flight_bytes: AtomicU64,
    rows: AtomicU64,
    following: AtomicBool,
    transactions: AtomicU64,
    follow_rows: AtomicU64,
    /// f64 bits: transactions applied per second over the last progress interval.
    rate: AtomicU64,
    /// f64 bits, NaN where not known: how far behind the source, in bytes of WAL and in
    /// seconds, and the WAL the slot holds.
    lag_bytes: AtomicU64,
    lag_seconds: AtomicU64,
    slot_bytes: AtomicU64,
    retries: AtomicU64,
    /// f64 bits, NaN before the first: when the last applied transaction committed.
    last_commit: AtomicU64,
}

const NAN: u64 = 0x7ff8_0000_0000_0000;

/// The one set of live figures of this process.
pub(crate) static LIVE: Live = Live {
    tables_planned: AtomicU64::new(0),
    tables_in_flight: AtomicU64::new(0),
    tables_done: AtomicU64::new(0),
    tables_failed: AtomicU64::new(0),
    planned_bytes: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    in_flight_bytes: AtomicU64::new(0),
    rows: AtomicU64::new(0),
    following: AtomicBool::new(false),
    transactions: AtomicU64::new(0),
    follow_rows: AtomicU64::new(0),
    rate: AtomicU64::new(0),
    lag_bytes: AtomicU64::new(NAN),
    lag_seconds: AtomicU64::new(NAN),
    slot_bytes: AtomicU64::new(NAN),
    retries: AtomicU64::new(0),
    last_commit: AtomicU64::new(NAN),
};

/// What a copy has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Copying {
    pub(crate) tables_planned: u64,
    pub(crate) tables_in_flight: u64,
    pub(crate) tables_done: u64,
    pub(crate) tables_failed: u64,
    pub(crate) planned_bytes: u64,
    pub(crate) bytes: u64,
    /// Of those, the bytes of tables still in flight.
    pub(crate) in_flight_bytes: u64,
    pub(crate) rows: u64,
}

/// What a follower has done so far, and how far behind it is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Following {
    pub(crate) transactions: u64,
    pub(crate) rows: u64,
    pub(crate) per_second: f64,
    pub(crate) lag_bytes: Option<u64>,
    pub(crate) lag_seconds: Option<f64>,
    pub(crate) slot_bytes: Option<u64>,
    /// Seconds since the Unix epoch.
    pub(crate) last_commit: Option<f64>,
}

fn set(cell: &AtomicU64, value: u64) {
    cell.store(value, Ordering::Relaxed);
}

fn set_f64(cell: &AtomicU64, value: Option<f64>) {
    cell.store(value.map_or(NAN, f64::to_bits), Ordering::Relaxed);
}

fn get(cell: &AtomicU64) -> f64 {
    cell.load(Ordering::Relaxed) as f64
}

fn get_f64(cell: &AtomicU64) -> f64 {
    f64::from_bits(cell.load(Ordering::Relaxed))
}

impl Live {
    pub(crate) fn copying(&self, c: Copying) {
        set(&self.tables_planned, c.tables_planned);
        set(&self.tables_in_flight, c.tables_in_flight);
        set(&self.tables_done, c.tables_done);
        set(&self.tables_failed, c.tables_failed);
        set(&self.planned_bytes, c.planned_bytes);
        set(&self.bytes, c.bytes);
        set(&self.in_flight_bytes, c.in_flight_bytes);
        set(&self.rows, c.rows);
    }

    pub(crate) fn following(&self, f: Following) {
        self.following.store(true, Ordering::Relaxed);
        set(&self.transactions, f.transactions);
        set(&self.follow_rows, f.rows);
        set_f64(&self.rate, Some(f.per_second));
        set_f64(&self.lag_bytes, f.lag_bytes.map(|b| b as f64));
        set_f64(&self.lag_seconds, f.lag_seconds);
        set_f64(&self.slot_bytes, f.slot_bytes.map(|b| b as f64));
        if f.last_commit.is_some() {
            set_f64(&self.last_commit, f.last_commit);
        }
    }

    /// A lost session the follower tries again.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The families a scrape gets: the copy's, and the follower's once it follows.
    pub(crate) fn families(&self) -> Vec<Family> {
        let gauge = |name, help, value| Family::one(name, help, Kind::Gauge, &[], value);
        let counter = |name, help, value| Family::one(name, help, Kind::Counter, &[], value);
        let tables = Family {
            name: "pgcopy_tables",
            help: "The copy's tables, by state: planned (all of them), in_flight, done, failed.",
            kind: Kind::Gauge,
            samples: [
                ("planned", &self.tables_planned),
                ("in_flight", &self.tables_in_flight),
                ("done", &self.tables_done),
                ("failed", &self.tables_failed),
            ]
            .into_iter()
            .map(|(state, cell)| (vec![("state", state.to_string())], get(cell)))
            .collect(),
        };
        let mut families = vec![
            tables,
            gauge(
                "pgcopy_copy_planned_bytes",
                "The planned tables' data on disk on the source (heap and TOAST).",
                get(&self.planned_bytes),
            ),
            counter(
                "pgcopy_copy_bytes_total",
                "Bytes of COPY data sent to the destination.",
                get(&self.bytes),
            ),
            gauge(
                "pgcopy_copy_in_flight_bytes",
                "Of the bytes sent, those of tables (or pieces) still being copied.",
                get(&self.in_flight_bytes),
            ),
            counter(
                "pgcopy_copy_rows_total",
                "Rows sent to the destination.",
                get(&self.rows),
            ),
        ];
        if !self.following.load(Ordering::Relaxed) {
            return families;
        }
        families.extend([
            counter(
                "pgcopy_follow_transactions_total",
                "Source transactions the follower applied.",
                get(&self.transactions),
            ),
            counter(
                "pgcopy_follow_rows_total",
                "Rows the follower's applied transactions changed.",
                get(&self.follow_rows),
            ),
            gauge(
                "pgcopy_follow_transactions_per_second",
                "Transactions applied per second over the last progress interval.",
                get_f64(&self.rate),
            ),
            gauge(
                "pgcopy_follow_lag_bytes",
                "Bytes of WAL the source wrote that the follower has not confirmed.",
                get_f64(&self.lag_bytes),
            ),
            gauge(
                "pgcopy_follow_lag_seconds",
                "How far behind the source the follower is, as the source measures it.",
                get_f64(&self.lag_seconds),
            ),
            gauge(
                "pgcopy_follow_slot_retained_wal_bytes",
                "WAL the follower's replication slot keeps on the source.",
                get_f64(&self.slot_bytes),
            ),
            counter(
                "pgcopy_follow_retries_total",
                "Lost sessions the follower tried again.",
                get(&self.retries),
            ),
            gauge(
                "pgcopy_follow_last_commit_timestamp_seconds",
                "When the last applied transaction committed on the source.",
                get_f64(&self.last_commit),
            ),
        ]);
        families
    }
}
