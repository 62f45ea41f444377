//! The manual against the binary: the README is a front page that fits on a screen and shows
//! only commands that exist, every option `--help` shows is documented in `docs/` exactly
//! once, and every link of the README and of `docs/` reaches a file and a heading that exist.
//! No PostgreSQL: these run the binary's `help` and read Markdown.
//!
//! **Documented** means: a Markdown heading in `docs/*.md` (outside code blocks) whose whole
//! text is the option in code, with its other spellings and its argument where it has them,
//! comma-separated: ``#### `--parallel N` ``, ``#### `-q`, `--quiet` ``,
//! ``#### `--source CONN`, `--dest CONN` ``. That heading is the option's one place (what it
//! does, its default, its argument); everything else links there. A mention in a sentence,
//! a table, a list item or a heading with more words in it does not count, and two such
//! headings for one option fail the test. The check runs from `--help` to the docs, never
//! the other way: options documented ahead of the binary (being added on another branch)
//! are fine.

use crate::util::{self, assert_exit, exit};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The README must fit on a screen or two: the reference lives in `docs/`.
const README_MAX_LINES: usize = 250;

#[test]
fn docs_document_every_option_help_shows_exactly_once() {
    let definitions = option_definitions();
    let mut problems = Vec::new();
    for (option, places) in &definitions {
        if places.len() > 1 {
            problems.push(format!(
                "{option} has {} headings, one is its place: {}",
                places.len(),
                places.join(", ")
            ));
        }
    }
    let top = help(None);
    let mut shown: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for option in options(&top) {
        shown.entry(option).or_default().insert("pgcopy".into());
    }
    let commands = commands(&top);
    assert!(
        commands.contains("copy") && commands.contains("verify"),
        "`pgcopy help` lists no copy or verify command; is its format still understood?\n{top}"
    );
    for command in commands.iter().filter(|c| *c != "help") {
        let text = help(Some(command));
        let found = options(&text);
        assert!(
            !found.is_empty(),
            "`pgcopy help {command}` shows no option; is its format still understood?\n{text}"
        );
        for option in found {
            shown.entry(option).or_default().insert(command.clone());
        }
    }
    assert!(
        shown.contains_key("--parallel") && shown.contains_key("-q"),
        "options were not read from the help: {shown:?}"
    );
    for (option, commands) in &shown {
        if !definitions.contains_key(option) {
            let commands: Vec<_> = commands.iter().cloned().collect();
            problems.push(format!(
                "{option} (pgcopy {}) has no heading of its own in docs/ (e.g. #### `{option}`)",
                commands.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn docs_readme_shows_only_commands_help_lists() {
    let commands = commands(&help(None));
    let readme = read(&root().join("README.md"));
    let mut shown = Vec::new();
    for line in code_block_lines(&readme) {
        let line = without_comment(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "pgcopy" && !pair[1].starts_with('-') {
                shown.push((pair[1].to_string(), line.trim().to_string()));
            }
        }
    }
    assert!(
        shown.len() >= 3,
        "the README's code blocks show fewer than three pgcopy commands: {shown:?}"
    );
    let unknown: Vec<String> = shown
        .iter()
        .filter(|(command, _)| !commands.contains(command))
        .map(|(command, line)| format!("`pgcopy {command}` in: {line}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "the README shows commands `pgcopy help` does not list ({commands:?}):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn docs_readme_fits_on_a_screen() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; a front page has fewer than {README_MAX_LINES}: move the \
         reference into docs/"
    );
}

#[test]
fn docs_links_reach_files_and_headings_that_exist() {
    let mut files = vec![root().join("README.md")];
    files.extend(docs_pages());
    let mut problems = Vec::new();
    let mut to_docs = 0;
    for file in &files {
        let text = read(file);
        let dir = file.parent().expect("a file has a directory");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let from = file.strip_prefix(root()).unwrap_or(file).display();
            if file.ends_with("README.md") && path.starts_with("docs/") {
                to_docs += 1;
            }
            if !linked.exists() {
                problems.push(format!("{from}: ({target}): no file {}", linked.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_markdown = linked.extension().is_some_and(|e| e == "md");
                if is_markdown && !heading_slugs(&read(&linked)).contains(anchor) {
                    problems.push(format!("{from}: ({target}): no heading #{anchor} there"));
                }
            }
        }
    }
    assert!(
        to_docs >= 9,
        "the README links to docs/ only {to_docs} times: it should link every page"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The binary's help
// ---------------------------------------------------------------------------------------------

/// What `pgcopy help` (no command) or `pgcopy help COMMAND` prints on stdout; it must succeed.
fn help(command: Option<&str>) -> String {
    let out = util::run(util::pgcopy().arg("help").args(command));
    assert_exit!(out, exit::SUCCESS);
    out.stdout
}

/// The commands `pgcopy help` lists (its "Commands:" section), and the bare words that ask
/// for help (`help`, in `-h, --help, help`).
fn commands(top: &str) -> BTreeSet<String> {
    let mut commands = BTreeSet::new();
    let mut in_commands = false;
    for line in top.lines() {
        if !line.starts_with(' ') {
            in_commands = line == "Commands:";
            continue;
        }
        if in_commands && !line.starts_with("   ") {
            if let Some(name) = line.split_whitespace().next() {
                commands.insert(name.to_string());
            }
        }
    }
    for line in option_lines(top) {
        commands.extend(
            option_words(line)
                .into_iter()
                .filter(|w| !w.starts_with('-')),
        );
    }
    commands
}

/// The options a help text shows: every spelling (`-q` and `--quiet`), without arguments.
fn options(text: &str) -> BTreeSet<String> {
    option_lines(text)
        .flat_map(option_words)
        .filter(|w| w.starts_with('-'))
        .collect()
}

/// The lines of a help text that start an option, in every section but the usage, the
/// commands, the notes and the exit codes: `  --parallel N      tables copied at once …`.
fn option_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut section = "";
    text.lines().filter(move |line| {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            return false;
        }
        let prose = ["Commands:", "Notes:", "Error codes:"].contains(&section);
        !prose && line.starts_with("  -")
    })
}

/// The spellings that name an option at the start of its line, comma-separated up to its
/// argument or description: `-h, --help, help  display…` gives `-h`, `--help`, `help`;
/// `--parallel N  tables…` gives `--parallel`.
fn option_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    for token in line.split_whitespace() {
        words.push(token.trim_end_matches(',').to_string());
        if !token.ends_with(',') {
            break;
        }
    }
    words
}

// ---------------------------------------------------------------------------------------------
// The Markdown
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `docs/*.md`, sorted.
fn docs_pages() -> Vec<PathBuf> {
    let dir = root().join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ has no pages");
    pages
}

/// Each option a docs heading defines, with where: `--parallel` → [`docs/copying.md:170`].
fn option_definitions() -> BTreeMap<String, Vec<String>> {
    let mut definitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for page in docs_pages() {
        let text = read(&page);
        let name = page
            .file_name()
            .expect("a page has a name")
            .to_string_lossy();
        for (number, heading) in headings(&text) {
            for option in defined_options(heading) {
                definitions
                    .entry(option)
                    .or_default()
                    .push(format!("docs/{name}:{number}"));
            }
        }
    }
    definitions
}

/// The options a heading's text defines: none unless the whole text is code spans of
/// options, comma-separated, each an option and at most one argument (`--fk-mode MODE`).
fn defined_options(heading: &str) -> Vec<String> {
    let mut options = Vec::new();
    for part in heading.split(", ") {
        let Some(code) = part.strip_prefix('`').and_then(|p| p.strip_suffix('`')) else {
            return Vec::new();
        };
        let mut words = code.split(' ');
        let option = words.next().unwrap_or_default();
        let name = option
            .strip_prefix("--")
            .or_else(|| option.strip_prefix('-'))
            .unwrap_or_default();
        let is_option = name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !is_option || words.count() > 1 {
            return Vec::new();
        }
        options.push(option.to_string());
    }
    options
}

/// The lines inside fenced code blocks.
fn code_block_lines(text: &str) -> Vec<&str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            lines.push(line);
        }
    }
    lines
}

/// A line of a code block without its comment (`#` at the start or after a space).
fn without_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The headings outside code blocks, with their line numbers, as their text: `## Install`
/// gives (n, "Install").
fn headings(text: &str) -> Vec<(usize, &str)> {
    let mut inside = false;
    let mut headings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            headings.push((index + 1, line[hashes..].trim()));
        }
    }
    headings
}

/// The anchors GitHub gives a page's headings: the text without its Markdown, lower case,
/// spaces as hyphens, punctuation gone, a repeated one numbered (`-1`, `-2`, …).
fn heading_slugs(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut slugs = BTreeSet::new();
    for (_, heading) in headings(text) {
        let plain = without_links(heading).replace(['`', '*'], "");
        let slug: String = plain
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        let unique = if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        };
        *count += 1;
        slugs.insert(unique);
    }
    slugs
}

/// `[text](target)` as `text`.
fn without_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            let target = &after[close + 2..];
            target.find(')').map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the links outside code: `[text](target)`, the text possibly holding
/// code (`` [`--parallel`](copying.md#--parallel-n) ``).
fn link_targets(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut targets = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            continue;
        }
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.is_empty() && !target.contains(' ') {
                targets.push(target.to_string());
            }
            rest = &after[end..];
        }
    }
    targets
}

/// A line with its inline code spans replaced by `code`, so a `](` inside one is no link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    for (index, part) in line.split('`').enumerate() {
        out.push_str(if index % 2 == 0 { part } else { "code" });
    }
    out
}
