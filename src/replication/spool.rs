//! Streamed transactions (pgoutput protocol 2, from PostgreSQL 14 on): a source asked to
//! stream sends a large transaction's changes while it still runs, in blocks that
//! interleave with other transactions' and that may end in an abort, of the whole
//! transaction or of one of its subtransactions, rather than spilling the transaction to
//! its own disk until it commits (`logical_decoding_work_mem`). Until its commit arrives,
//! a streamed transaction's changes wait here, as the source sent them, in a file of its
//! own, which is unlinked as soon as it is made, so that nothing is left behind however the
//! process ends. At its commit they are read back, less those of aborted subtransactions,
//! and handed to the applier as one transaction, in commit order like every other; an
//! aborted transaction's file is dropped, and nothing of it was applied. Memory stays at a
//! write buffer per open transaction, whatever their size.

use crate::replication::decode::{self, Message};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The streamed transactions not committed or aborted yet.
pub(crate) struct Spools {
    dir: PathBuf,
    open: HashMap<u32, Spool>,
    /// The transaction of the block being received, between `StreamStart` and `StreamStop`.
    current: Option<u32>,
}

/// One streamed transaction's changes: records of its (sub)transaction ID, the message's
/// length and the message, in the order they came.
struct Spool {
    file: BufWriter<File>,
    /// Its subtransactions that aborted: their changes are not applied.
    aborted: HashSet<u32>,
}

impl Spools {
    /// Spools in `dir` (the system's temporary directory, unless told otherwise).
    pub(crate) fn new(dir: PathBuf) -> Spools {
        Spools {
            dir,
            open: HashMap::new(),
            current: None,
        }
    }

    /// Inside a block of a streamed transaction: its changes go to `append`.
    pub(crate) fn streaming(&self) -> bool {
        self.current.is_some()
    }

    /// Takes one of the stream's messages about streamed transactions, or a change inside
    /// a block; returns the messages of a transaction that committed, to apply now.
    pub(crate) fn take(&mut self, bytes: &[u8]) -> Result<Option<Replay>> {
        if self.current.is_some() && decode::streamed_change(bytes) {
            self.append(bytes)?;
            return Ok(None);
        }
        match decode::parse(bytes)? {
            Message::StreamStart { xid, .. } => {
                if !self.open.contains_key(&xid) {
                    self.open.insert(xid, Spool::new(&self.dir, xid)?);
                }
                self.current = Some(xid);
                Ok(None)
            }
            Message::StreamStop => {
                self.current = None;
                Ok(None)
            }
            Message::StreamAbort { xid, subxid } => {
                if xid == subxid {
                    self.open.remove(&xid);
                } else if let Some(spool) = self.open.get_mut(&xid) {
                    spool.aborted.insert(subxid);
                }
                Ok(None)
            }
            Message::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let spool = self.open.remove(&xid).with_context(|| {
                    format!("the source committed the streamed transaction {xid}, which it never started")
                })?;
                Ok(Some(spool.replay(xid, commit_lsn, end_lsn, commit_time)?))
            }
            // An origin inside a block (a transaction the source itself replicated) says
            // nothing the applier uses.
            Message::Origin { .. } => Ok(None),
            other => bail!("the source sent {other:?} inside a streamed transaction's block"),
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(spool) = self.current.and_then(|xid| self.open.get_mut(&xid)) else {
            bail!("a streamed change came outside any streamed transaction");
        };
        let xid = bytes
            .get(1..5)
            .context("a streamed change ends before its transaction ID")?;
        let len = u32::try_from(bytes.len()).context("a streamed change of 4 GiB or more")?;
        let file = &mut spool.file;
        file.write_all(xid)
            .and_then(|()| file.write_all(&len.to_be_bytes()))
            .and_then(|()| file.write_all(bytes))
            .context("holding a streamed transaction's change in its spool file")
    }
}

impl Spool {
    fn new(dir: &std::path::Path, xid: u32) -> Result<Spool> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            "pgcopy-stream-{}-{xid}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "making {} for a streamed transaction's changes",
                    path.display()
                )
            })?;
        // Open, it lives on without its name: nothing is left behind, however this ends.
        std::fs::remove_file(&path).with_context(|| format!("unlinking {}", path.display()))?;
        Ok(Spool {
            file: BufWriter::with_capacity(256 * 1024, file),
            aborted: HashSet::new(),
        })
    }

    /// The transaction, as the applier takes any other: `Begin`, its changes less those of
    /// aborted subtransactions, `Commit`.
    fn replay(self, xid: u32, commit_lsn: u64, end_lsn: u64, commit_time: i64) -> Result<Replay> {
        let mut file = self
            .file
            .into_inner()
            .map_err(|err| err.into_error())
            .context("writing a streamed transaction's spool file")?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Replay {
            reader: Some(BufReader::with_capacity(256 * 1024, file)),
            aborted: self.aborted,
            first: Some(Message::Begin {
                final_lsn: commit_lsn,
                commit_time,
                xid,
            }),
            commit: Some(Message::Commit {
                flags: 0,
                commit_lsn,
                end_lsn,
                commit_time,
            }),
        })
    }
}

/// What the receiver hands to the applier next: a committed streamed transaction, read
/// back from its spool file message by message, or one message that was not streamed.
pub(crate) struct Replay {
    reader: Option<BufReader<File>>,
    aborted: HashSet<u32>,
    first: Option<Message>,
    commit: Option<Message>,
}

impl Replay {
    /// A message of the stream that is not part of a streamed transaction.
    pub(crate) fn one(message: Message) -> Replay {
        Replay {
            reader: None,
            aborted: HashSet::new(),
            first: Some(message),
            commit: None,
        }
    }

    /// The next message; `None` after the last (a streamed transaction's `Commit`).
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        loop {
            let mut head = [0; 8];
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(self.commit.take());
                }
                Err(err) => return Err(err).context("reading a streamed transaction back"),
            }
            let xid = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let mut bytes = vec![0; len];
            reader
                .read_exact(&mut bytes)
                .context("reading a streamed transaction back")?;
            if self.aborted.contains(&xid) {
                continue;
            }
            let (_, message) = decode::parse_streamed(&bytes)?;
            return Ok(Some(message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A streamed change as pgoutput sends it: the tag, the (sub)transaction ID, the rest.
    fn insert(xid: u32, value: &str) -> Vec<u8> {
        let mut bytes = vec![b'I'];
        bytes.extend_from_slice(&xid.to_be_bytes());
        bytes.extend_from_slice(&7u32.to_be_bytes());
        bytes.push(b'N');
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.push(b't');
        bytes.extend_from_slice(&(value.len() as u32).to_be_bytes());
        bytes.extend_from_slice(value.as_bytes());
        bytes
    }

    fn start(xid: u32) -> Vec<u8> {
        let mut bytes = vec![b'S'];
        bytes.extend_from_slice(&xid.to_be_bytes());
        bytes.push(1);
        bytes
    }

    fn abort(xid: u32, subxid: u32) -> Vec<u8> {
        let mut bytes = vec![b'A'];
        bytes.extend_from_slice(&xid.to_be_bytes());
        bytes.extend_from_slice(&subxid.to_be_bytes());
        bytes
    }

    fn commit(xid: u32, lsn: u64) -> Vec<u8> {
        let mut bytes = vec![b'c'];
        bytes.extend_from_slice(&xid.to_be_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&lsn.to_be_bytes());
        bytes.extend_from_slice(&(lsn + 8).to_be_bytes());
        bytes.extend_from_slice(&5i64.to_be_bytes());
        bytes
    }

    fn values(mut replay: Replay) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(message) = replay.next_message().unwrap() {
            seen.push(match message {
                Message::Begin { final_lsn, .. } => format!("begin {final_lsn}"),
                Message::Insert { new, .. } => match &new[0] {
                    decode::Value::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                },
                Message::Commit { end_lsn, .. } => format!("commit {end_lsn}"),
                other => format!("{other:?}"),
            });
        }
        seen
    }

    #[test]
    fn interleaved_transactions_come_back_whole_less_what_aborted() {
        let mut spools = Spools::new(std::env::temp_dir());
        let stop = [b'E'];
        for bytes in [
            start(10),
            insert(10, "a1"),
            insert(11, "a-sub"),
            stop.to_vec(),
            start(20),
            insert(20, "b1"),
            stop.to_vec(),
            start(10),
            insert(10, "a2"),
            stop.to_vec(),
            abort(10, 11),
            abort(20, 20),
        ] {
            assert!(spools.take(&bytes).unwrap().is_none());
            assert!(!spools.streaming() || bytes[0] != b'E');
        }
        // The aborted transaction is gone; the other comes back without its aborted
        // subtransaction.
        assert!(spools.take(&commit(20, 100)).is_err());
        let replay = spools.take(&commit(10, 200)).unwrap().unwrap();
        assert_eq!(values(replay), ["begin 200", "a1", "a2", "commit 208"]);
        assert!(spools.open.is_empty());
    }
}
