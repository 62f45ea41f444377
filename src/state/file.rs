//! What survives a crash: before pgcopy changes a destination's schema it writes, fsynced,
//! everything needed to put it back into a state file named after that destination, and as
//! tables are done it records them there, for `copy --resume`. A run that ends with every
//! table copied removes it; after `kill -9` or a crash the next `copy` (or `recover`) to that
//! destination finds it and puts the schema back first.

use crate::pg::sql::TableName;
use crate::schema::constraints::{Constraint, Kind};
use crate::schema::indexes::SavedIndex;
use anyhow::{bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &str = "pgcopy-state 1";

/// The default state directory: `$XDG_STATE_HOME/pgcopy`, else `~/.local/state/pgcopy`.
pub(crate) fn default_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("pgcopy"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/pgcopy")),
        None => bail!("neither XDG_STATE_HOME nor HOME is set: pass --state-dir"),
    }
}

/// What an interrupted run left to undo on one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    /// The destination as `user@host:port/db`, for messages.
    pub(crate) dest: String,
    pub(crate) pid: u32,
    /// Seconds since the Unix epoch when the run began changing the destination.
    pub(crate) started: u64,
    /// Foreign keys dropped for the load.
    pub(crate) keys: Vec<Constraint>,
    /// Foreign keys that are in place but `NOT VALID` although they were valid before a
    /// run: the data they check was left half copied. The next copy validates them again.
    pub(crate) validate: Vec<Constraint>,
    /// What the run copies (see `commands::copy::fingerprint`), while it has tables left to do.
    pub(crate) plan: Option<String>,
    /// Tables the run (and the runs it resumed) copied completely.
    pub(crate) done: Vec<Done>,
    /// The pieces of the tables split by key ranges that are not done yet, each with
    /// whether it was copied: `--resume` copies only the others, into the table as it is.
    pub(crate) pieces: Vec<PieceState>,
    /// Indexes of tables copied in pieces, dropped before the first piece and not built
    /// again yet.
    pub(crate) indexes: Vec<SavedIndex>,
}

/// One piece of a table split by key ranges (see `plan::pieces`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PieceState {
    pub(crate) table: TableName,
    /// The key columns, for messages.
    pub(crate) key: String,
    /// The piece's `WHERE …` condition, as the run that cut it wrote it.
    pub(crate) condition: String,
    pub(crate) done: bool,
    /// The table's file when the piece was committed (0 while not done): a resumed run
    /// takes up the pieces only while the table still has it, as with `Done`.
    pub(crate) filenode: u32,
    /// The piece's range of key values, where the run that cut it knew them, as
    /// `plan::pieces` writes it.
    pub(crate) range: Option<String>,
}

/// A table a run copied completely, and the file its load left it in
/// (`pg_relation_filenode`): `--resume` skips the table only while it still has that file.
/// A table truncated or rewritten since, or a destination that is not the one the run
/// wrote to (a clone restored from the same backup shares its identity, but not its
/// files' numbers), gets it copied again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Done {
    pub(crate) table: TableName,
    /// 0 where it is not known.
    pub(crate) filenode: u32,
}

impl State {
    /// An empty state of this process for a destination.
    pub(crate) fn new(dest: String) -> State {
        State {
            dest,
            pid: std::process::id(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            keys: Vec::new(),
            validate: Vec::new(),
            plan: None,
            done: Vec::new(),
            pieces: Vec::new(),
            indexes: Vec::new(),
        }
    }

    /// Nothing to put back and nothing to resume.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.validate.is_empty()
            && self.plan.is_none()
            && self.indexes.is_empty()
    }

    fn encode(&self) -> String {
        let mut out = format!(
            "{MAGIC}\ndest\t{}\npid\t{}\nstarted\t{}\n",
            escape(&self.dest),
            self.pid,
            self.started
        );
        let tagged = self
            .keys
            .iter()
            .map(|k| ("fk", k))
            .chain(self.validate.iter().map(|k| ("validate", k)));
        for (tag, key) in tagged {
            let kind = match key.kind {
                Kind::ForeignKey => "f",
                Kind::NotValidCheck => "c",
            };
            let fields = [
                flag(key.validated),
                flag(key.on_partitioned),
                flag(key.outside),
                escape(&key.table.schema),
                escape(&key.table.name),
                escape(&key.name),
                escape(&key.definition),
                kind.to_string(),
                flag(key.references_partitioned),
                // No comment and an empty one are the same to COMMENT ON.
                escape(key.comment.as_deref().unwrap_or_default()),
            ];
            out.push_str(&format!("{tag}\t{}\n", fields.join("\t")));
        }
        if let Some(plan) = &self.plan {
            out.push_str(&format!("plan\t{}\n", escape(plan)));
        }
        for done in &self.done {
            out.push_str(&format!(
                "done\t{}\t{}\t{}\n",
                escape(&done.table.schema),
                escape(&done.table.name),
                done.filenode
            ));
        }
        for piece in &self.pieces {
            out.push_str(&format!(
                "piece\t{}\t{}\t{}\t{}\t{}\t{}",
                escape(&piece.table.schema),
                escape(&piece.table.name),
                escape(&piece.key),
                flag(piece.done),
                piece.filenode,
                escape(&piece.condition)
            ));
            if let Some(range) = &piece.range {
                out.push_str(&format!("\t{}", escape(range)));
            }
            out.push('\n');
        }
        for index in &self.indexes {
            let mut fields = vec![
                escape(&index.table.schema),
                escape(&index.table.name),
                escape(&index.name),
            ];
            fields.extend(index.statements.iter().map(|s| escape(s)));
            out.push_str(&format!("index\t{}\n", fields.join("\t")));
        }
        out
    }

    fn decode(text: &str) -> Result<State> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            bail!("not a pgcopy state file (or one from a newer pgcopy)");
        }
        let mut state = State {
            pid: 0,
            started: 0,
            ..State::new(String::new())
        };
        for line in lines {
            let fields: Vec<String> = line.split('\t').map(unescape).collect();
            match fields.as_slice() {
                [tag, dest] if tag == "dest" => state.dest = dest.clone(),
                [tag, pid] if tag == "pid" => state.pid = pid.parse()?,
                [tag, started] if tag == "started" => state.started = started.parse()?,
                [tag, plan] if tag == "plan" => state.plan = Some(plan.clone()),
                [tag, schema, table, filenode] if tag == "done" => state.done.push(Done {
                    table: TableName::new(schema.clone(), table.clone()),
                    filenode: filenode.parse()?,
                }),
                [tag, schema, table, name, statements @ ..] if tag == "index" => {
                    state.indexes.push(SavedIndex {
                        table: TableName::new(schema.clone(), table.clone()),
                        name: name.clone(),
                        statements: statements.to_vec(),
                    })
                }
                [tag, schema, table, key, done, filenode, condition, range @ ..]
                    if tag == "piece" && range.len() <= 1 =>
                {
                    state.pieces.push(PieceState {
                        table: TableName::new(schema.clone(), table.clone()),
                        key: key.clone(),
                        condition: condition.clone(),
                        done: done == "1",
                        filenode: filenode.parse()?,
                        range: range.first().cloned(),
                    })
                }
                [tag, validated, partitioned, outside, schema, table, name, definition, kind, references_partitioned, comment]
                    if tag == "fk" || tag == "validate" =>
                {
                    let list = if tag == "fk" {
                        &mut state.keys
                    } else {
                        &mut state.validate
                    };
                    list.push(Constraint {
                        kind: match kind.as_str() {
                            "c" => Kind::NotValidCheck,
                            _ => Kind::ForeignKey,
                        },
                        table: TableName::new(schema.clone(), table.clone()),
                        name: name.clone(),
                        definition: definition.clone(),
                        validated: validated == "1",
                        on_partitioned: partitioned == "1",
                        references_partitioned: references_partitioned == "1",
                        outside: outside == "1",
                        comment: (!comment.is_empty()).then(|| comment.clone()),
                    })
                }
                _ => bail!("unreadable line in state file: {line:?}"),
            }
        }
        Ok(state)
    }
}

/// The state file of one destination database.
#[derive(Clone, Debug)]
pub(crate) struct StateFile {
    pub(crate) path: PathBuf,
}

impl StateFile {
    /// The file for a destination, named by its server identity (see `server::Identity::key`)
    /// so that any URL reaching that database finds it.
    pub(crate) fn new(dir: &Path, database: &str, identity_key: &str) -> StateFile {
        let readable: String = database
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let name = format!("{readable}-{:016x}.state", fnv1a(identity_key.as_bytes()));
        StateFile {
            path: dir.join(name),
        }
    }

    /// Files of this destination's identity set aside (see `set_aside`), oldest first.
    pub(crate) fn set_aside_files(&self) -> Result<Vec<StateFile>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let prefix = format!("{stem}-");
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.extension().is_some_and(|x| x == "state")
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        files.sort();
        Ok(files.into_iter().map(|path| StateFile { path }).collect())
    }

    /// Moves this file out of the way, under a name of its own next to it, and returns that
    /// file: for a state that does not describe the server now answering to this identity.
    pub(crate) fn set_aside(&self, state: &State) -> Result<StateFile> {
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let aside = self
            .path
            .with_file_name(format!("{stem}-{}-{}.state", state.started, state.pid));
        fs::rename(&self.path, &aside)
            .with_context(|| format!("setting {} aside", self.path.display()))?;
        Ok(StateFile { path: aside })
    }

    pub(crate) fn load(&self) -> Result<Option<State>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => State::decode(&text)
                .map(Some)
                .with_context(|| format!("reading state file {}", self.path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Writes the state durably: a temporary file, fsynced, renamed over the old one, and
    /// the directory fsynced, so a crash leaves either the old file or the new one.
    pub(crate) fn save(&self, state: &State) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(state.encode().as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("writing state file {}", self.path.display()))
    }

    /// Saves the state, or removes the file when there is nothing left in it.
    pub(crate) fn store(&self, state: &State) -> Result<()> {
        if state.is_empty() {
            self.remove()
        } else {
            self.save(state)
        }
    }

    pub(crate) fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("removing {}", self.path.display())),
        }
    }
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_string()
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// FNV-1a: a hash that, unlike std's, stays the same across Rust versions and runs.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, definition: &str) -> Constraint {
        Constraint {
            kind: Kind::ForeignKey,
            table: TableName::new("we\tird", "Child\nTable"),
            name: name.into(),
            definition: definition.into(),
            validated: true,
            on_partitioned: false,
            references_partitioned: true,
            outside: true,
            comment: Some("it's\ta \"key\"".into()),
        }
    }

    #[test]
    fn state_round_trips_through_its_file_format() {
        let mut state = State::new("app@db:5432/app".into());
        state.keys = vec![
            key("fk\\1", "FOREIGN KEY (a) REFERENCES p(a) ON DELETE CASCADE"),
            key("fk2", "FOREIGN KEY (\"b\tc\") REFERENCES p(b) NOT VALID"),
        ];
        state.validate = vec![Constraint {
            kind: Kind::NotValidCheck,
            comment: None,
            ..key("ck3", "CHECK ((a > 0)) NOT VALID")
        }];
        state.plan = Some("0123abcd".into());
        state.done = vec![
            Done {
                table: TableName::new("s", "t\tx"),
                filenode: 16_384,
            },
            Done {
                table: TableName::new("public", "u"),
                filenode: 0,
            },
        ];
        state.pieces = vec![PieceState {
            table: TableName::new("public", "big"),
            key: "site, n".into(),
            condition: "WHERE ROW(\"site\", \"n\") >= ROW('a\tb''c'::text, '5'::integer)".into(),
            done: true,
            filenode: 24_576,
            range: Some("{\"low\": [\"a\tb\"]}".into()),
        }];
        state.indexes = vec![SavedIndex {
            table: TableName::new("public", "big"),
            name: "big\tpkey".into(),
            statements: vec![
                "CREATE UNIQUE INDEX big_pkey ON public.big USING btree (id)".into(),
                "COMMENT ON INDEX public.big_pkey IS 'a\\b'".into(),
            ],
        }];
        assert_eq!(State::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn saves_loads_and_removes_durably() {
        let dir = std::env::temp_dir().join(format!("pgcopy-state-test-{}", std::process::id()));
        let file = StateFile::new(&dir, "my db", "12345:5432/my db");
        assert!(file
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("my_db-"));
        assert_eq!(file.load().unwrap(), None);
        let mut state = State::new("x@y:1/z".into());
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), None, "an empty state is no file");
        state.keys = vec![key("k", "FOREIGN KEY (a) REFERENCES p(a)")];
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), Some(state));
        file.remove().unwrap();
        assert_eq!(file.load().unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_files_it_cannot_read() {
        assert!(State::decode("something else\n").is_err());
        assert!(State::decode(&format!("{MAGIC}\nfk\tonly\n")).is_err());
    }

    #[test]
    fn names_files_stably() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
