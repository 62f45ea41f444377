//! The manual page in roff (man(7) macros, section 1): NAME, SYNOPSIS, DESCRIPTION and the
//! program's OPTIONS, COMMANDS (each command's options in help's groups) and EXIT STATUS
//! from help; ENVIRONMENT (pgcopy's variables, and libpq's from the table connection strings
//! are read with), FILES and SEE ALSO, which help does not cover, written here.

use super::{Flag, Manual, Page};
use crate::pg::conninfo::ENVIRONMENT as LIBPQ_ENVIRONMENT;
use std::time::{SystemTime, UNIX_EPOCH};

/// pgcopy's own environment variables and the ones it reads for its files and its output,
/// each with what it does. A unit test checks that every variable the code reads is here.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "PGCOPY_SOURCE",
        "The source connection, a URL or key=value string, when neither --source nor \
         --source-file is given.",
    ),
    (
        "PGCOPY_DEST",
        "The destination connection when neither --dest nor --dest-file is given.",
    ),
    (
        "PGCOPY_MASK_KEY",
        "The key of a rules file's keyed masks (hash, email, …), which pgcopy applies \
         itself so that the key goes to neither server; never a flag.",
    ),
    (
        "PGCOPY_MASK_KEY_FILE",
        "A file holding that key (its final newline left out), read when PGCOPY_MASK_KEY is \
         not set; a file others may read is warned about.",
    ),
    (
        "XDG_STATE_HOME",
        "The state directory is $XDG_STATE_HOME/pgcopy unless --state-dir names one.",
    ),
    (
        "HOME",
        "Without XDG_STATE_HOME, the state directory is ~/.local/state/pgcopy; the password \
         file ~/.pgpass and the root certificate ~/.postgresql/root.crt are found under it too.",
    ),
    (
        "RUST_LOG",
        "The levels of the log lines on standard error (env_logger's syntax, e.g. \
         pgcopy=debug); when set, it decides instead of --quiet and --verbose.",
    ),
    (
        "COLUMNS",
        "The width of the progress bar, when the shell exports it.",
    ),
];

/// The files pgcopy reads or writes of its own accord, each with what it holds.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_STATE_HOME/pgcopy/, ~/.local/state/pgcopy/",
        "The state directory (--state-dir): a state file per destination, written and synced \
         before a copy changes that destination's schema (the foreign keys and indexes it \
         drops) and updated as tables are done, so that pgcopy recover, or the next copy to \
         it, puts the schema back after a crash, and copy --resume goes on where it ended. A \
         run that copies every table removes it.",
    ),
    (
        "~/.pgpass",
        "The password file, read as libpq reads it (PGPASSFILE or passfile= names another); \
         a file others may read is ignored.",
    ),
    (
        "~/.postgresql/root.crt",
        "The certificates of the certificate authorities that sslmode=verify-ca and \
         verify-full trust when sslrootcert is not given.",
    ),
];

/// The whole page.
pub(crate) fn page(manual: &Manual) -> String {
    let program = &manual.program;
    let mut out = String::new();
    out.push_str(&format!(
        ".TH PGCOPY 1 {} \"pgcopy {}\" \"User Commands\"\n",
        date(SystemTime::now()),
        env!("CARGO_PKG_VERSION")
    ));
    // Option names are long and full of hyphens: no hyphenation, no stretched lines.
    out.push_str(".nh\n.ad l\n");

    out.push_str(".SH NAME\n");
    let what = program.description.trim_end_matches('.');
    let mut chars = what.chars();
    let what: String = chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    out.push_str(&format!("pgcopy \\- {}\n", escape(&what)));

    out.push_str(".SH SYNOPSIS\n");
    out.push_str(&synopsis(&program.usage));
    for word in program.flags().flat_map(Flag::words) {
        out.push_str(&format!(
            ".br\n\\fBpgcopy {}\\fR [\\fIcommand\\fR]\n",
            escape(word)
        ));
    }
    for command in &manual.commands {
        out.push_str(&format!(".br\n{}\n", command_line(command)));
    }

    out.push_str(".SH DESCRIPTION\n");
    out.push_str(&format!("{}\n", escape(&program.description)));
    for note in &program.notes {
        paragraph(&mut out, note);
    }

    out.push_str(".SH OPTIONS\n");
    for flag in program.flags() {
        option(&mut out, flag);
    }

    out.push_str(".SH COMMANDS\n");
    for command in &manual.commands {
        section(&mut out, command);
    }

    out.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in &program.exit_codes {
        tagged(&mut out, &format!("\\fB{}\\fR", escape(code)), meaning);
    }

    out.push_str(".SH ENVIRONMENT\n");
    for (name, meaning) in ENVIRONMENT {
        tagged(&mut out, &format!("\\fB{name}\\fR"), meaning);
    }
    paragraph(
        &mut out,
        "libpq's variables, each read as libpq reads it for the keyword of a connection \
         string that leaves it out:",
    );
    for (keyword, name) in LIBPQ_ENVIRONMENT {
        tagged(&mut out, &format!("\\fB{name}\\fR"), keyword);
    }

    out.push_str(".SH FILES\n");
    for (paths, meaning) in FILES {
        let paths: Vec<String> = paths
            .split(", ")
            .map(|p| format!("\\fI{}\\fR", escape(p)))
            .collect();
        tagged(&mut out, &paths.join(", "), meaning);
    }

    out.push_str(".SH \"SEE ALSO\"\n");
    out.push_str(".BR psql (1),\n.BR pg_dump (1),\n.BR pg_restore (1)\n");
    paragraph(
        &mut out,
        "pgcopy help COMMAND prints the options of a command as this page lists them.",
    );
    out
}

/// One command's subsection: what it does, its positional arguments, its options group by
/// group, its notes and its exit codes.
fn section(out: &mut String, page: &Page) {
    let mut title = format!("pgcopy {}", page.name);
    for positional in &page.positionals {
        title.push(' ');
        title.push_str(&positional.argument.name);
    }
    out.push_str(&format!(".SS \"{}\"\n", escape(&title)));
    out.push_str(&format!("{}\n", escape(&page.description)));
    for positional in &page.positionals {
        let tag = format!("\\fI{}\\fR", escape(&positional.argument.name));
        tagged(out, &tag, &positional.description);
    }
    for group in &page.groups {
        out.push_str(&format!(".PP\n\\fI{}:\\fR\n", escape(&group.heading)));
        for flag in &group.flags {
            option(out, flag);
        }
    }
    for note in &page.notes {
        paragraph(out, note);
    }
    if !page.exit_codes.is_empty() {
        out.push_str(".PP\n\\fIExit status:\\fR\n");
        for (code, meaning) in &page.exit_codes {
            tagged(out, &format!("\\fB{}\\fR", escape(code)), meaning);
        }
    }
}

/// An option as a tagged paragraph: `-q, --quiet` or `--parallel N`, then its description.
fn option(out: &mut String, flag: &Flag) {
    let names: Vec<String> = flag
        .names
        .iter()
        .map(|n| format!("\\fB{}\\fR", escape(n)))
        .collect();
    let mut tag = names.join(", ");
    if let Some(argument) = &flag.argument {
        tag.push_str(&format!(" \\fI{}\\fR", escape(&argument.name)));
    }
    tagged(out, &tag, &flag.description);
}

/// `pgcopy copy [options]`, `pgcopy completions SHELL`: how a command is called, for the
/// synopsis.
fn command_line(page: &Page) -> String {
    let mut line = format!("\\fBpgcopy {}\\fR", escape(&page.name));
    // Every command takes --help; any other option is worth a mention.
    if page.flags().any(|f| f.long() != Some("--help")) {
        line.push_str(" [\\fIoptions\\fR]");
    }
    for positional in &page.positionals {
        line.push_str(&format!(" \\fI{}\\fR", escape(&positional.argument.name)));
    }
    line
}

/// A usage line as a synopsis: literal words bold, `<arguments>` italic, brackets plain.
fn synopsis(usage: &str) -> String {
    let words: Vec<String> = usage
        .split_whitespace()
        .map(|token| {
            let core = token.trim_start_matches('[').trim_end_matches(']');
            let open = &token[..token.len() - token.trim_start_matches('[').len()];
            let close = &token[token.trim_end_matches(']').len()..];
            let core = match core.strip_prefix('<') {
                Some(argument) => {
                    let (name, more) = match argument.split_once('>') {
                        Some((name, more)) => (name, more),
                        None => (argument, ""),
                    };
                    let (name, dots) = match name.strip_suffix("...") {
                        Some(name) => (name, "..."),
                        None => (name, ""),
                    };
                    format!("\\fI{}\\fR{dots}{}", escape(name), escape(more))
                }
                None => format!("\\fB{}\\fR", escape(core)),
            };
            format!("{open}{core}{close}")
        })
        .collect();
    format!("{}\n", words.join(" "))
}

/// The page's date, the day it was made (as help2man dates its pages): `2025-03-01`.
fn date(now: SystemTime) -> String {
    let days = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `.TP`: a tag line (already in roff) and the paragraph under it.
fn tagged(out: &mut String, tag: &str, text: &str) {
    out.push_str(&format!(".TP\n{tag}\n{}\n", escape(text)));
}

fn paragraph(out: &mut String, text: &str) {
    out.push_str(&format!(".PP\n{}\n", escape(text)));
}

/// Text for a line of roff: a backslash, a dash (so options copy as typed), a quote or a
/// backquote as roff spells it, other non-ASCII characters as their Unicode escape, and a
/// leading period kept from reading as a request.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    if out.starts_with('.') {
        out.insert_str(0, "\\&");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_roff_would_read_otherwise() {
        assert_eq!(escape("--fk-mode"), "\\-\\-fk\\-mode");
        assert_eq!(escape(".pgpass"), "\\&.pgpass");
        assert_eq!(
            escape("the load's `way` \\ …"),
            "the load\\(aqs \\(gaway\\(ga \\e \\[u2026]"
        );
    }

    #[test]
    fn dates_the_page_by_the_calendar() {
        let day = |secs: u64| date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(951_782_400), "2000-02-29");
        assert_eq!(day(1_709_251_199), "2024-02-29");
        assert_eq!(day(1_735_689_600), "2025-01-01");
    }

    #[test]
    fn writes_a_usage_line_as_a_synopsis() {
        assert_eq!(
            synopsis("pgcopy [-V] [<command>] [<args>]"),
            "\\fBpgcopy\\fR [\\fB\\-V\\fR] [\\fIcommand\\fR] [\\fIargs\\fR]\n"
        );
        assert_eq!(
            synopsis("pgcopy copy [--include-tables <LIST...>]"),
            "\\fBpgcopy\\fR \\fBcopy\\fR [\\fB\\-\\-include\\-tables\\fR \\fILIST\\fR...]\n"
        );
    }

    #[test]
    fn the_page_has_every_section_and_every_command() {
        let manual = Manual::read();
        let page = page(&manual);
        for heading in [
            ".SH NAME\npgcopy \\- copy the data",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(heading), "{heading}");
        }
        for command in &manual.commands {
            let title = format!(".SS \"pgcopy {}", command.name);
            assert!(page.contains(&title), "{title}");
        }
        assert!(page.contains(".SS \"pgcopy completions SHELL\""));
        assert!(page.contains(
            ".PP\n\\fIThe destination:\\fR\n.TP\n\\fB\\-\\-fk\\-mode\\fR \\fIMODE\\fR\n"
        ));
        assert!(page.contains(".TP\n\\fB\\-q\\fR, \\fB\\-\\-quiet\\fR\n"));
        assert!(page.contains("\\fBpgcopy help\\fR [\\fIcommand\\fR]"));
    }

    /// Every environment variable the code reads by name is documented: `var("…")` and
    /// `var_os("…")` calls, and `PGCOPY_…` names handed to them. libpq's come from the table
    /// the connection strings are read with, so they cannot be missed.
    #[test]
    fn every_variable_the_code_reads_is_documented() {
        let page = page(&Manual::read());
        let mut files = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut read = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests set variables of their own.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for opening in ["var(\"", "var_os(\"", "\"PGCOPY_"] {
                for (at, _) in text.match_indices(opening) {
                    // A `PGCOPY_` name is read from its first letter, a call's after its quote.
                    let start = match opening {
                        "\"PGCOPY_" => at + 1,
                        _ => at + opening.len(),
                    };
                    let name: String = text[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        read.push((name, path.display().to_string()));
                    }
                }
            }
        }
        assert!(
            read.iter().any(|(name, _)| name == "PGCOPY_MASK_KEY"),
            "{read:?}"
        );
        for (name, file) in read {
            assert!(
                page.contains(&format!(".TP\n\\fB{name}\\fR\n")),
                "{name}, read in {file}, is not in the manual's ENVIRONMENT"
            );
        }
    }
}
