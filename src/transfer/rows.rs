//! Counts the rows in a COPY data stream without decoding any value, so the reader can report
//! how many rows the source sent and notice a stream that ended early.
//!
//! Binary format (PostgreSQL docs, "COPY — Binary Format"): an 11-byte signature, a 32-bit
//! flags field and a 32-bit header-extension length (plus that many bytes); then per tuple a
//! 16-bit field count and, per field, a 32-bit length (-1 for NULL) and that many bytes; a
//! field count of -1 is the trailer. Text format: one line per row, newlines inside values
//! are escaped as `\n`, so every newline byte ends a row.

use anyhow::{bail, Result};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// What the binary counter reads next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Signature, flags and extension length: 19 bytes.
    Header,
    /// Bytes to pass over: the header extension or a field's value.
    Skip(u64),
    /// A 16-bit field count: the start of a tuple, or the trailer.
    FieldCount,
    /// A 32-bit field length.
    FieldLength,
    /// The trailer was seen; nothing may follow.
    Done,
}

impl Need {
    fn size(self) -> usize {
        match self {
            Need::Header => 19,
            Need::FieldCount => 2,
            _ => 4,
        }
    }
}

/// Counts rows as COPY data passes through, chunk by chunk, in either format.
#[derive(Debug)]
pub(crate) struct RowCounter {
    binary: bool,
    rows: u64,
    need: Need,
    fields_left: u16,
    /// Bytes of a fixed-size item that is split across chunks (at most 19).
    partial: Vec<u8>,
}

impl RowCounter {
    pub(crate) fn new(binary: bool) -> RowCounter {
        RowCounter {
            binary,
            rows: 0,
            need: Need::Header,
            fields_left: 0,
            partial: Vec::with_capacity(19),
        }
    }

    /// Complete rows seen so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Feeds the next bytes of the stream.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        if !self.binary {
            self.rows += data.iter().filter(|&&b| b == b'\n').count() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            match self.need {
                Need::Skip(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.need = if take < n {
                        Need::Skip(n - take)
                    } else {
                        self.next_field()
                    };
                }
                Need::Done => bail!("COPY stream has data after its trailer"),
                need => {
                    let size = need.size();
                    if self.partial.is_empty() && data.len() >= size {
                        let (item, rest) = data.split_at(size);
                        data = rest;
                        self.step(item)?;
                    } else {
                        let take = (size - self.partial.len()).min(data.len());
                        self.partial.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if self.partial.len() == size {
                            let item = std::mem::take(&mut self.partial);
                            self.step(&item)?;
                            self.partial = item;
                            self.partial.clear();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The number of rows, once the stream has ended where a stream may end.
    pub(crate) fn finish(&self) -> Result<u64> {
        if self.binary && self.need != Need::Done {
            bail!(
                "COPY stream ended early, after {} complete rows and before its trailer",
                self.rows
            );
        }
        Ok(self.rows)
    }

    /// Consumes one complete fixed-size item.
    fn step(&mut self, item: &[u8]) -> Result<()> {
        self.need = match self.need {
            Need::Header => {
                if &item[..11] != SIGNATURE {
                    bail!("COPY stream does not start with the binary signature");
                }
                let extension = u32::from_be_bytes([item[15], item[16], item[17], item[18]]);
                match extension {
                    0 => Need::FieldCount,
                    n => Need::Skip(u64::from(n)),
                }
            }
            Need::FieldCount => match i16::from_be_bytes([item[0], item[1]]) {
                -1 => Need::Done,
                n if n < 0 => bail!("COPY stream has a negative field count {n}"),
                n => {
                    self.rows += 1;
                    self.fields_left = n as u16;
                    self.next_field()
                }
            },
            Need::FieldLength => {
                self.fields_left -= 1;
                match i32::from_be_bytes([item[0], item[1], item[2], item[3]]) {
                    -1 | 0 => self.next_field(),
                    n if n < 0 => bail!("COPY stream has a negative field length {n}"),
                    n => Need::Skip(n as u64),
                }
            }
            Need::Skip(_) | Need::Done => unreachable!("step is only called for fixed-size items"),
        };
        Ok(())
    }

    fn next_field(&self) -> Need {
        if self.fields_left > 0 {
            Need::FieldLength
        } else {
            Need::FieldCount
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of `rows`, each a list of fields (None is NULL).
    fn stream(rows: &[Vec<Option<&[u8]>>], extension: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        out.extend_from_slice(extension);
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn sample() -> Vec<u8> {
        let rows = vec![
            vec![Some(&b"abc"[..]), None, Some(&b""[..])],
            vec![Some(&[0u8; 300][..]), Some(&b"x"[..]), None],
            vec![],
        ];
        stream(&rows, b"ext")
    }

    #[test]
    fn counts_binary_rows_in_one_piece() {
        let mut counter = RowCounter::new(true);
        counter.feed(&sample()).unwrap();
        assert_eq!(counter.finish().unwrap(), 3);
    }

    #[test]
    fn counts_binary_rows_split_at_every_byte_boundary() {
        let data = sample();
        for chunk in 1..data.len() {
            let mut counter = RowCounter::new(true);
            for piece in data.chunks(chunk) {
                counter.feed(piece).unwrap();
            }
            assert_eq!(counter.finish().unwrap(), 3, "chunk size {chunk}");
        }
    }

    #[test]
    fn notices_a_binary_stream_cut_short() {
        let data = sample();
        let mut counter = RowCounter::new(true);
        counter.feed(&data[..data.len() - 5]).unwrap();
        assert!(counter.finish().is_err());
    }

    #[test]
    fn refuses_data_after_the_trailer_and_a_bad_signature() {
        let mut data = sample();
        data.push(0);
        assert!(RowCounter::new(true).feed(&data).is_err());
        assert!(RowCounter::new(true).feed(&[b'x'; 40]).is_err());
    }

    #[test]
    fn counts_text_rows_by_newlines() {
        let mut counter = RowCounter::new(false);
        counter.feed(b"1\ta\\nb\n2\t").unwrap();
        counter.feed(b"\\N\n").unwrap();
        assert_eq!(counter.finish().unwrap(), 2);
    }
}
