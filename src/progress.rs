//! Progress: the counters the byte pipe bumps (atomics, never locks, on the hot path) and
//! what the main thread draws from them: a bar on a terminal, a log line every few seconds
//! otherwise.

use crate::pipe::Lane;
use crate::plan::Plan;
use crate::report::format_bytes;
use pbr::{ProgressBar, Units};
use std::io::Stderr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a progress line is logged when there is no bar.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counters shared by the pipe's threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: AtomicU64,
    pub rows: AtomicU64,
    pub tables_done: AtomicUsize,
}

/// Draws progress from the counters; call `tick` from one thread.
pub struct Progress<'a> {
    plan: &'a Plan,
    bar: Option<ProgressBar<Stderr>>,
    started: Instant,
    last_line: Instant,
}

impl<'a> Progress<'a> {
    /// A bar when `bar` is true (stderr is a terminal and the user did not turn it off).
    pub fn new(plan: &'a Plan, bar: bool) -> Progress<'a> {
        let bar = bar.then(|| {
            let mut pb = ProgressBar::on(std::io::stderr(), plan.data_bytes().max(1));
            pb.set_units(Units::Bytes);
            pb.set_max_refresh_rate(Some(Duration::from_millis(200)));
            pb.show_counter = true;
            pb.show_speed = true;
            pb.show_time_left = true;
            pb
        });
        Progress {
            plan,
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub fn tick(&mut self, counters: &Counters, lanes: &[Lane]) {
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let rows = counters.rows.load(Ordering::Relaxed);
        let done = counters.tables_done.load(Ordering::Relaxed);
        let total_tables = self.plan.tables.len();
        match &mut self.bar {
            Some(bar) => {
                // The estimate is the tables' size on disk; the stream can be larger.
                bar.total = bar.total.max(bytes);
                let in_flight: Vec<String> = lanes
                    .iter()
                    .filter_map(|lane| {
                        let index = lane.current.load(Ordering::Relaxed);
                        self.plan.tables.get(index).map(|t| t.name.name.clone())
                    })
                    .collect();
                bar.message(&format!(
                    "{done}/{total_tables} tables, {rows} rows [{}] ",
                    shorten(&in_flight.join(", "), 40)
                ));
                bar.set(bytes);
            }
            None => {
                if self.last_line.elapsed() >= LOG_INTERVAL {
                    self.last_line = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    log::info!(
                        "progress: {done}/{total_tables} tables, {rows} rows, {} of ~{}, {}/s",
                        format_bytes(bytes),
                        format_bytes(self.plan.data_bytes()),
                        format_bytes((bytes as f64 / secs) as u64)
                    );
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = &mut self.bar {
            bar.finish_println("");
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}
