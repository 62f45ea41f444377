//! Reading one pgoutput message's fields (big-endian integers, NUL-terminated strings,
//! counted bytes), and the tuple data of its rows: each column's value, and the old key or
//! row an update or delete sends.

use super::message::{Old, Value};
use anyhow::{bail, Context, Result};

/// Reads the big-endian fields of one message; `pos` never passes the end of `bytes`.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let (len, pos) = (self.bytes.len(), self.pos);
        let Some(taken) = self.bytes[pos..].get(..n) else {
            bail!("the pgoutput message ends after {len} bytes, inside a {n}-byte field at byte {pos}");
        };
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut array = [0; N];
        array.copy_from_slice(self.bytes(N)?);
        Ok(array)
    }

    pub(super) fn u8(&mut self) -> Result<u8> {
        self.array().map(u8::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(super) fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub(super) fn i64(&mut self) -> Result<i64> {
        self.array().map(i64::from_be_bytes)
    }

    pub(super) fn tag(&mut self, expected: u8, before: &str) -> Result<()> {
        match self.u8()? {
            found if found == expected => Ok(()),
            found => bail!(
                "expected {:?} before {before}, found {:?}",
                char::from(expected),
                char::from(found)
            ),
        }
    }

    pub(super) fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => bail!("the flags at byte {} are {other}, not 0 or 1", self.pos - 1),
        }
    }

    pub(super) fn string(&mut self) -> Result<String> {
        let (rest, pos) = (&self.bytes[self.pos..], self.pos);
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            bail!("the pgoutput message ends inside the string at byte {pos}, before its NUL");
        };
        let text = std::str::from_utf8(&rest[..len])
            .with_context(|| format!("the string at byte {pos} is not UTF-8"))?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    /// An Int32 length and that many bytes.
    pub(super) fn counted(&mut self) -> Result<Vec<u8>> {
        let len = self.i32()?;
        let Ok(len) = usize::try_from(len) else {
            bail!("negative length {len} at byte {}", self.pos - 4);
        };
        Ok(self.bytes(len)?.to_vec())
    }

    pub(super) fn finish(&self) -> Result<()> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => bail!("{extra} byte(s) left over after the message's last field"),
        }
    }
}

/// The old key ('K') or the whole old row ('O') an Update or Delete sends.
pub(super) fn old_tuple(r: &mut Reader, kind: u8) -> Result<Old> {
    match kind {
        b'K' => Ok(Old::Key(tuple(r).context("in the old key")?)),
        b'O' => Ok(Old::Row(tuple(r).context("in the old row")?)),
        _ => bail!(
            "expected 'K' or 'O' before the old row, found {:?}",
            char::from(kind)
        ),
    }
}

/// A row's tuple data: the number of columns, then each column's value.
pub(super) fn tuple(r: &mut Reader) -> Result<Vec<Value>> {
    let n = r.u16()?;
    let value = |r: &mut Reader| -> Result<Value> {
        Ok(match r.u8()? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => Value::Text(r.counted()?),
            b'b' => Value::Binary(r.counted()?),
            other => bail!("unknown value kind {:?}", char::from(other)),
        })
    };
    (1..=n)
        .map(|i| value(r).with_context(|| format!("in column {i} of {n}")))
        .collect()
}
