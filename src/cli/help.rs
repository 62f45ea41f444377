//! What argh prints, made readable: a command's options grouped by purpose, as psql and
//! ripgrep group theirs, each with the name of its argument (`--parallel N`), from the same
//! definitions `--help` comes from (the groups and the names also shape the manual page);
//! and an unknown option or command answered with the closest known one ("did you mean
//! --parallel?").

/// The groups of options, in the order help shows them, and the options of each (a flag
/// in none goes under the last, "Other").
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Connections",
        &["--source", "--source-file", "--dest", "--dest-file"],
    ),
    (
        "What to copy",
        &[
            "--include-tables",
            "--exclude-tables",
            "--include-schemas",
            "--exclude-schemas",
            "--rules",
            "--large-objects",
            "--no-large-objects",
            "--exact",
        ],
    ),
    (
        "How it runs",
        &[
            "--dry-run",
            "--yes",
            "--parallel",
            "--batch-size",
            "--split-tables-larger-than",
            "--no-split",
            "--chunk-size",
            "--lock-timeout",
            "--retries",
            "--timeout",
            "--resume",
            "--follow",
            "--verify",
            "--allow-unfollowed",
            "--forget-gone",
            "--state-dir",
        ],
    ),
    (
        "The destination",
        &[
            "--fk-mode",
            "--enable-triggers",
            "--indexes",
            "--no-sequences",
            "--no-analyze",
            "--no-refresh-materialized-views",
            "--allow-outside-references",
            "--allow-narrowing",
        ],
    ),
    (
        "Output",
        &[
            "--no-progress",
            "--progress-interval",
            "--json",
            "--log-format",
            "--metrics-file",
            "--metrics-listen",
            "--quiet",
            "--verbose",
            "--version",
            "--help",
        ],
    ),
];

/// Where argh starts an option's description, and how it indents continuation lines.
const COLUMN: usize = 20;

/// A command's help with its options grouped and their arguments named; other text as
/// argh wrote it.
pub(crate) fn grouped(help: &str) -> String {
    let names = argument_names(help);
    let mut out = String::new();
    let mut lines = help.lines().peekable();
    while let Some(line) = lines.next() {
        if line != "Options:" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // The options, each its first line and the lines continuing it, to the blank line.
        let mut options: Vec<(String, Vec<String>)> = Vec::new();
        while let Some(next) = lines.next_if(|l| !l.is_empty()) {
            if next.starts_with("  -") {
                options.push((next.to_string(), Vec::new()));
            } else if let Some((_, more)) = options.last_mut() {
                more.push(next.to_string());
            }
        }
        let longs: Vec<&str> = options.iter().map(|(line, _)| flag_of(line)).collect();
        let mut first = true;
        for (heading, members) in groups(&longs) {
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(heading);
            out.push_str(":\n");
            for i in members {
                let (line, more) = &options[i];
                out.push_str(&with_argument(line, &names));
                for continued in more {
                    out.push_str(continued);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// The groups a command's options are shown in, in help's order ("Other" last, empty ones
/// left out): each heading with the indexes of its options in `longs`, their long flags.
pub(crate) fn groups(longs: &[&str]) -> Vec<(&'static str, Vec<usize>)> {
    let mut placed = vec![false; longs.len()];
    let mut sections = Vec::new();
    for (heading, flags) in GROUPS {
        let members: Vec<usize> = (0..longs.len())
            .filter(|&i| !placed[i] && flags.contains(&longs[i]))
            .collect();
        for &i in &members {
            placed[i] = true;
        }
        sections.push((*heading, members));
    }
    sections.push(("Other", (0..longs.len()).filter(|&i| !placed[i]).collect()));
    sections.retain(|(_, members)| !members.is_empty());
    sections
}

/// `--parallel`, the long flag of an option line (`  -q, --quiet   …` gives `--quiet`; a
/// long flag may be followed by a single space before its description).
fn flag_of(line: &str) -> &str {
    let mut long = "";
    for token in line.split_whitespace() {
        let token = token.trim_end_matches(',');
        if !token.starts_with('-') && token != "help" {
            break;
        }
        if token.starts_with("--") && long.is_empty() {
            long = token;
        }
    }
    long
}

/// The argument each option takes, from the usage line: `[--parallel <N>]` gives
/// (`--parallel`, `N`).
pub(crate) fn argument_names(help: &str) -> Vec<(String, String)> {
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default();
    let tokens: Vec<&str> = usage.split_whitespace().collect();
    tokens
        .windows(2)
        .filter_map(|pair| {
            let flag = pair[0].trim_start_matches('[');
            let arg = pair[1].strip_prefix('<')?;
            let arg = arg
                .trim_end_matches(']')
                .trim_end_matches('>')
                .trim_end_matches("...");
            flag.starts_with("--")
                .then(|| (flag.to_string(), arg.trim_end_matches('>').to_string()))
        })
        .collect()
}

/// An option's first line with its argument's name after the flag, the description moved
/// to a line of its own where the two no longer fit before it.
fn with_argument(line: &str, names: &[(String, String)]) -> String {
    let flag = flag_of(line);
    let Some((_, arg)) = names.iter().find(|(f, _)| f == flag) else {
        return format!("{line}\n");
    };
    let Some(at) = line.find(flag) else {
        return format!("{line}\n");
    };
    let end = at + flag.len();
    let head = format!("{} {arg}", &line[..end]);
    let description = line[end..].trim_start();
    if description.is_empty() {
        format!("{head}\n")
    } else if head.len() + 2 <= COLUMN {
        format!("{head:<COLUMN$}{description}\n")
    } else {
        format!("{head}\n{:COLUMN$}{description}\n", "")
    }
}

/// An unknown option or command that is one or two typing mistakes away from a known one
/// (`--paralel`, `cpy`): the known one. `known` is what the command accepts.
pub(crate) fn did_you_mean<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5) && *d < k.len() / 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The Levenshtein distance of two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The long options and commands a help text offers: its usage line's `--flags`, and the
/// commands it lists.
pub(crate) fn offered(help: &str) -> Vec<String> {
    let mut found: Vec<String> = help
        .split_whitespace()
        .map(|t| t.trim_matches(|c| c == '[' || c == ']' || c == ','))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(str::to_string)
        .collect();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if line.is_empty() {
            in_commands = false;
        } else if in_commands && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(name) = line.split_whitespace().next() {
                found.push(name.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "Usage: pgcopy copy [--source <CONN>] [--parallel <N>] [--dry-run] [-q]

Replace the data.

Options:
  --source          source connection: URL or key=value string (default:
                    $PGCOPY_SOURCE)
  --parallel        tables copied at once
  --dry-run         change nothing
  -q, --quiet       errors only
  --help, help      display usage information

Error codes:
  0 success
";

    #[test]
    fn groups_options_by_purpose_with_their_arguments() {
        let help = grouped(HELP);
        let want = "Connections:
  --source CONN     source connection: URL or key=value string (default:
                    $PGCOPY_SOURCE)

How it runs:
  --parallel N      tables copied at once
  --dry-run         change nothing

Output:
  -q, --quiet       errors only
  --help, help      display usage information

Error codes:";
        assert!(help.contains(want), "{help}");
    }

    #[test]
    fn a_long_flag_and_argument_put_the_description_below() {
        let names = vec![("--split-tables-larger-than".into(), "SIZE".into())];
        assert_eq!(
            with_argument("  --split-tables-larger-than", &names),
            "  --split-tables-larger-than SIZE\n"
        );
        let names = vec![("--progress-interval".into(), "SECONDS".into())];
        assert_eq!(
            with_argument("  --progress-interval seconds between lines", &names),
            format!(
                "  --progress-interval SECONDS\n{:20}seconds between lines\n",
                ""
            )
        );
    }

    #[test]
    fn suggests_what_was_meant() {
        let known = [
            "--parallel",
            "--progress-interval",
            "--dry-run",
            "copy",
            "cutover",
        ];
        assert_eq!(did_you_mean("--paralel", &known), Some("--parallel"));
        assert_eq!(did_you_mean("--dryrun", &known), Some("--dry-run"));
        assert_eq!(did_you_mean("cpy", &known), Some("copy"));
        assert_eq!(did_you_mean("--zzz", &known), None);
        assert_eq!(
            offered(HELP),
            ["--dry-run", "--help", "--parallel", "--quiet", "--source"]
        );
    }
}
