//! Progress: the counters the byte pipe bumps (atomics, never locks, on the hot path) and
//! what the main thread shows from them. On a terminal: one pbr bar that stays in place while
//! log lines scroll above it (pbr renders into a buffer; `logging` puts the frame on stderr
//! under its lock, so nothing is garbled and nothing can hang). Otherwise: a plain progress
//! line every `--progress-interval`, no `\r` at all.

use crate::output::logging;
use crate::plan::Plan;
use crate::transfer::lanes::Lane;
use crate::transfer::Counters;
use crate::units::{format_bytes, format_duration};
use pbr::ProgressBar;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the bar is redrawn.
const FRAME_INTERVAL: Duration = Duration::from_millis(200);

/// Where pbr renders a frame; `logging::draw_bar` shows it.
#[derive(Clone, Default)]
struct Frame(Arc<Mutex<Vec<u8>>>);

impl Write for Frame {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut frame) = self.0.lock() {
            frame.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    /// A bar on the terminal (stderr).
    Bar,
    /// A log line every so often.
    Lines(Duration),
    /// Nothing (`-q`).
    Off,
}

/// Draws progress from the counters; call `tick` from one thread.
pub(crate) struct Progress<'a> {
    plan: &'a Plan,
    display: Display,
    bar: Option<(ProgressBar<Frame>, Frame)>,
    started: Instant,
    last: Instant,
    estimated_rows: u64,
    /// The copy is read in chunks (`copy --follow`): their counts are shown, in all and per
    /// table in flight.
    chunked: bool,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(plan: &'a Plan, display: Display) -> Progress<'a> {
        let bar = (display == Display::Bar).then(|| {
            let frame = Frame::default();
            // Measured in the tables' data on disk; the figures, in MiB as everywhere, are
            // in the message.
            let mut pb = ProgressBar::on(frame.clone(), plan.data_bytes().max(1));
            pb.set_max_refresh_rate(None);
            pb.show_counter = false;
            pb.show_speed = false;
            pb.show_time_left = true;
            if let Some(width) = terminal_width() {
                pb.set_width(Some(width));
            }
            (pb, frame)
        });
        Progress {
            plan,
            display,
            bar,
            started: Instant::now(),
            last: Instant::now() - FRAME_INTERVAL,
            estimated_rows: plan.tables.iter().filter_map(|t| t.estimated_rows).sum(),
            chunked: false,
        }
    }

    /// Shows the chunks done and to do (see `chunked`).
    pub(crate) fn in_chunks(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Per table, its chunks done and in all (each table a chunk, or its pieces).
    fn chunks(&self, counters: &Counters) -> Vec<(usize, usize)> {
        let mut chunks: Vec<(usize, usize)> = self
            .plan
            .tables
            .iter()
            .map(|t| match &t.split {
                Some(split) => (
                    split.done.iter().filter(|&&d| d).count(),
                    split.pieces.len(),
                ),
                None => (0, 1),
            })
            .collect();
        if let Ok(pieces) = counters.pieces_copied.lock() {
            for &(index, _, _) in pieces.iter() {
                chunks[index].0 += 1;
            }
        }
        if let Ok(copied) = counters.copied.lock() {
            for &(index, _) in copied.iter() {
                if self.plan.tables[index].split.is_none() {
                    chunks[index].0 = 1;
                }
            }
        }
        chunks
    }

    pub(crate) fn tick(&mut self, counters: &Counters, lanes: &[Lane]) {
        let interval = match self.display {
            Display::Off => return,
            Display::Bar => FRAME_INTERVAL,
            Display::Lines(interval) => interval,
        };
        let done = counters.tables_done.load(Ordering::Relaxed);
        let total_tables = self.plan.tables.len();
        let last_frame = self.bar.is_some() && done == total_tables;
        if self.last.elapsed() < interval && !last_frame {
            return;
        }
        self.last = Instant::now();
        let copied = counters.copied.lock().map_or(0, |c| c.len());
        let failed = done.saturating_sub(copied);
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let rows = counters.rows.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let rows_per_sec = rows as f64 / elapsed.as_secs_f64().max(0.001);
        let mut flying: Vec<usize> = lanes
            .iter()
            .map(|lane| lane.current.load(Ordering::Relaxed))
            .filter(|&index| index < total_tables)
            .collect();
        flying.sort_unstable();
        flying.dedup();
        let chunks = match self.chunked {
            true => self.chunks(counters),
            false => Vec::new(),
        };
        let in_flight: Vec<String> = flying
            .iter()
            .map(|&i| {
                let name = self.plan.tables[i].name.name.as_str();
                match chunks.get(i) {
                    Some((done, all)) if *all > 1 => format!("{name} {done}/{all}"),
                    _ => name.to_string(),
                }
            })
            .collect();
        let position = on_disk_done(self.plan, counters, &flying);
        let total = self.plan.data_bytes();
        let mut tables = if failed > 0 {
            format!("{copied}/{total_tables} tables, {failed} failed")
        } else {
            format!("{copied}/{total_tables} tables")
        };
        if self.chunked {
            let (done, all) = chunks
                .iter()
                .fold((0, 0), |(d, a), (done, all)| (d + done, a + all));
            tables.push_str(&format!(" ({done}/{all} chunks)"));
        }
        let secs = elapsed.as_secs_f64().max(0.001);
        match &mut self.bar {
            Some((bar, frame)) => {
                bar.message(&format!(
                    "{tables} · {} of {} on disk · {} sent {}/s · {} rows {} rows/s · {} [{}] ",
                    format_bytes(position),
                    format_bytes(total),
                    format_bytes(bytes),
                    format_bytes((bytes as f64 / secs) as u64),
                    rows_of(rows, self.estimated_rows),
                    format_count(rows_per_sec as u64),
                    format_duration(elapsed),
                    shorten(&in_flight.join(","), 30)
                ));
                // Never 100 % for a copy with a table that failed or was not copied.
                bar.set(position);
                let text = frame
                    .0
                    .lock()
                    .map(|mut f| String::from_utf8_lossy(&std::mem::take(&mut *f)).into_owned())
                    .unwrap_or_default();
                if !text.is_empty() {
                    logging::draw_bar(&text);
                }
            }
            None => {
                let eta = (position > 0 && total > position).then(|| {
                    format_duration(Duration::from_secs_f64(
                        secs / position as f64 * (total - position) as f64,
                    ))
                });
                log::info!(
                    "progress: {tables}, {} of ~{} on disk, {} sent ({}/s), {} rows \
                     ({rows_per_sec:.0}/s), elapsed {}, ETA {}, in flight: {}",
                    format_bytes(position),
                    format_bytes(total),
                    format_bytes(bytes),
                    format_bytes((bytes as f64 / secs) as u64),
                    rows_of(rows, self.estimated_rows),
                    format_duration(elapsed),
                    eta.as_deref().unwrap_or("?"),
                    if in_flight.is_empty() {
                        "-".to_string()
                    } else {
                        in_flight.join(", ")
                    }
                );
            }
        }
    }

    /// The last figures, once the lanes are done: a chunked copy's log ends with its chunks
    /// counted (a bar shows them in its last frame anyway).
    pub(crate) fn last(&mut self, counters: &Counters) {
        if self.chunked && matches!(self.display, Display::Lines(_)) {
            self.last = self.started;
            self.display = Display::Lines(Duration::ZERO);
            self.tick(counters, &[]);
        }
    }

    /// Takes the bar down, leaving its last frame on screen.
    pub(crate) fn finish(&mut self) {
        logging::end_bar();
    }
}

/// How much of the tables' data on disk is copied: the tables copied whole, and of those
/// in flight (`flying`) what their streams sent so far, at most their size (a stream is
/// often smaller than the table's pages, sometimes larger). A table that failed counts for
/// nothing: the total is reached only when every table was copied.
fn on_disk_done(plan: &Plan, counters: &Counters, flying: &[usize]) -> u64 {
    let done = counters.disk_done.load(Ordering::Relaxed);
    let sending = counters
        .bytes
        .load(Ordering::Relaxed)
        .saturating_sub(counters.bytes_done.load(Ordering::Relaxed));
    let flying: u64 = flying.iter().map(|&i| plan.tables[i].data_bytes).sum();
    (done + sending.min(flying)).min(plan.data_bytes())
}

fn rows_of(rows: u64, estimate: u64) -> String {
    if estimate > 0 {
        format!("{}/~{}", format_count(rows), format_count(estimate))
    } else {
        format_count(rows)
    }
}

/// Shows `text` as the status line under the scrolling log (following has no bar to fill),
/// cut to the terminal's width and padded so that no longer line shows through.
pub(crate) fn draw_status(text: &str) {
    let width = terminal_width().unwrap_or(100).max(20);
    let line = shorten(text, width - 1);
    let pad = (width - 1).saturating_sub(line.chars().count());
    logging::draw_bar(&format!("\r{line}{}", " ".repeat(pad)));
}

/// A count in few characters: `950`, `12.3k`, `4.5M`, `1.2G`.
pub(crate) fn format_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// `COLUMNS` when the shell exports it; otherwise pbr asks the terminal itself.
fn terminal_width() -> Option<usize> {
    std::env::var("COLUMNS").ok()?.trim().parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_few_characters() {
        assert_eq!(format_count(950), "950");
        assert_eq!(format_count(12_345), "12.3k");
        assert_eq!(format_count(4_500_000), "4.5M");
        assert_eq!(rows_of(1500, 200_000), "1.5k/~200.0k");
        assert_eq!(rows_of(7, 0), "7");
    }

    #[test]
    fn frames_are_captured_not_printed() {
        let mut frame = Frame::default();
        frame.write_all(b"\rabc").unwrap();
        assert_eq!(frame.0.lock().unwrap().as_slice(), b"\rabc");
    }
}
