//! How pgcopy lays out what it prints on stdout: rows of cells in aligned columns, and JSON
//! documents (`--json`).

use std::io::{self, Write};

/// Lays out rows of cells in columns; `align` has an `l` or `r` per column (left or right;
/// columns beyond it are left-aligned).
pub(crate) fn write_table(
    out: &mut impl Write,
    align: &str,
    rows: &[Vec<String>],
) -> io::Result<()> {
    let right: Vec<bool> = align.chars().map(|c| c == 'r').collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Writes a JSON document to stdout (see `stdout`).
pub(crate) fn print_json(doc: &serde_json::Value) -> io::Result<()> {
    let mut out = stdout();
    writeln!(out, "{doc:#}")?;
    out.flush()
}

/// Standard output, for all pgcopy prints there. A reader that closed the pipe (`pgcopy
/// list | head -1`) has what it wanted: writing on is no error and no panic, and the run
/// keeps the exit code it earned, as ripgrep and fd do.
pub(crate) fn stdout() -> Closable<io::StdoutLock<'static>> {
    Closable(io::stdout().lock())
}

/// Standard error, likewise (`pgcopy list 2>&1 | head -1`).
pub(crate) fn stderr() -> Closable<io::StderrLock<'static>> {
    Closable(io::stderr().lock())
}

/// A stream whose reader may have gone: what is written after is dropped.
pub(crate) struct Closable<W>(W);

impl<W: Write> Write for Closable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.flush() {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_table_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["name".to_string(), "rows".to_string()],
            vec!["a_long_name".to_string(), "5".to_string()],
        ];
        write_table(&mut out, "lr", &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name         rows\na_long_name     5\n"
        );
    }
}
