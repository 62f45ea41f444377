//! pgcopy's state files as a test sees them: the lines of the one that belongs to a
//! destination database, to check what a run recorded (keys dropped, tables done) and that a
//! clean run leaves none behind.

use std::path::PathBuf;

use super::db::TestDb;
use super::run::state_dir;

/// Every state file under this test process's state directory.
pub fn state_files() -> Vec<PathBuf> {
    std::fs::read_dir(state_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "state"))
                .collect()
        })
        .unwrap_or_default()
}

/// The lines of this database's state file, empty when it has none.
///
/// pgcopy names a file after the destination's database, cut to 40 characters, so tests whose
/// names share their first 40 could see each other's: a file counts only when its `dest` line
/// names this database and port too.
pub fn state_lines(db: &TestDb) -> Vec<String> {
    let prefix: String = db
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .chain(['-'])
        .collect();
    let dest = format!(":{}/{}", db.port, db.name);
    state_files()
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .filter(|text| {
            text.lines()
                .any(|l| l.strip_prefix("dest\t").is_some_and(|d| d.ends_with(&dest)))
        })
        .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

pub fn has_state_file(db: &TestDb) -> bool {
    !state_lines(db).is_empty()
}

/// Lines of the state file that start with `tag` (`fk`: keys to put back; `validate`: keys
/// to validate again; `done`: tables finished, for `--resume`).
pub fn state_count(db: &TestDb, tag: &str) -> usize {
    state_lines(db)
        .iter()
        .filter(|l| l.starts_with(&format!("{tag}\t")))
        .count()
}
