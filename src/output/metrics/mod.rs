//! Prometheus metrics, for runs nobody watches: the figures of a run (`Run`, for the textfile
//! `--metrics-file` leaves at its end: `textfile`) and of a copy or follower as it goes
//! (`LIVE`, served on `--metrics-listen`: `serve`), set by the commands as they go, and the
//! one writer of Prometheus's text format both use. Names follow Prometheus's conventions:
//! a `pgcopy_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters, labels only
//! where their values are few.

pub(crate) mod live;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod textfile;

use std::fmt::Write as _;

/// How Prometheus treats a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its samples, each with its labels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    /// A family of one sample with these labels.
    pub(crate) fn one(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        value: f64,
    ) -> Family {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Family {
            name,
            help,
            kind,
            samples: vec![(labels, value)],
        }
    }
}

/// The families in Prometheus's text exposition format (version 0.0.4).
pub(crate) fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (labels, value) in &family.samples {
            out.push_str(family.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
    out
}

/// `pgcopy_build_info{version="…"} 1`, the usual way to say which build answers.
pub(crate) fn build_info() -> Family {
    Family::one(
        "pgcopy_build_info",
        "Which pgcopy this is, as a label; always 1.",
        Kind::Gauge,
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    )
}

/// A sample's value as Prometheus reads it: integers without a fraction.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Seconds since the Unix epoch, as the `_timestamp_seconds` metrics give times.
pub(crate) fn unix_seconds(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_text_format() {
        let families = [
            Family::one(
                "pgcopy_run_success",
                "Whether it \\ worked.",
                Kind::Gauge,
                &[("command", "co\"py\n")],
                1.0,
            ),
            Family {
                name: "pgcopy_copy_bytes_total",
                help: "Bytes.",
                kind: Kind::Counter,
                samples: vec![(Vec::new(), 1.5), (Vec::new(), f64::NAN)],
            },
        ];
        assert_eq!(
            render(&families),
            "# HELP pgcopy_run_success Whether it \\\\ worked.\n\
             # TYPE pgcopy_run_success gauge\n\
             pgcopy_run_success{command=\"co\\\"py\\n\"} 1\n\
             # HELP pgcopy_copy_bytes_total Bytes.\n\
             # TYPE pgcopy_copy_bytes_total counter\n\
             pgcopy_copy_bytes_total 1.5\n\
             pgcopy_copy_bytes_total NaN\n"
        );
        assert_eq!(number(1_700_000_000.25), "1700000000.25");
        assert_eq!(number(-3.0), "-3");
    }
}
