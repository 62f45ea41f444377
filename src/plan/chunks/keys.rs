//! Key values the follower places in a chunk's range itself, ordered as PostgreSQL orders them:
//! integers, and uuids (compared byte by byte), alone or in a composite key (compared column
//! by column). Text keys are not among them: their order is the collation's.

use anyhow::{bail, Context, Result};

/// One column of a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Part {
    Int(i64),
    Uuid([u8; 16]),
}

impl Part {
    /// Its text form, as PostgreSQL reads it back.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Part::Int(n) => n.to_string(),
            Part::Uuid(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
        }
    }
}

/// A key: its columns in the index's order.
pub(crate) type Key = Vec<Part>;

/// The type of a key column, as far as ordering goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Uuid,
}

impl Kind {
    /// The kind of a column of `type_name` (as `format_type` writes it), if pgcopy can
    /// order its values.
    pub(crate) fn of(type_name: &str) -> Option<Kind> {
        match type_name {
            "smallint" | "integer" | "bigint" => Some(Kind::Int),
            "uuid" => Some(Kind::Uuid),
            _ => None,
        }
    }

    /// A value in its text form (pgoutput's, and `::text`'s).
    pub(crate) fn parse(self, text: &str) -> Result<Part> {
        match self {
            Kind::Int => text
                .parse()
                .map(Part::Int)
                .with_context(|| format!("not an integer key: {text:?}")),
            Kind::Uuid => {
                let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
                if hex.len() != 32 {
                    bail!("not a uuid key: {text:?}");
                }
                let mut bytes = [0u8; 16];
                for (i, pair) in hex.chunks(2).enumerate() {
                    let pair = std::str::from_utf8(pair).unwrap_or("");
                    bytes[i] = u8::from_str_radix(pair, 16)
                        .with_context(|| format!("not a uuid key: {text:?}"))?;
                }
                Ok(Part::Uuid(bytes))
            }
        }
    }
}

/// The keys from `low` on and below `high` (`None`: no bound on that side), as a chunk reads
/// them and as `plan::pieces` cuts ranges: `WHERE (key) >= (low) AND (key) < (high)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) low: Option<Key>,
    pub(crate) high: Option<Key>,
}

impl Range {
    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.low.as_ref().is_none_or(|low| key >= low)
            && self.high.as_ref().is_none_or(|high| key < high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_postgresql_does() {
        let int = |n| vec![Part::Int(n)];
        let r = Range {
            low: Some(int(10)),
            high: Some(int(20)),
        };
        assert!(r.contains(&int(10)) && r.contains(&int(19)));
        assert!(!r.contains(&int(20)) && !r.contains(&int(-5)));
        let open = Range {
            low: None,
            high: Some(int(0)),
        };
        assert!(open.contains(&int(i64::MIN)) && !open.contains(&int(0)));
        // Composite keys compare column by column, as a row comparison does.
        let pair = |a, b| vec![Part::Int(a), Part::Int(b)];
        let r = Range {
            low: Some(pair(1, 5)),
            high: Some(pair(2, 0)),
        };
        assert!(r.contains(&pair(1, 5)) && r.contains(&pair(1, 6)));
        assert!(!r.contains(&pair(1, 4)) && !r.contains(&pair(2, 0)));
    }

    #[test]
    fn reads_text_forms() {
        assert_eq!(Kind::Int.parse("-42").unwrap(), Part::Int(-42));
        let a = Kind::Uuid
            .parse("00000000-0000-0000-0000-0000000000ff")
            .unwrap();
        let b = Kind::Uuid
            .parse("00000000-0000-0000-0000-000000000100")
            .unwrap();
        assert!(a < b, "byte by byte, as uuid_cmp");
        assert_eq!(a.to_text(), "00000000-0000-0000-0000-0000000000ff");
        assert_eq!(Part::Int(-3).to_text(), "-3");
        assert!(Kind::Uuid.parse("xyz").is_err());
        assert_eq!(Kind::of("bigint"), Some(Kind::Int));
        assert_eq!(Kind::of("text"), None);
    }
}
