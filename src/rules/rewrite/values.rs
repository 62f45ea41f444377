//! What the keyed rules make of one value, by the type it travels as: the keyed hash in
//! the column's type, a keyed permutation of integers, valid fake e-mail addresses, names
//! and phone numbers, and scrambled text.

use crate::rules::rewrite::hmac::Hmac;
use crate::rules::rewrite::permute::Permutation;

/// The rules made from the keyed hash of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyed {
    /// The hash itself, in the column's type.
    Hash,
    /// `<16 hex digits>@example.invalid`: valid, and distinct where the values were.
    Email,
    /// A first and a last name from built-in lists.
    Name,
    /// A first name from the built-in list.
    FirstName,
    /// A last name from the built-in list.
    LastName,
    /// A phone-like number in the range kept for fiction: `+1-555-01xx-xxxx`.
    Phone,
    /// The same length and character classes: each ASCII letter another of its case,
    /// each digit another digit; everything else as it was.
    Scramble,
}

impl Keyed {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Keyed::Hash => "hash",
            Keyed::Email => "email",
            Keyed::Name => "name",
            Keyed::FirstName => "first_name",
            Keyed::LastName => "last_name",
            Keyed::Phone => "phone",
            Keyed::Scramble => "scramble",
        }
    }
}

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

/// Whether a keyed rule can make a column of `kind` (`None`: a type none of them makes).
pub(crate) fn fits(keyed: Keyed, kind: Option<Kind>) -> std::result::Result<(), &'static str> {
    match (keyed, kind) {
        (_, None) => {
            Err("the keyed rules make text, varchar, char, smallint, integer, bigint and uuid")
        }
        (Keyed::Hash, Some(_)) => Ok(()),
        (Keyed::Email, Some(Kind::Text(Some(max)))) if max < 32 => {
            Err("its addresses take 32 characters")
        }
        (_, Some(Kind::Text(_))) => Ok(()),
        (_, Some(_)) => Err("it makes text: text, varchar or char"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
