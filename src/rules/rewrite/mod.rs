//! Masking in the client, for the rules that need a secret (the keyed rules: `hash`,
//! `email`, `name`, …): the rewrite of a masked column's field that the transfer applies on
//! COPY's binary framing as the rows pass, the other fields passed as they came. The key
//! stays in pgcopy: neither server sees it.
//!
//! `hash` is HMAC-SHA256 of the field's bytes under the key: the same value gives the same
//! output in every table and every run with that key, so masked keys still join and
//! distinct values stay distinct (as far as the column's length leaves room: see the
//! README's collision bounds). On integer columns it is a keyed permutation of the type's
//! values instead (`permute`), under a key derived from the same one: distinct values stay
//! distinct by construction.

pub(crate) mod hmac;
pub(crate) mod json;
pub(crate) mod permute;
pub(crate) mod values;

use crate::plan::reading::{FieldRewrite, Unfit, ValueRewrite};
use anyhow::{bail, Result};
use hmac::Hmac;
use json::Path;
use values::{fits, mask_into, Keyed, Kind};

/// pgcopy's rewrite of one column's field: the keyed rules on it, on the whole value or on
/// values inside a JSON document.
pub(crate) struct KeyedField {
    hmac: Hmac,
    rules: FieldRules,
}

/// The keyed rules on one column.
pub(crate) enum FieldRules {
    /// The whole value; a column of a domain also knows the type it is a domain over,
    /// which the rule makes (its binary form is the domain's).
    Whole {
        keyed: Keyed,
        base_type: Option<String>,
        target: String,
    },
    /// Values inside a JSON document, by path.
    Json(Vec<(Path, Keyed, String)>),
}

impl KeyedField {
    /// The rewrite of `rules` under the masking key `key`.
    pub(crate) fn new(key: &[u8], rules: FieldRules) -> KeyedField {
        KeyedField {
            hmac: Hmac::new(key),
            rules,
        }
    }
}

/// The key is never shown.
impl std::fmt::Debug for KeyedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rules {
            FieldRules::Whole { keyed, target, .. } => write!(f, "{target}: {}", keyed.name()),
            FieldRules::Json(targets) => {
                let names: Vec<String> = targets
                    .iter()
                    .map(|(_, keyed, target)| format!("{target}: {}", keyed.name()))
                    .collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

impl FieldRewrite for KeyedField {
    fn bind(&self, wire_type: &str) -> std::result::Result<Box<dyn ValueRewrite>, Vec<Unfit>> {
        match &self.rules {
            FieldRules::Whole {
                keyed,
                base_type,
                target,
            } => {
                let kind = Kind::of(wire_type).or_else(|| base_type.as_deref().and_then(Kind::of));
                match (fits(*keyed, kind), kind) {
                    (Ok(()), Some(kind)) => Ok(Box::new(Whole {
                        hmac: self.hmac.clone(),
                        keyed: *keyed,
                        kind,
                    })),
                    (fit, _) => Err(vec![Unfit {
                        rule: keyed.name(),
                        target: target.clone(),
                        why: fit.err().unwrap_or("no keyed rule makes it").to_string(),
                    }]),
                }
            }
            FieldRules::Json(targets) if wire_type != "json" && wire_type != "jsonb" => {
                Err(targets
                    .iter()
                    .map(|(_, keyed, target)| Unfit {
                        rule: keyed.name(),
                        target: target.clone(),
                        why: "a path reaches inside json and jsonb columns".into(),
                    })
                    .collect())
            }
            FieldRules::Json(targets) => Ok(Box::new(Json {
                hmac: self.hmac.clone(),
                jsonb: wire_type == "jsonb",
                targets: targets.iter().map(|(p, k, _)| (p.clone(), *k)).collect(),
            })),
        }
    }
}

/// A whole value, written in the type it travels as.
struct Whole {
    hmac: Hmac,
    keyed: Keyed,
    kind: Kind,
}

impl ValueRewrite for Whole {
    fn rewrite(&self, value: &[u8], out: &mut Vec<u8>) -> Result<()> {
        mask_into(&self.hmac, self.keyed, self.kind, value, out);
        Ok(())
    }
}

/// Values inside a JSON document (`jsonb`: after its version byte).
struct Json {
    hmac: Hmac,
    jsonb: bool,
    targets: Vec<(Path, Keyed)>,
}

impl ValueRewrite for Json {
    fn rewrite(&self, value: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let text = if self.jsonb {
            if value.first() != Some(&1) {
                bail!("the source sent a jsonb value of an unknown version");
            }
            out.push(1);
            &value[1..]
        } else {
            value
        };
        json::mask_document(text, &self.targets, &self.hmac, out)
    }
}
