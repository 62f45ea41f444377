//! Turning flag values, files and the environment into configuration values: connection
//! targets, sizes, the table filter, the state directory, the rules file for a copy.

use super::{LogFormat, Verbosity, MAX_PARALLEL};
use crate::pg::target::Target;
use crate::plan::filter::{parse_list, TableFilter};
use crate::plan::pieces::SplitMode;
use crate::rules::Rules;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn parallel(n: usize) -> Result<usize> {
    if n == 0 || n > MAX_PARALLEL {
        bail!("--parallel must be between 1 and {MAX_PARALLEL}, not {n}");
    }
    Ok(n)
}

/// `--large-objects` / `--no-large-objects`.
pub(super) fn large_objects(
    always: bool,
    never: bool,
) -> Result<crate::schema::large_objects::Selection> {
    use crate::schema::large_objects::Selection;
    Ok(match (always, never) {
        (true, true) => bail!("give either --large-objects or --no-large-objects, not both"),
        (true, false) => Selection::Always,
        (false, true) => Selection::Never,
        (false, false) => Selection::Auto,
    })
}

/// `--lock-timeout` seconds; 0 would mean "wait for ever" to the server, so at least 1.
pub(super) fn lock_timeout(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

pub(super) fn verbosity(quiet: bool, verbose: bool) -> Result<Verbosity> {
    Ok(match (quiet, verbose) {
        (true, true) => bail!("give either --quiet or --verbose, not both"),
        (true, false) => Verbosity::Quiet,
        (false, true) => Verbosity::Verbose,
        (false, false) => Verbosity::Normal,
    })
}

/// `--log-format text|json`.
pub(super) fn log_format(text: Option<&str>) -> Result<LogFormat> {
    Ok(match text.unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => bail!("--log-format is text or json, not {other:?}"),
    })
}

/// `--metrics-listen`: `PORT` on the loopback address, or `HOST:PORT` (a name is resolved;
/// `0.0.0.0:PORT` listens on every interface).
pub(super) fn metrics_listen(text: &str) -> Result<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| {
            format!("--metrics-listen takes PORT or HOST:PORT (0.0.0.0:9187), not {text:?}")
        })
}

/// The copy's rules file, which following cannot honour: the changes it applies would
/// come unmasked.
pub(super) fn rules_for_copy(path: Option<&Path>, follow: bool) -> Result<Option<Rules>> {
    let Some(path) = path else {
        return Ok(None);
    };
    if follow {
        bail!(
            "--rules with --follow: the changes following applies after the copy would come \
             unmasked; copy masked without --follow"
        );
    }
    Rules::load(path).map(Some)
}

pub(super) fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(dir) => Ok(dir),
        None => crate::state::file::default_dir(),
    }
}

pub(super) fn filter(it: &[String], et: &[String], is: &[String], es: &[String]) -> TableFilter {
    TableFilter {
        include_tables: parse_list(it),
        exclude_tables: parse_list(et),
        include_schemas: parse_list(is),
        exclude_schemas: parse_list(es),
    }
}

/// The source's connection. Every session of a copy must reach the one server that holds
/// its snapshot: hosts picked at random would scatter them.
pub(super) fn source(flag: Option<String>, file: Option<&Path>) -> Result<Target> {
    let target = resolve_target("source", flag, file, "PGCOPY_SOURCE")?;
    if target.balances_hosts() {
        bail!(
            "load_balance_hosts=random cannot be used for the source: every session of a copy \
             must reach the server that holds its snapshot (list the hosts without it; \
             target_session_attrs chooses among them)"
        );
    }
    Ok(target)
}

pub(super) fn dest(flag: Option<String>, file: Option<&Path>) -> Result<Target> {
    resolve_target("dest", flag, file, "PGCOPY_DEST")
}

/// Finds a connection string: the flag, else the file flag, else the environment variable.
fn resolve_target(
    role: &str,
    flag: Option<String>,
    file: Option<&Path>,
    env_var: &str,
) -> Result<Target> {
    let text = match (flag, file) {
        (Some(_), Some(_)) => bail!("give either --{role} or --{role}-file, not both"),
        (Some(text), None) => text,
        (None, Some(path)) => read_conn_file(path)
            .with_context(|| format!("reading --{role}-file {}", path.display()))?,
        (None, None) => match std::env::var(env_var) {
            Ok(text) if !text.trim().is_empty() => text,
            _ => bail!("no {role} connection: pass --{role}, --{role}-file or set {env_var}"),
        },
    };
    let side = if role == "source" {
        "the source"
    } else {
        "the destination"
    };
    Target::parse(text.trim())
        .map(|target| target.with_side(side))
        .with_context(|| format!("invalid {role} connection string"))
}

/// The first line of a connection file that is neither blank nor a `#` comment.
fn read_conn_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .context("the file has no connection line (only blank lines and # comments)")
}

/// `--split-tables-larger-than SIZE` or `--no-split`, not both.
/// The chunked copy's default chunk: read in well under a second on the benchmark, where
/// 64MiB held its snapshots three times longer and a kill read four times more again, for
/// the same copy time (see docs/performance.md).
const CHUNK_BYTES: u64 = 16 << 20;

/// `--chunk-size`, which only `--follow` reads in chunks.
pub(super) fn chunk_bytes(size: Option<&str>, follow: bool) -> Result<u64> {
    let Some(size) = size else {
        return Ok(CHUNK_BYTES);
    };
    if !follow {
        bail!("--chunk-size is for copy --follow, whose initial copy is read in chunks");
    }
    let bytes = parse_size(size).context("invalid --chunk-size")?;
    if bytes < 1024 * 1024 {
        bail!("--chunk-size must be at least 1MiB");
    }
    Ok(bytes as u64)
}

pub(super) fn split(larger_than: Option<&str>, off: bool) -> Result<SplitMode> {
    match (larger_than, off) {
        (Some(_), true) => bail!("--split-tables-larger-than and --no-split contradict each other"),
        (None, true) => Ok(SplitMode::Off),
        (None, false) => Ok(SplitMode::Auto),
        (Some(size), false) => {
            let bytes = parse_size(size).context("invalid --split-tables-larger-than")?;
            if bytes < 1024 * 1024 {
                bail!("--split-tables-larger-than must be at least 1MiB");
            }
            Ok(SplitMode::Above(bytes as u64))
        }
    }
}

/// Parses `65536`, `64KiB`, `64K`, `1MiB`, `1M`, `1GiB`, `1TiB` (binary units).
pub(super) fn parse_size(text: &str) -> Result<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits
        .parse()
        .with_context(|| format!("{text:?} does not start with a number"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => bail!("unknown size unit {other:?}: use KiB, MiB, GiB or TiB"),
    };
    number
        .checked_mul(factor)
        .with_context(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_binary_units() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size(" 2 M ").unwrap(), 2 << 20);
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert!(parse_size("1PiB").is_err());
    }

    #[test]
    fn splits_as_asked() {
        assert_eq!(split(None, false).unwrap(), SplitMode::Auto);
        assert_eq!(split(None, true).unwrap(), SplitMode::Off);
        assert_eq!(
            split(Some("10GiB"), false).unwrap(),
            SplitMode::Above(10 << 30)
        );
        assert!(split(Some("10GiB"), true).is_err());
        assert!(split(Some("64KiB"), false).is_err());
    }

    #[test]
    fn reads_the_first_non_comment_line_of_a_connection_file() {
        let dir = std::env::temp_dir().join(format!("pgcopy-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("source.conn");
        std::fs::write(
            &path,
            "# production\n\n  host=db1 dbname=app  \nhost=other\n",
        )
        .unwrap();
        assert_eq!(read_conn_file(&path).unwrap(), "host=db1 dbname=app");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(read_conn_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
