//! Rewriting fields of a table's binary `COPY` stream as it passes, chunk by chunk: only
//! the fields the plan says a rewrite changes (`plan::reading::Reads::rewrite`, the keyed
//! masks) are taken apart and written again, the others passed as they came.

use crate::plan::reading::ValueRewrite;
use crate::plan::TablePlan;
use anyhow::{bail, Result};

/// Rewrites the fields of one table's binary COPY stream, chunk by chunk.
pub(crate) struct RowRewriter {
    /// By field position: what rewrites that field, if anything does.
    fields: Vec<Option<Box<dyn ValueRewrite>>>,
    /// Bytes of a tuple (or the header) that the next chunk completes.
    pending: Vec<u8>,
    header_done: bool,
}

impl RowRewriter {
    /// The rewriter of `table`'s rows; `None` when nothing rewrites them. Each field is
    /// rewritten as the type it travels as (`TablePlan::wire_type`); one its rewrite cannot
    /// make is an error (planning refuses it first: `rules::wire_refusals`), never a field
    /// passed unmasked.
    pub(crate) fn for_table(table: &TablePlan) -> Result<Option<RowRewriter>> {
        if table.reads.rewrite.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let Some((_, field)) = table.reads.rewrite.iter().find(|(c, _)| c == &column.name)
            else {
                fields.push(None);
                continue;
            };
            let wire = table.wire_type(column);
            match field.bind(wire) {
                Ok(rewrite) => fields.push(Some(rewrite)),
                Err(unfit) => {
                    let why: Vec<String> = unfit.into_iter().map(|u| u.why).collect();
                    bail!(
                        "pgcopy cannot hash {}.{}, of type {wire}: {}",
                        table.name,
                        column.name,
                        why.join("; ")
                    );
                }
            }
        }
        Ok(Some(RowRewriter {
            fields,
            pending: Vec::new(),
            header_done: false,
        }))
    }

    /// Appends to `out` the rewritten form of what `data` completes; an incomplete tuple at
    /// its end waits for the next chunk.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        // Most chunks hold whole rows: taken as they are, only a tail kept.
        if self.pending.is_empty() {
            let used = self.take(data, out)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            let mut buffer = std::mem::take(&mut self.pending);
            buffer.extend_from_slice(data);
            let used = self.take(&buffer, out)?;
            buffer.drain(..used);
            self.pending = buffer;
        }
        Ok(())
    }

    /// Rewrites what `bytes` holds whole (the header, then rows) into `out`; returns how many
    /// bytes that was.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let mut at = 0;
        if !self.header_done {
            if bytes.len() < 19 {
                return Ok(0);
            }
            let extension =
                u32::from_be_bytes([bytes[15], bytes[16], bytes[17], bytes[18]]) as usize;
            if bytes.len() < 19 + extension {
                return Ok(0);
            }
            out.extend_from_slice(&bytes[..19 + extension]);
            at = 19 + extension;
            self.header_done = true;
        }
        while let Some(end) = tuple_end(&bytes[at..])? {
            self.tuple(&bytes[at..at + end], out)?;
            at += end;
        }
        Ok(at)
    }

    /// Nothing may be left over once the stream ended.
    pub(crate) fn finish(&self) -> Result<()> {
        if !self.pending.is_empty() {
            bail!("the source's COPY stream ended inside a row");
        }
        Ok(())
    }

    /// Writes one whole tuple (or the trailer), its rewritten fields rewritten.
    fn tuple(&self, tuple: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&tuple[..2]);
        let count = i16::from_be_bytes([tuple[0], tuple[1]]);
        if count < 0 {
            return Ok(());
        }
        if count as usize != self.fields.len() {
            bail!(
                "the source sent rows of {count} fields, where {} were asked for",
                self.fields.len()
            );
        }
        let mut at = 2;
        for field in &self.fields {
            let length =
                i32::from_be_bytes([tuple[at], tuple[at + 1], tuple[at + 2], tuple[at + 3]]);
            at += 4;
            if length < 0 {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let value = &tuple[at..at + length as usize];
            at += length as usize;
            match field {
                Some(rewrite) => {
                    // The length goes first: written once the value is.
                    let start = out.len();
                    out.extend_from_slice(&[0; 4]);
                    rewrite.rewrite(value, out)?;
                    let length = (out.len() - start - 4) as i32;
                    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
                }
                None => {
                    out.extend_from_slice(&length.to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        Ok(())
    }
}

/// The length of the whole tuple (or trailer) at the start of `bytes`, if all of it is
/// there.
fn tuple_end(bytes: &[u8]) -> Result<Option<usize>> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([bytes[0], bytes[1]]);
    if count < 0 {
        return Ok(Some(2));
    }
    let mut at = 2;
    for _ in 0..count {
        let Some(length) = bytes.get(at..at + 4) else {
            return Ok(None);
        };
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        at += 4;
        if length > 0 {
            at += length as usize;
        } else if length < -1 {
            bail!("the source sent a field of length {length}");
        }
        if at > bytes.len() {
            return Ok(None);
        }
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rewrite that changes its value's length, as the keyed rules do.
    struct Upper;

    impl ValueRewrite for Upper {
        fn rewrite(&self, value: &[u8], out: &mut Vec<u8>) -> Result<()> {
            out.push(b'<');
            out.extend(value.iter().map(u8::to_ascii_uppercase));
            out.push(b'>');
            Ok(())
        }
    }

    #[test]
    fn rewrites_only_its_fields_across_any_split() {
        let masker = || RowRewriter {
            fields: vec![None, Some(Box::new(Upper) as Box<dyn ValueRewrite>), None],
            pending: Vec::new(),
            header_done: false,
        };
        let mut stream = b"PGCOPY\n\xff\r\n\0".to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for (id, email) in [(&b"1"[..], Some(&b"a@x"[..])), (b"2", None)] {
            stream.extend_from_slice(&3i16.to_be_bytes());
            for field in [Some(id), email, Some(&b"z"[..])] {
                match field {
                    Some(v) => {
                        stream.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        stream.extend_from_slice(v);
                    }
                    None => stream.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        let whole = {
            let mut m = masker();
            let mut out = Vec::new();
            m.feed(&stream, &mut out).unwrap();
            m.finish().unwrap();
            out
        };
        assert!(whole.windows(5).any(|w| w == b"<A@X>"));
        assert!(!whole.windows(3).any(|w| w == b"a@x"));
        // A NULL stays NULL; the other fields pass as they came.
        assert!(whole.ends_with(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, b'z', 0xff, 0xff]));
        for split in 1..stream.len() {
            let mut m = masker();
            let mut out = Vec::new();
            m.feed(&stream[..split], &mut out).unwrap();
            m.feed(&stream[split..], &mut out).unwrap();
            m.finish().unwrap();
            assert_eq!(out, whole, "split at {split}");
        }
    }
}
