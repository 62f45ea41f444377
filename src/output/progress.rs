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
use pbr::{ProgressBar, Units};
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
}

impl<'a> Progress<'a> {
    pub(crate) fn new(plan: &'a Plan, display: Display) -> Progress<'a> {
        let bar = (display == Display::Bar).then(|| {
            let frame = Frame::default();
            let mut pb = ProgressBar::on(frame.clone(), plan.data_bytes().max(1));
            pb.set_units(Units::Bytes);
            pb.set_max_refresh_rate(None);
            pb.show_counter = true;
            pb.show_speed = true;
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
        }
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
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let rows = counters.rows.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let rows_per_sec = rows as f64 / elapsed.as_secs_f64().max(0.001);
        let in_flight: Vec<&str> = lanes
            .iter()
            .filter_map(|lane| {
                let index = lane.current.load(Ordering::Relaxed);
                self.plan.tables.get(index).map(|t| t.name.name.as_str())
            })
            .collect();
        match &mut self.bar {
            Some((bar, frame)) => {
                // The estimate is the tables' size on disk; the stream can be larger or
                // smaller, and the last frame says 100 %.
                bar.total = if last_frame {
                    bytes.max(1)
                } else {
                    bar.total.max(bytes)
                };
                bar.message(&format!(
                    "{done}/{total_tables} tables {} rows {} rows/s {} [{}] ",
                    rows_of(rows, self.estimated_rows),
                    format_count(rows_per_sec as u64),
                    format_duration(elapsed),
                    shorten(&in_flight.join(","), 30)
                ));
                bar.set(bytes);
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
                let secs = elapsed.as_secs_f64().max(0.001);
                let total = self.plan.data_bytes();
                let eta = (bytes > 0 && total > bytes).then(|| {
                    format_duration(Duration::from_secs_f64(
                        secs / bytes as f64 * (total - bytes) as f64,
                    ))
                });
                log::info!(
                    "progress: {done}/{total_tables} tables, {} of ~{}, {} rows, {}/s, \
                     {rows_per_sec:.0} rows/s, elapsed {}, ETA {}, in flight: {}",
                    format_bytes(bytes),
                    format_bytes(total),
                    rows_of(rows, self.estimated_rows),
                    format_bytes((bytes as f64 / secs) as u64),
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

    /// Takes the bar down, leaving its last frame on screen.
    pub(crate) fn finish(&mut self) {
        logging::end_bar();
    }
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
