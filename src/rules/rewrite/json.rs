//! Keyed masking inside JSON documents (`"payload.user.email" = "email"`): one scan of a
//! document's text finds the values at the rules' paths, and only those are written again;
//! every other byte goes as it came (numbers exact to the last digit, keys, order, spaces).
//!
//! A string is masked as a text column with the same content would be (the same key, the
//! same output, so a hashed e-mail in a document joins the hashed column); a number by its
//! text (`hash` makes a number, the fakes a string); `null` stays `null`; anything else at
//! a masked path (an object, an array, a boolean) becomes `null`, never left as it was.

use crate::rules::rewrite::hmac::Hmac;
use crate::rules::rewrite::values::{masked, Keyed, Kind};
use anyhow::{bail, Result};

/// One path step: an object's key or an array's index, as written in the rule; `*` is any.
pub(crate) type Path = Vec<String>;

/// Where the scan is: an object's key, or an array's index.
enum Step<'a> {
    Key(&'a [u8]),
    Index(usize),
}

/// Writes `text` (a JSON document) into `out` with the values at each target's path masked
/// by its rule.
pub(crate) fn mask_document(
    text: &[u8],
    targets: &[(Path, Keyed)],
    hmac: &Hmac,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut scan = Scan {
        text,
        at: 0,
        spans: Vec::new(),
    };
    let mut path = Vec::new();
    scan.value(&mut path, targets)?;
    let mut from = 0;
    for &(start, end, target) in &scan.spans {
        out.extend_from_slice(&text[from..start]);
        mask_value(&text[start..end], targets[target].1, hmac, out)?;
        from = end;
    }
    out.extend_from_slice(&text[from..]);
    Ok(())
}

/// The masked form of one JSON value.
fn mask_value(value: &[u8], keyed: Keyed, hmac: &Hmac, out: &mut Vec<u8>) -> Result<()> {
    match value[0] {
        b'"' => {
            let plain = unescape(&value[1..value.len() - 1])?;
            escape(&masked(hmac, keyed, Kind::Text(None), &plain), out);
        }
        b'-' | b'0'..=b'9' => {
            if keyed == Keyed::Hash {
                let number = masked(hmac, keyed, Kind::Int8, value);
                let n = i64::from_be_bytes(number.try_into().expect("eight bytes"));
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                escape(&masked(hmac, keyed, Kind::Text(None), value), out);
            }
        }
        _ => out.extend_from_slice(b"null"),
    }
    Ok(())
}

/// Whether a rule's path names the scan's place.
fn names(rule: &Path, path: &[Step<'_>]) -> bool {
    rule.len() == path.len()
        && rule.iter().zip(path).all(|(want, step)| {
            want == "*"
                || match step {
                    Step::Key(key) => want.as_bytes() == *key,
                    Step::Index(i) => want.parse() == Ok(*i),
                }
        })
}

/// Whether a rule's path goes on below the scan's place.
fn below(rule: &Path, path: &[Step<'_>]) -> bool {
    rule.len() > path.len()
        && rule.iter().zip(path).all(|(want, step)| {
            want == "*"
                || match step {
                    Step::Key(key) => want.as_bytes() == *key,
                    Step::Index(i) => want.parse() == Ok(*i),
                }
        })
}

struct Scan<'a> {
    text: &'a [u8],
    at: usize,
    /// The values found at a path: start, end, and which target.
    spans: Vec<(usize, usize, usize)>,
}

impl<'a> Scan<'a> {
    fn space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn peek(&self) -> Result<u8> {
        match self.text.get(self.at) {
            Some(b) => Ok(*b),
            None => bail!("a JSON document ended early"),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        self.space();
        if self.peek()? != byte {
            bail!("not JSON: expected {:?} at byte {}", byte as char, self.at);
        }
        self.at += 1;
        Ok(())
    }

    /// One value at `path`: recorded where a target names it, gone into where a target
    /// goes deeper, else passed over.
    fn value(&mut self, path: &mut Vec<Step<'a>>, targets: &[(Path, Keyed)]) -> Result<()> {
        self.space();
        let start = self.at;
        if let Some(target) = targets.iter().position(|(rule, _)| names(rule, path)) {
            self.skip()?;
            self.spans.push((start, self.at, target));
            return Ok(());
        }
        let deeper = targets.iter().any(|(rule, _)| below(rule, path));
        match self.peek()? {
            b'{' if deeper => {
                self.at += 1;
                self.space();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.space();
                    let key_start = self.at + 1;
                    self.string()?;
                    let key = &self.text[key_start..self.at - 1];
                    self.expect(b':')?;
                    // A key written with escapes is compared as written.
                    path.push(Step::Key(key));
                    self.value(path, targets)?;
                    path.pop();
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => bail!("not JSON: expected , or }} at byte {}", self.at),
                    }
                }
            }
            b'[' if deeper => {
                self.at += 1;
                self.space();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Ok(());
                }
                let mut index = 0;
                loop {
                    path.push(Step::Index(index));
                    self.value(path, targets)?;
                    path.pop();
                    index += 1;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => bail!("not JSON: expected , or ] at byte {}", self.at),
                    }
                }
            }
            _ => self.skip(),
        }
    }

    /// Passes over a string, quotes included.
    fn string(&mut self) -> Result<()> {
        if self.peek()? != b'"' {
            bail!("not JSON: expected a string at byte {}", self.at);
        }
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// Passes over one value of any kind.
    fn skip(&mut self) -> Result<()> {
        self.space();
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                let start = self.at;
                while self.text.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                if self.at == start {
                    bail!("not JSON: expected a value at byte {}", self.at);
                }
                Ok(())
            }
        }
    }
}

/// A JSON string's content (between its quotes) as UTF-8.
fn unescape(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Result<u32> {
        let digits = body.get(at..at + 4).unwrap_or_default();
        match std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
        {
            Some(n) if digits.len() == 4 => Ok(n),
            _ => bail!("not JSON: a bad \\u escape"),
        }
    };
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let Some(&kind) = body.get(i + 1) else {
            bail!("not JSON: a string ends in a backslash");
        };
        i += 2;
        match kind {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'u' => {
                let mut code = hex4(i)?;
                i += 4;
                if (0xd800..0xdc00).contains(&code) && body.get(i..i + 2) == Some(b"\\u") {
                    let low = hex4(i + 2)?;
                    if (0xdc00..0xe000).contains(&low) {
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                        i += 6;
                    }
                }
                let c = char::from_u32(code).unwrap_or('\u{fffd}');
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `text` as a JSON string, quotes included.
fn escape(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Path {
        p.split('.').map(str::to_string).collect()
    }

    fn run(doc: &str, targets: &[(&str, Keyed)]) -> String {
        let hmac = Hmac::new(b"0123456789abcdef");
        let targets: Vec<(Path, Keyed)> = targets.iter().map(|(p, k)| (path(p), *k)).collect();
        let mut out = Vec::new();
        mask_document(doc.as_bytes(), &targets, &hmac, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_only_the_paths_and_keeps_every_other_byte() {
        let hmac = Hmac::new(b"0123456789abcdef");
        let email = String::from_utf8(masked(
            &hmac,
            Keyed::Email,
            Kind::Text(None),
            b"ann@corp.com",
        ))
        .unwrap();
        let doc = r#"{"user": {"email": "ann@corp.com", "n": 1.000000000000000000001},
                      "tags": ["a", {"email": "x"}], "email": "top"}"#;
        let got = run(doc, &[("user.email", Keyed::Email)]);
        assert_eq!(
            got,
            doc.replace("\"ann@corp.com\"", &format!("\"{email}\""))
        );
        // An escaped string is masked by its content, as the same text column would be.
        let escaped = doc.replace("ann@corp.com", "ann\\u0040corp.com");
        assert_eq!(run(&escaped, &[("user.email", Keyed::Email)]), got);
        // A wildcard and an index.
        let got = run(
            doc,
            &[("tags.*.email", Keyed::Scramble), ("tags.0", Keyed::Hash)],
        );
        assert!(!got.contains("\"x\"") && !got.contains("[\"a\""), "{got}");
        assert!(got.contains("\"email\": \"top\""), "{got}");
    }

    #[test]
    fn numbers_objects_and_nulls() {
        let got = run(
            r#"{"id": 12345678901234567890, "o": {"a": 1}, "z": null, "s": [1,2]}"#,
            &[
                ("id", Keyed::Hash),
                ("o", Keyed::Name),
                ("z", Keyed::Email),
                ("s", Keyed::Phone),
            ],
        );
        let doc: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert!(doc["id"].is_i64() && doc["id"].as_i64() >= Some(0), "{got}");
        assert!(
            doc["o"].is_null() && doc["z"].is_null() && doc["s"].is_null(),
            "{got}"
        );
        assert_eq!(run("[]", &[("0", Keyed::Hash)]), "[]");
        assert_eq!(run("\"a\"", &[("x", Keyed::Hash)]), "\"a\"");
    }

    #[test]
    fn strings_come_back_valid_json() {
        let mut out = Vec::new();
        escape("a\"b\\c\u{1}é".as_bytes(), &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\u0001é\"".as_bytes());
        let got = run(
            r#"{"k": "q\"uo\\te \ud83d\ude00"}"#,
            &[("k", Keyed::Scramble)],
        );
        let doc: serde_json::Value = serde_json::from_str(&got).unwrap();
        let k = doc["k"].as_str().unwrap();
        assert_eq!(k.chars().count(), "q\"uo\\te 😀".chars().count(), "{got}");
        assert!(k.ends_with('😀'));
    }
}
