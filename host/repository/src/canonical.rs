//! Canonical JSON: the byte form items, trees and metadata are stored (and hashed) in.
//!
//! Rules (RFC 8785 "JCS" style):
//! * no whitespace;
//! * object members sorted by their keys' UTF-16 code units;
//! * strings: UTF-8, escaping only `"` `\` and control characters (`\b \t \n \f \r`, others `\u00xx`);
//! * numbers: integers that fit i64/u64 are written exactly in decimal; other numbers use the
//!   ECMAScript `Number.prototype.toString` form of the shortest round-tripping double
//!   (`1.5`, `1e+21`, `1e-7`), so `1.0` and `1` are both written `1`; `-0` is written `0`.
//!
//! The one departure from RFC 8785: integers beyond 2^53 are kept exact rather than rounded
//! through a double (Graph ids and sizes must not change on the way through).

use serde::Serialize;
use serde_json::{Number, Value};

/// Serialise any value as canonical JSON bytes.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    Ok(canonical_bytes(&v))
}

/// Canonical JSON bytes of a JSON value.
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        out.extend_from_slice(es_number(f).as_bytes());
    } else {
        // Not reachable without serde_json's arbitrary_precision; keep the text as given.
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// ECMAScript Number::toString for a finite double.
pub(crate) fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        // JSON has no non-finite numbers; serde_json never produces them.
        return "null".to_string();
    }
    let neg = f < 0.0;
    // Rust's `{:e}` prints the shortest digits that round-trip, e.g. "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point relative to the digits
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(s: &str) -> String {
        let v: Value = serde_json::from_str(s).unwrap();
        String::from_utf8(canonical_bytes(&v)).unwrap()
    }

    #[test]
    fn sorts_keys_recursively_and_strips_whitespace() {
        assert_eq!(
            canon(r#"{ "b": 1, "a": { "z": [1, 2, {"y": null, "x": true}], "c": "d" } }"#),
            r#"{"a":{"c":"d","z":[1,2,{"x":true,"y":null}]},"b":1}"#
        );
        // Same members in another order give the same bytes.
        assert_eq!(canon(r#"{"a":1,"b":2}"#), canon(r#"{"b":2,"a":1}"#));
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 example ordering: "\u20ac" (€) sorts before "\ud83d\ude00" (😀) in UTF-16
        // (0x20AC < 0xD83D) though the opposite holds for code points above the BMP in UTF-8.
        let out = canon(r#"{"😀":1,"€":2,"\r":3,"1":4}"#);
        assert_eq!(out, "{\"\\r\":3,\"1\":4,\"€\":2,\"😀\":1}");
    }

    #[test]
    fn numbers_in_ecmascript_form() {
        assert_eq!(canon("[1.0, -0.0, 0, 1e21, 1e20, 1.5e-7, 0.000001, 123.456, -5, 18446744073709551615, 3e-5]"),
            "[1,0,0,1e+21,100000000000000000000,1.5e-7,0.000001,123.456,-5,18446744073709551615,0.00003]");
        assert_eq!(es_number(4.5e300), "4.5e+300");
        assert_eq!(es_number(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn escapes_only_what_it_must() {
        let v = json!("a\"b\\c\u{1}\u{1f}\té/");
        assert_eq!(
            String::from_utf8(canonical_bytes(&v)).unwrap(),
            "\"a\\\"b\\\\c\\u0001\\u001f\\té/\""
        );
    }
}
