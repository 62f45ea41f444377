//! The rule that decides one column whose type differs: exact or narrowed, and how it
//! travels, over what both catalogs say of its types (pure, unit-tested here).
//!
//! The rule, in order (both sides' domains read as their base types, arrays as their
//! elements, and an array never matching a non-array):
//! 1. The same base type: exact when the destination's type modifier is none, the same, or
//!    wider in what it means for that type (its `typmodin`: a longer `varchar`/`char`/
//!    `varbit`, a `numeric` with at least as many digits on both sides of the point, a
//!    `time`/`timestamp` of at least the precision). The bytes travel as they are; the
//!    destination's receive function applies its modifier and its domain's constraints.
//! 2. Another base type: exact when the destination's `pg_cast` has an *implicit* cast from
//!    the source's type (PostgreSQL's mark of a lossless widening) and the destination's
//!    type has no modifier — except the implicit casts that are not exact (`INEXACT`), and
//!    plus `json` to `jsonb`, an assignment cast that keeps every JSON value.
//! 3. Into an unbounded text type (`text`, `varchar` without a length, `citext`) from any
//!    other type, arrays too: exact, since every value has a text form that fits (as
//!    pg_dump's data restores into one); cast to text by the source, in its pinned output
//!    settings (`TEXT_SETTINGS`).
//! 4. Anything else narrows: refused while planning unless `--allow-narrowing`.

use super::facts::{Cast, TypeFacts};

/// How a converted column's values travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// The bytes as they are: the same binary form (a domain, a type modifier, a
    /// binary-coercible cast); the destination's receive function applies its modifier.
    AsIs,
    /// Cast by the source in its `COPY (SELECT …)`, to this built-in type.
    Cast(String),
    /// The table travels as text, and the destination's input function reads the value.
    Text,
}

/// Implicit casts that do not keep every value: into floating point from types with more
/// digits than its mantissa, and into the time-zoned types, whose result depends on the
/// session's `TimeZone`. The catalog cannot say this; pg_cast marks them implicit.
const INEXACT: [(&str, &str); 8] = [
    ("int4", "float4"),
    ("int8", "float4"),
    ("numeric", "float4"),
    ("int8", "float8"),
    ("numeric", "float8"),
    ("date", "timestamptz"),
    ("timestamp", "timestamptz"),
    ("time", "timetz"),
];

/// Decides one column: exact or not, and how it travels. Pure, over the catalogs' facts.
pub(crate) fn classify(
    src: &TypeFacts,
    dst: &TypeFacts,
    cast: Option<Cast>,
) -> (bool, How, String) {
    let decided = by_type(src, dst, cast);
    if !decided.0 && takes_any_text(dst) {
        // Every value of every type has a text form, which an unbounded text column
        // takes, as pg_dump's data restores into one.
        let how = if dst.builtin {
            How::Cast(dst.cast_to.clone())
        } else {
            How::Text
        };
        return (
            true,
            how,
            "its text form, into a text column without a limit".into(),
        );
    }
    decided
}

/// `classify` by the types' and the casts' rules alone (1 and 2 of the module's comment).
fn by_type(src: &TypeFacts, dst: &TypeFacts, cast: Option<Cast>) -> (bool, How, String) {
    if src.array != dst.array {
        let why = "an array on one side only".to_string();
        return (false, How::Text, why);
    }
    if (&src.schema, &src.name) == (&dst.schema, &dst.name) {
        return if typmod_fits(&dst.typmodin, src.typmod, dst.typmod) {
            let why = if dst.domain && !src.domain {
                "a domain over the same type, its constraints checked"
            } else {
                "the same type, as wide or wider"
            };
            (true, How::AsIs, why.into())
        } else {
            (false, How::AsIs, "a smaller type modifier".into())
        };
    }
    let by_source = if dst.builtin {
        How::Cast(dst.cast_to.clone())
    } else {
        How::Text
    };
    if src.is("json") && dst.is("jsonb") {
        return (true, by_source, "jsonb holds every JSON value".into());
    }
    let inexact = src.schema == "pg_catalog"
        && dst.schema == "pg_catalog"
        && INEXACT.contains(&(src.name.as_str(), dst.name.as_str()));
    match cast {
        Some(cast) if cast.context == 'i' && !inexact => {
            // An array's binary form names its element type: only the same elements
            // travel as they are.
            let how = if cast.method == 'b' && !src.array {
                How::AsIs
            } else {
                by_source
            };
            if dst.typmod == -1 {
                (true, how, "an implicit cast".into())
            } else {
                let why = "an implicit cast, to a type with a modifier".into();
                (false, how, why)
            }
        }
        Some(cast) if cast.context == 'i' => (
            false,
            How::Text,
            "an implicit cast that rounds or reads the TimeZone".into(),
        ),
        Some(_) => (false, How::Text, "no implicit cast".into()),
        None => (false, How::Text, "no cast".into()),
    }
}

/// An unbounded text type (`text`, `varchar` without a length, `citext`), not an array:
/// every value's text form fits it.
fn takes_any_text(dst: &TypeFacts) -> bool {
    !dst.array && dst.typmod == -1 && (dst.is("text") || dst.is("varchar") || dst.name == "citext")
}

/// Whether every value of a type with modifier `src` fits the same type with modifier
/// `dst`, as the type's `typmodin` defines modifiers. Unknown modifiers never fit unless
/// equal.
pub(crate) fn typmod_fits(typmodin: &str, src: i32, dst: i32) -> bool {
    if dst == -1 || src == dst {
        return true;
    }
    if src == -1 {
        return false;
    }
    match typmodin {
        // Length + 4 (VARHDRSZ); a longer limit takes every shorter string.
        "varchartypmodin" | "bpchartypmodin" | "varbittypmodin" => dst >= src,
        // Fractional-second precision.
        "timetypmodin" | "timetztypmodin" | "timestamptypmodin" | "timestamptztypmodin" => {
            dst >= src
        }
        "numerictypmodin" => {
            let (sp, ss) = numeric_precision_scale(src);
            let (dp, ds) = numeric_precision_scale(dst);
            ds >= ss && dp - ds >= sp - ss
        }
        // bit(n) is a fixed length; interval's modifier holds fields as well as precision.
        _ => false,
    }
}

/// `numeric(p, s)`'s modifier is `((p << 16) | s) + 4`, the scale an 11-bit signed number
/// (negative scales are 15+).
fn numeric_precision_scale(typmod: i32) -> (i32, i32) {
    let m = typmod - 4;
    let precision = (m >> 16) & 0xffff;
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    (precision, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, typmod: i32, typmodin: &str) -> TypeFacts {
        TypeFacts {
            schema: "pg_catalog".into(),
            name: name.into(),
            typmod,
            typmodin: typmodin.into(),
            array: false,
            builtin: true,
            cast_to: name.into(),
            domain: false,
        }
    }

    fn numeric(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    const IMPLICIT: Option<Cast> = Some(Cast {
        context: 'i',
        method: 'f',
    });
    const ASSIGNMENT: Option<Cast> = Some(Cast {
        context: 'a',
        method: 'f',
    });

    #[test]
    fn widened_types_are_exact() {
        let exact = |s: &TypeFacts, d: &TypeFacts, cast| classify(s, d, cast).0;
        assert!(exact(
            &facts("int4", -1, ""),
            &facts("int8", -1, ""),
            IMPLICIT
        ));
        assert!(exact(
            &facts("int4", -1, ""),
            &facts("numeric", -1, "numerictypmodin"),
            IMPLICIT
        ));
        let vc = |n| facts("varchar", n + 4, "varchartypmodin");
        assert!(exact(&vc(10), &vc(20), None));
        assert!(exact(
            &vc(10),
            &facts("varchar", -1, "varchartypmodin"),
            None
        ));
        let ts = |p| facts("timestamp", p, "timestamptypmodin");
        assert!(exact(&ts(0), &ts(-1), None));
        assert!(exact(&ts(0), &ts(3), None));
        let n = |p, s| facts("numeric", numeric(p, s), "numerictypmodin");
        assert!(exact(&n(12, 2), &n(14, 4), None));
        assert!(exact(
            &facts("json", -1, ""),
            &facts("jsonb", -1, ""),
            ASSIGNMENT
        ));
        // Anything into an unbounded text column: its text form, cast by the source.
        let text = facts("text", -1, "");
        let mut array = facts("int4", -1, "");
        array.array = true;
        for source in [facts("int4", -1, ""), facts("timestamptz", -1, ""), array] {
            let (exact, how, _) = classify(&source, &text, None);
            assert!(exact);
            assert_eq!(how, How::Cast("text".into()));
        }
        assert!(exact(
            &facts("int4", -1, ""),
            &facts("varchar", -1, ""),
            None
        ));
    }

    #[test]
    fn narrowed_types_are_not() {
        let exact = |s: &TypeFacts, d: &TypeFacts, cast| classify(s, d, cast).0;
        let n = |p, s| facts("numeric", numeric(p, s), "numerictypmodin");
        assert!(!exact(&n(12, 2), &n(8, 2), None));
        assert!(!exact(&n(12, 2), &n(12, 1), None));
        assert!(!exact(
            &facts("int8", -1, ""),
            &facts("int4", -1, ""),
            ASSIGNMENT
        ));
        let vc5 = facts("varchar", 9, "varchartypmodin");
        assert!(!exact(&facts("text", -1, ""), &vc5, IMPLICIT));
        assert!(!exact(
            &facts("timestamptz", -1, ""),
            &facts("timestamp", -1, ""),
            ASSIGNMENT
        ));
        assert!(!exact(
            &facts("int8", -1, ""),
            &facts("float8", -1, ""),
            IMPLICIT
        ));
        assert!(!exact(
            &facts("timestamp", -1, ""),
            &facts("timestamptz", -1, ""),
            IMPLICIT
        ));
        let bit = |n| facts("bit", n, "bittypmodin");
        assert!(!exact(&bit(4), &bit(8), None));
        let mut array = facts("int4", -1, "");
        array.array = true;
        assert!(!exact(&array, &facts("int4", -1, ""), None));
    }

    #[test]
    fn conversions_travel_the_cheapest_way_that_keeps_them() {
        let how = |s: &TypeFacts, d: &TypeFacts, cast| classify(s, d, cast).1;
        assert_eq!(
            how(&facts("int4", -1, ""), &facts("int8", -1, ""), IMPLICIT),
            How::Cast("int8".into())
        );
        let binary = Some(Cast {
            context: 'i',
            method: 'b',
        });
        assert_eq!(
            how(&facts("varchar", 14, ""), &facts("text", -1, ""), binary),
            How::AsIs
        );
        let mut user = facts("mood", -1, "");
        user.schema = "public".into();
        user.builtin = false;
        assert_eq!(how(&facts("text", -1, ""), &user, None), How::Text);
    }

    #[test]
    fn numeric_modifiers_decode_negative_scales() {
        assert_eq!(numeric_precision_scale(numeric(8, 2)), (8, 2));
        assert_eq!(numeric_precision_scale(numeric(5, -2)), (5, -2));
    }
}
