//! Everything pgcopy writes to stderr: log lines (their level from `-q`/`-v`, or `RUST_LOG`
//! as env_logger users expect; as text, or with `--log-format json` one JSON object per line
//! with the line's fields), the progress bar's frames, and the warnings the final report
//! repeats. One lock orders them, so a log line never lands inside a bar frame: it erases
//! the frame, prints itself, and draws the frame again below.

use crate::cli::config::{LogFormat, Verbosity};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The format log lines are in, once the logger is installed.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();
/// The bar's last frame, drawn again after every log line while the bar is up.
static BAR_FRAME: Mutex<Option<String>> = Mutex::new(None);
/// Warnings logged so far, for the report.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Logger {
    filter: env_logger::Logger,
    format: LogFormat,
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
        let line = match self.format {
            LogFormat::Text => format!(
                "pgcopy: {}: {message}\n",
                record.level().as_str().to_ascii_lowercase()
            ),
            LogFormat::Json => json_line(record, message, SystemTime::now()),
        };
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
pub(crate) fn init(verbosity: Verbosity, format: LogFormat) {
    let default = match verbosity {
        Verbosity::Quiet => "pgcopy=error",
        Verbosity::Normal => "pgcopy=info",
        Verbosity::Verbose => "pgcopy=debug",
    };
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .build();
    let max = filter.filter();
    let _ = FORMAT.set(format);
    if log::set_boxed_logger(Box::new(Logger { filter, format })).is_ok() {
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

/// The line that ends a run that failed whole, whatever the log's levels: `pgcopy: error:
/// …`, or a JSON object with `--log-format json`.
pub(crate) fn fatal_line(message: &str) -> String {
    match FORMAT.get() {
        Some(LogFormat::Json) => json_line(
            &log::Record::builder()
                .level(log::Level::Error)
                .target("pgcopy")
                .args(format_args!("{message}"))
                .build(),
            message.to_string(),
            SystemTime::now(),
        ),
        _ => format!("pgcopy: error: {message}\n"),
    }
}

/// One log line as a JSON object: `time` (RFC 3339, UTC, milliseconds), `level`, `target`,
/// `message`, then the line's fields (`table`, `rows`, `lag_bytes`, …) as they were given:
/// numbers as numbers, anything else as text.
fn json_line(record: &log::Record, message: String, now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let time = crate::units::rfc3339(since.as_secs());
    let time = format!(
        "{}.{:03}Z",
        time.trim_end_matches('Z'),
        since.subsec_millis()
    );
    let mut object = serde_json::Map::new();
    object.insert("time".into(), time.into());
    object.insert(
        "level".into(),
        record.level().as_str().to_ascii_lowercase().into(),
    );
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), message.into());
    let mut fields = Fields(&mut object);
    // A field that cannot be read is left out; the message says it all anyway.
    let _ = record.key_values().visit(&mut fields);
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Collects a log line's fields into its JSON object.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let mut json = Json(serde_json::Value::Null);
        value.visit(&mut json)?;
        self.0.insert(key.as_str().to_string(), json.0);
        Ok(())
    }
}

/// One field's value as JSON: numbers as numbers, an absent value as `null`, anything else
/// as its text.
struct Json(serde_json::Value);

impl<'v> log::kv::VisitValue<'v> for Json {
    fn visit_any(&mut self, value: log::kv::Value) -> Result<(), log::kv::Error> {
        self.0 = value.to_string().into();
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Value::Null;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), log::kv::Error> {
        // JSON has no NaN: an unknown figure is null.
        self.0 = serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into);
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_json_line_carries_the_fields() {
        let table = "public.t";
        let line = json_line(
            &log::Record::builder()
                .level(log::Level::Info)
                .target("pgcopy::commands")
                .args(format_args!("copied"))
                .key_values(&[
                    ("table", log::kv::Value::from_display(&table)),
                    ("rows", log::kv::Value::from(42u64)),
                    ("lag_seconds", log::kv::Value::from(0.5f64)),
                    ("lag_bytes", log::kv::Value::null()),
                ])
                .build(),
            "copied \"t\"".into(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        );
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(doc["level"], "info");
        assert_eq!(doc["message"], "copied \"t\"");
        assert_eq!(doc["table"], "public.t");
        assert_eq!(doc["rows"], 42);
        assert_eq!(doc["lag_seconds"], 0.5);
        assert_eq!(doc["lag_bytes"], serde_json::Value::Null);
    }
}
