//! The password file (`~/.pgpass`, or `PGPASSFILE`), read by libpq's rules so the file that
//! works for `psql` works for pgcopy (PostgreSQL docs, "The Password File").
//!
//! Each line is `hostname:port:database:username:password`; the first line that matches wins.
//! `*` matches anything in the first four fields, `\:` and `\\` stand for `:` and `\`, and
//! lines starting with `#` are comments. A file that others may read is ignored, as libpq
//! ignores it.

use std::path::Path;

/// The connection a password is wanted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wanted<'a> {
    /// The host name as given, or `localhost` for a unix-domain socket.
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) database: &'a str,
    pub(crate) user: &'a str,
}

/// The password for `wanted` from the file at `path`. `None`, silently, when the file does not
/// exist or no line matches; `None` with a warning when it cannot be read, is not a plain file,
/// or (on Unix) has group or world permissions.
pub(crate) fn lookup(path: &Path, wanted: &Wanted) -> Option<String> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            log::warn!("cannot read password file {:?}: {err}", path.display());
            return None;
        }
    };
    if !metadata.is_file() {
        log::warn!("password file {:?} is not a plain file", path.display());
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "password file {:?} has group or world access; permissions should be u=rw \
                 (0600) or less",
                path.display()
            );
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => find(&text, wanted),
        Err(err) => {
            log::warn!("cannot read password file {:?}: {err}", path.display());
            None
        }
    }
}

/// The password of the first line of a password file's `text` that matches `wanted`.
pub(crate) fn find(text: &str, wanted: &Wanted) -> Option<String> {
    let port = wanted.port.to_string();
    let want = [wanted.host, port.as_str(), wanted.database, wanted.user];
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split(line);
            // Four fields and a password; libpq ignores a line with fewer.
            if fields.len() < 5 {
                return None;
            }
            let matches = fields
                .iter()
                .zip(want)
                .all(|(field, want)| field.wildcard || field.text == want);
            matches.then(|| fields[4].text.clone())
        })
}

/// One field of a line, unescaped.
struct Field {
    text: String,
    /// The field was a lone, unescaped `*`.
    wildcard: bool,
}

/// Splits a line at its unescaped colons, undoing `\` escapes. As in libpq, the password ends
/// at the next unescaped colon, and anything after it is ignored.
fn split(line: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut text = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                escaped_any = true;
                // A backslash at the end of the line stands for itself.
                text.push(chars.next().unwrap_or('\\'));
            }
            ':' => {
                fields.push(finish(&mut text, &mut escaped_any));
                if fields.len() == 5 {
                    return fields;
                }
            }
            c => text.push(c),
        }
    }
    fields.push(finish(&mut text, &mut escaped_any));
    fields
}

fn finish(text: &mut String, escaped_any: &mut bool) -> Field {
    let field = Field {
        wildcard: text == "*" && !*escaped_any,
        text: std::mem::take(text),
    };
    *escaped_any = false;
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Wanted<'a> {
        Wanted {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn the_first_matching_line_wins() {
        let file = "\
# production
db1:5432:app:alice:first
db1:5432:app:alice:second
db1:5433:app:alice:other-port
";
        assert_eq!(
            find(file, &wanted("db1", 5432, "app", "alice")).as_deref(),
            Some("first")
        );
        assert_eq!(
            find(file, &wanted("db1", 5433, "app", "alice")).as_deref(),
            Some("other-port")
        );
        assert_eq!(find(file, &wanted("db2", 5432, "app", "alice")), None);
        assert_eq!(find(file, &wanted("db1", 5432, "app", "bob")), None);
        assert_eq!(find(file, &wanted("db1", 5432, "other", "alice")), None);
    }

    #[test]
    fn a_star_matches_anything_in_the_first_four_fields() {
        let file = "db1:*:*:alice:for-alice\n*:*:*:*:fallback\n";
        assert_eq!(
            find(file, &wanted("db1", 6000, "x", "alice")).as_deref(),
            Some("for-alice")
        );
        assert_eq!(
            find(file, &wanted("db9", 1, "y", "bob")).as_deref(),
            Some("fallback")
        );
        // An escaped star is a star, and a star inside a field is no wildcard.
        let file = "\\*:*:*:*:literal\ndb*:*:*:*:partial\n";
        assert_eq!(find(file, &wanted("db1", 5432, "d", "u")), None);
        assert_eq!(
            find(file, &wanted("*", 5432, "d", "u")).as_deref(),
            Some("literal")
        );
        assert_eq!(
            find(file, &wanted("db*", 5432, "d", "u")).as_deref(),
            Some("partial")
        );
    }

    #[test]
    fn backslash_escapes_colons_and_backslashes() {
        let file = r"db1:5432:my\:db:us\\er:pa\:ss\\word\:
db1:5432:app:alice:ends:here
";
        assert_eq!(
            find(file, &wanted("db1", 5432, "my:db", r"us\er")).as_deref(),
            Some(r"pa:ss\word:")
        );
        // The password ends at an unescaped colon, as in libpq.
        assert_eq!(
            find(file, &wanted("db1", 5432, "app", "alice")).as_deref(),
            Some("ends")
        );
    }

    #[test]
    fn skips_comments_short_lines_and_windows_line_ends() {
        let file = "#db1:5432:app:alice:commented\ndb1:5432:app\r\ndb1:5432:app:alice:pw\r\n";
        assert_eq!(
            find(file, &wanted("db1", 5432, "app", "alice")).as_deref(),
            Some("pw")
        );
    }

    #[cfg(unix)]
    #[test]
    fn ignores_a_file_that_others_may_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgcopy-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let want = wanted("localhost", 5432, "app", "alice");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &want).as_deref(), Some("secret"));
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(lookup(&path, &want), None, "mode {mode:o}");
        }
        assert_eq!(lookup(&dir.join("missing"), &want), None);
        assert_eq!(lookup(&dir, &want), None, "a directory is no password file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
