//! Everything pgcopy writes to stderr: log lines (their level from `-q`/`-v`, or `RUST_LOG`
//! as env_logger users expect), the progress bar's frames, and the warnings the final report
//! repeats. One lock orders them, so a log line never lands inside a bar frame: it erases
//! the frame, prints itself, and draws the frame again below.

use crate::cli::config::Verbosity;
use std::io::Write;
use std::sync::Mutex;

/// The bar's last frame, drawn again after every log line while the bar is up.
static BAR_FRAME: Mutex<Option<String>> = Mutex::new(None);
/// Warnings logged so far, for the report.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Logger {
    filter: env_logger::Logger,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        log::Log::enabled(&self.filter, metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.filter.matches(record) {
            return;
        }
        let message = record.args().to_string();
        if record.level() == log::Level::Warn {
            if let Ok(mut warnings) = WARNINGS.lock() {
                warnings.push(message.clone());
            }
        }
        let line = format!(
            "pgcopy: {}: {message}\n",
            record.level().as_str().to_ascii_lowercase()
        );
        let frame = BAR_FRAME.lock();
        let frame = frame.as_ref().ok().and_then(|f| f.as_deref());
        let mut err = std::io::stderr().lock();
        // Errors writing to stderr have nowhere to be reported.
        let _ = match frame {
            Some(frame) => write!(err, "\r\x1b[2K{line}{frame}"),
            None => err.write_all(line.as_bytes()),
        };
        let _ = err.flush();
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger. `RUST_LOG`, when set, decides the levels; otherwise `verbosity`.
pub(crate) fn init(verbosity: Verbosity) {
    let default = match verbosity {
        Verbosity::Quiet => "pgcopy=error",
        Verbosity::Normal => "pgcopy=info",
        Verbosity::Verbose => "pgcopy=debug",
    };
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .build();
    let max = filter.filter();
    if log::set_boxed_logger(Box::new(Logger { filter })).is_ok() {
        log::set_max_level(max);
    }
}

/// Draws a bar frame (which starts with `\r`) and remembers it for after log lines.
pub(crate) fn draw_bar(frame: &str) {
    let mut current = match BAR_FRAME.lock() {
        Ok(current) => current,
        Err(_) => return,
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(frame.as_bytes());
    let _ = err.flush();
    *current = Some(frame.to_string());
}

/// Takes the bar down for good, leaving its last frame on screen with a newline after it.
pub(crate) fn end_bar() {
    if let Ok(mut current) = BAR_FRAME.lock() {
        if current.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\n");
            let _ = err.flush();
        }
    }
}

/// The warnings logged so far.
pub(crate) fn warnings() -> Vec<String> {
    WARNINGS.lock().map(|w| w.clone()).unwrap_or_default()
}
