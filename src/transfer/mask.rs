//! Masking in the client, for the rules that need a secret (`hash`): on COPY's binary
//! framing, as it passes from the source to the destination, only the masked columns'
//! fields taken apart and written again, the others passed as they came. The key stays in
//! pgcopy: neither server sees it.
//!
//! `hash` is HMAC-SHA256 of the field's bytes under the key: the same value gives the same
//! output in every table and every run with that key, so masked keys still join and
//! distinct values stay distinct (as far as the column's length leaves room: see the
//! README's collision bounds). On integer columns it is a keyed permutation of the type's
//! values instead (`permute`), under a key derived from the same one: distinct values stay
//! distinct by construction.

use crate::plan::rules::{Keyed, Rule};
use crate::plan::TablePlan;
use crate::transfer::json_mask::{self, Path};
use crate::transfer::permute::Permutation;
use anyhow::{bail, Result};
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// How a masked column's output is written, by its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `text`, `varchar(n)`, `char(n)`: lower-case hex, at most `n` characters.
    Text(Option<usize>),
    Int2,
    Int4,
    Int8,
    Uuid,
}

impl Kind {
    /// The kind of a column of `type_name` (as `format_type` writes it), if `hash` can
    /// produce that type.
    pub(crate) fn of(type_name: &str) -> Option<Kind> {
        let length = |prefix: &str| -> Option<Option<usize>> {
            let rest = type_name.strip_prefix(prefix)?;
            if rest.is_empty() {
                return Some(None);
            }
            rest.strip_prefix('(')?
                .strip_suffix(')')?
                .parse()
                .ok()
                .map(Some)
        };
        match type_name {
            "text" => Some(Kind::Text(None)),
            // citext's binary form is text's (written `public.citext` where its schema is
            // not on the path).
            _ if type_name == "citext" || type_name.ends_with(".citext") => Some(Kind::Text(None)),
            "smallint" => Some(Kind::Int2),
            "integer" => Some(Kind::Int4),
            "bigint" => Some(Kind::Int8),
            "uuid" => Some(Kind::Uuid),
            _ => length("character varying")
                .or_else(|| length("character"))
                .map(Kind::Text),
        }
    }
}

/// HMAC-SHA256 (RFC 2104) under one key, on SHA-256's compression function itself: the
/// states after the padded key are kept, and a value's blocks (one, for a value of up to
/// 55 bytes) and the outer block are compressed with no hasher around them.
#[derive(Clone)]
pub(crate) struct Hmac {
    inner: [u32; 8],
    outer: [u32; 8],
    /// The integer permutation's key, from this HMAC of a fixed label.
    ints: Permutation,
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl Hmac {
    pub(crate) fn new(key: &[u8]) -> Hmac {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let state = |pad: u8| {
            let mut state = SHA256_IV;
            compress256(&mut state, &[block.map(|b| b ^ pad)]);
            state
        };
        let mut hmac = Hmac {
            inner: state(0x36),
            outer: state(0x5c),
            ints: Permutation::new([0; 16]),
        };
        let mut ints = [0u8; 16];
        ints.copy_from_slice(&hmac.mac(b"pgcopy: the integer permutation's key")[..16]);
        hmac.ints = Permutation::new(ints);
        hmac
    }

    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        let inner = finish(self.inner, data);
        finish(self.outer, &inner)
    }
}

/// The SHA-256 digest of a message whose first block (the padded key) `state` holds, and
/// `data` after it.
fn finish(mut state: [u32; 8], data: &[u8]) -> [u8; 32] {
    let (blocks, rest) = data.as_chunks::<64>();
    compress256(&mut state, blocks);
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (64 + data.len() as u64) * 8;
    tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    let (tail, _) = tail[..end].as_chunks::<64>();
    compress256(&mut state, tail);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const FIRST_NAMES: [&str; 32] = [
    "Alex", "Blair", "Casey", "Dana", "Eli", "Frankie", "Gale", "Harper", "Indy", "Jordan", "Kai",
    "Logan", "Morgan", "Noel", "Oakley", "Parker", "Quinn", "Riley", "Sage", "Taylor", "Uma",
    "Val", "Wren", "Xan", "Yael", "Zion", "Avery", "Bellamy", "Cameron", "Devon", "Emery",
    "Finley",
];
const LAST_NAMES: [&str; 32] = [
    "Abbott", "Barker", "Carver", "Dalton", "Ellis", "Fowler", "Garner", "Hayes", "Irving",
    "Jensen", "Keller", "Lowry", "Mercer", "Nolan", "Osborne", "Porter", "Quincy", "Ramsey",
    "Sawyer", "Thorne", "Upton", "Vance", "Walker", "Xiong", "Young", "Zeller", "Ashby", "Brooks",
    "Conway", "Doyle", "Emerson", "Fisher",
];

/// Appends the lower-case hex of `bytes` (at most 32 of them).
fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    let digits = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = digits[(b >> 4) as usize];
        pair[1] = digits[(b & 15) as usize];
    }
    out.extend_from_slice(&text[..bytes.len() * 2]);
}

/// Appends `n` in decimal, `width` digits at least (zeros first).
fn decimal_into(n: u32, width: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut n = n;
    while n > 0 || len < width {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    out.extend(digits[..len].iter().rev());
}

/// The masked field for a value's bytes, in the binary format of the column's type.
pub(crate) fn masked(hmac: &Hmac, keyed: Keyed, kind: Kind, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    mask_into(hmac, keyed, kind, value, &mut out);
    out
}

/// Appends the masked field for a value's bytes to `out`, with no allocation of its own.
pub(crate) fn mask_into(hmac: &Hmac, keyed: Keyed, kind: Kind, value: &[u8], out: &mut Vec<u8>) {
    if keyed == Keyed::Hash && permuted_into(&hmac.ints, kind, value, out) {
        return;
    }
    let mac = hmac.mac(value);
    let start = out.len();
    match keyed {
        Keyed::Hash => return hashed_into(&mac, kind, out),
        // As long as the value, which fits.
        Keyed::Scramble => return scrambled_into(hmac, &mac, value, out),
        Keyed::Email => {
            hex_into(&mac[..8], out);
            out.extend_from_slice(b"@example.invalid");
        }
        Keyed::Name => {
            out.extend_from_slice(FIRST_NAMES[mac[0] as usize % FIRST_NAMES.len()].as_bytes());
            out.push(b' ');
            out.extend_from_slice(LAST_NAMES[mac[1] as usize % LAST_NAMES.len()].as_bytes());
        }
        Keyed::FirstName => {
            out.extend_from_slice(FIRST_NAMES[mac[0] as usize % FIRST_NAMES.len()].as_bytes());
        }
        Keyed::LastName => {
            out.extend_from_slice(LAST_NAMES[mac[1] as usize % LAST_NAMES.len()].as_bytes());
        }
        Keyed::Phone => {
            out.extend_from_slice(b"+1-555-01");
            decimal_into(u32::from(mac[0] % 100), 2, out);
            out.push(b'-');
            decimal_into(
                u32::from(u16::from_be_bytes([mac[1], mac[2]]) % 10_000),
                4,
                out,
            );
        }
    }
    // The fakes are ASCII: a byte is a character.
    if let Kind::Text(Some(max)) = kind {
        out.truncate(start + max.min(out.len() - start));
    }
}

/// Appends `value` with each ASCII letter and digit replaced by another of its class, from
/// a stream keyed by the value's own hash: the same value, the same result.
fn scrambled_into(hmac: &Hmac, mac: &[u8; 32], value: &[u8], out: &mut Vec<u8>) {
    let mut input = [0u8; 36];
    input[..32].copy_from_slice(mac);
    let mut stream = [0u8; 32];
    for (i, &b) in value.iter().enumerate() {
        if i % 32 == 0 {
            input[32..].copy_from_slice(&((i / 32) as u32).to_be_bytes());
            stream = hmac.mac(&input);
        }
        let r = stream[i % 32];
        out.push(match b {
            b'a'..=b'z' => b'a' + r % 26,
            b'A'..=b'Z' => b'A' + r % 26,
            b'0'..=b'9' => b'0' + r % 10,
            other => other,
        });
    }
}

/// Appends an integer field's image under the permutation; false for a field that is not
/// one (of another kind, or not of its type's length).
fn permuted_into(ints: &Permutation, kind: Kind, value: &[u8], out: &mut Vec<u8>) -> bool {
    match (kind, value.len()) {
        (Kind::Int2, 2) => {
            let v = i16::from_be_bytes([value[0], value[1]]);
            out.extend_from_slice(&ints.i16(v).to_be_bytes());
        }
        (Kind::Int4, 4) => {
            let v = i32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            out.extend_from_slice(&ints.i32(v).to_be_bytes());
        }
        (Kind::Int8, 8) => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(value);
            out.extend_from_slice(&ints.i64(i64::from_be_bytes(bytes)).to_be_bytes());
        }
        _ => return false,
    }
    true
}

/// Appends the hash itself in the column's type.
fn hashed_into(mac: &[u8; 32], kind: Kind, out: &mut Vec<u8>) {
    match kind {
        Kind::Text(max) => {
            let take = max.map_or(32, |max| max.div_ceil(2).min(32));
            let start = out.len();
            hex_into(&mac[..take], out);
            if let Some(max) = max {
                out.truncate(start + max.min(64));
            }
        }
        // A field of an integer type whose length is not the type's (converted on the
        // way): its hash, non-negative.
        Kind::Int2 => {
            let n = i16::from_be_bytes([mac[0], mac[1]]) & i16::MAX;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Kind::Int4 => {
            let n = i32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]) & i32::MAX;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Kind::Int8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&mac[..8]);
            out.extend_from_slice(&(i64::from_be_bytes(bytes) & i64::MAX).to_be_bytes());
        }
        Kind::Uuid => {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&mac[..16]);
            // A version 4, RFC 4122 variant UUID, as a random one would be.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            out.extend_from_slice(&bytes);
        }
    }
}

/// How pgcopy masks one field.
enum Field {
    /// The whole value.
    Whole(Keyed, Kind),
    /// Values inside a JSON document (`jsonb`: after its version byte).
    Json {
        jsonb: bool,
        targets: Vec<(Path, Keyed)>,
    },
}

/// Masks the fields of one table's binary COPY stream, chunk by chunk.
pub(crate) struct Masker {
    /// By field position: how that field is masked, if it is.
    fields: Vec<Option<Field>>,
    hmac: Hmac,
    /// Bytes of a tuple (or the header) that the next chunk completes.
    pending: Vec<u8>,
    header_done: bool,
}

impl Masker {
    /// A masker for `table`'s client-side masks; `None` when it has none. Each field is
    /// written in the type it travels as (`TablePlan::wire_type`); one no keyed rule can
    /// make is an error (planning refuses it first: `rules::wire_refusals`), never a field
    /// passed unmasked.
    pub(crate) fn for_table(table: &TablePlan) -> Result<Option<Masker>> {
        let mut key = None;
        let mut fields = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let wire = table.wire_type(column);
            let mut targets = Vec::new();
            let mut whole = None;
            for mask in table.masks.iter().filter(|m| m.column == column.name) {
                let Rule::Keyed(keyed) = mask.rule else {
                    continue;
                };
                key = mask.key.clone();
                if mask.path.is_empty() {
                    let kind =
                        Kind::of(wire).or_else(|| mask.base_type.as_deref().and_then(Kind::of));
                    let Some(kind) = kind else {
                        bail!(
                            "pgcopy cannot hash {}.{}, of type {wire}",
                            table.name,
                            column.name
                        );
                    };
                    whole = Some(Field::Whole(keyed, kind));
                } else {
                    targets.push((mask.path.clone(), keyed));
                }
            }
            fields.push(whole.or_else(|| {
                (!targets.is_empty()).then(|| Field::Json {
                    jsonb: wire == "jsonb",
                    targets,
                })
            }));
        }
        Ok(key.map(|key| Masker {
            fields,
            hmac: Hmac::new(key.bytes()),
            pending: Vec::new(),
            header_done: false,
        }))
    }

    /// Appends to `out` the masked form of what `data` completes; an incomplete tuple at
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

    /// Masks what `bytes` holds whole (the header, then rows) into `out`; returns how many
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

    /// Writes one whole tuple (or the trailer), its masked fields masked.
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
                Some(Field::Whole(keyed, kind)) => {
                    // The length goes first: written once the value is.
                    let start = out.len();
                    out.extend_from_slice(&[0; 4]);
                    mask_into(&self.hmac, *keyed, *kind, value, out);
                    let length = (out.len() - start - 4) as i32;
                    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
                }
                Some(Field::Json { jsonb, targets }) => {
                    // The length goes first: written once the document is.
                    let start = out.len();
                    out.extend_from_slice(&[0; 4]);
                    let text = if *jsonb {
                        if value.first() != Some(&1) {
                            bail!("the source sent a jsonb value of an unknown version");
                        }
                        out.push(1);
                        &value[1..]
                    } else {
                        value
                    };
                    json_mask::mask_document(text, targets, &self.hmac, out)?;
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

    #[test]
    fn hmac_is_rfc_4231s() {
        // RFC 4231, test case 2.
        let mac = Hmac::new(b"Jefe").mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test cases 6 and 7: a key longer than a block; data of more than one.
        let key = [0xaa; 131];
        for (data, want) in [
            (
                &b"Test Using Larger Than Block-Size Key - Hash Key First"[..],
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &b"This is a test using a larger than block-size key and a larger than \
                   block-size data. The key needs to be hashed before being used by the HMAC \
                   algorithm."[..],
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ] {
            let hex: String = Hmac::new(&key)
                .mac(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, want);
        }
    }

    #[test]
    fn hmac_pads_every_length_as_sha256_does() {
        // Against HMAC written with the hasher, at each length around the padding's edges.
        let key = b"0123456789abcdef0123";
        let reference = |data: &[u8]| {
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            let inner = Sha256::new()
                .chain_update(block.map(|b| b ^ 0x36))
                .chain_update(data)
                .finalize();
            let outer = Sha256::new()
                .chain_update(block.map(|b| b ^ 0x5c))
                .chain_update(inner)
                .finalize();
            outer.to_vec()
        };
        let hmac = Hmac::new(key);
        let data: Vec<u8> = (0..200u8).collect();
        for len in 0..data.len() {
            assert_eq!(
                hmac.mac(&data[..len]).to_vec(),
                reference(&data[..len]),
                "{len}"
            );
        }
    }

    #[test]
    fn knows_the_types_it_can_produce() {
        assert_eq!(Kind::of("text"), Some(Kind::Text(None)));
        assert_eq!(
            Kind::of("character varying(40)"),
            Some(Kind::Text(Some(40)))
        );
        assert_eq!(Kind::of("character(8)"), Some(Kind::Text(Some(8))));
        assert_eq!(Kind::of("bigint"), Some(Kind::Int8));
        assert_eq!(Kind::of("jsonb"), None);
        assert_eq!(Kind::of("date"), None);
        let hash = |kind, value| masked(&Hmac::new(b"k"), Keyed::Hash, kind, value);
        assert_eq!(hash(Kind::Text(Some(8)), b"a").len(), 8);
        assert_eq!(Kind::of("smallint"), Some(Kind::Int2));
        // Integers are permuted, keeping their sign.
        let image = i32::from_be_bytes(hash(Kind::Int4, &7i32.to_be_bytes()).try_into().unwrap());
        assert!(image > 0 && image != 7);
    }

    #[test]
    fn fakes_are_valid_and_the_same_for_the_same_value() {
        let fake = |keyed, value: &[u8]| {
            String::from_utf8(masked(&Hmac::new(b"key"), keyed, Kind::Text(None), value)).unwrap()
        };
        let email = fake(Keyed::Email, b"ann@corp.com");
        assert!(
            email.ends_with("@example.invalid") && email.len() == 32,
            "{email}"
        );
        assert_eq!(email, fake(Keyed::Email, b"ann@corp.com"));
        assert_ne!(email, fake(Keyed::Email, b"bob@corp.com"));
        assert_eq!(fake(Keyed::Name, b"Ann Lee").split(' ').count(), 2);
        // One name for a first-name column, one for a last-name column.
        assert!(FIRST_NAMES.contains(&fake(Keyed::FirstName, b"Ann").as_str()));
        assert!(LAST_NAMES.contains(&fake(Keyed::LastName, b"Lee").as_str()));
        assert!(fake(Keyed::Phone, b"+44 20 7946 0000").starts_with("+1-555-01"));
        let scrambled = fake(Keyed::Scramble, "Ab-12 é".as_bytes());
        let classes = |s: &str| -> Vec<u8> {
            s.bytes()
                .map(|b| match b {
                    b'a'..=b'z' => b'a',
                    b'A'..=b'Z' => b'A',
                    b'0'..=b'9' => b'0',
                    other => other,
                })
                .collect()
        };
        assert_eq!(classes(&scrambled), classes("Ab-12 é"));
        assert_ne!(scrambled, "Ab-12 é");
    }

    #[test]
    fn masks_only_its_fields_across_any_split() {
        let masker = || Masker {
            fields: vec![
                None,
                Some(Field::Whole(Keyed::Hash, Kind::Text(None))),
                None,
            ],
            hmac: Hmac::new(b"secret"),
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
        let hex = masked(&Hmac::new(b"secret"), Keyed::Hash, Kind::Text(None), b"a@x");
        assert!(whole.windows(hex.len()).any(|w| w == hex.as_slice()));
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
