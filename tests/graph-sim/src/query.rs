//! `$filter` parsing and evaluation for the common cases, `$search`, and keyset paging with
//! opaque skip tokens.

use crate::http::{Req, Resp};
use crate::util;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Value),
    In(String, Vec<Value>),
    StartsWith(String, String),
    EndsWith(String, String),
    /// `path/any(x: x eq 'v')`
    Any(String, Op, Value),
    IsOf(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Whether the expression needs advanced query parameters (`ne`, `not`, `endswith`).
pub fn needs_advanced(e: &Expr) -> bool {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => needs_advanced(a) || needs_advanced(b),
        Expr::Not(_) | Expr::EndsWith(..) => true,
        Expr::Cmp(_, Op::Ne, _) | Expr::Any(_, Op::Ne, _) => true,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if ch == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if ch == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if ch == ':' {
            out.push(Tok::Colon);
            i += 1;
        } else if ch == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                if i >= c.len() {
                    return Err("unterminated string literal".into());
                }
                if c[i] == '\'' {
                    if i + 1 < c.len() && c[i + 1] == '\'' {
                        v.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                v.push(c[i]);
                i += 1;
            }
            out.push(Tok::Str(v));
        } else if ch.is_ascii_digit() || (ch == '-' && i + 1 < c.len() && c[i + 1].is_ascii_digit())
        {
            let start = i;
            i += 1;
            while i < c.len()
                && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '-' || c[i] == ':')
            {
                i += 1;
            }
            let txt: String = c[start..i].iter().collect();
            match txt.parse::<f64>() {
                Ok(n)
                    if !txt.contains('-')
                        || txt.starts_with('-') && txt[1..].parse::<f64>().is_ok() =>
                {
                    out.push(Tok::Num(n))
                }
                // Unquoted date-times and GUIDs compare as strings.
                _ => out.push(Tok::Str(txt)),
            }
        } else {
            let start = i;
            while i < c.len()
                && !c[i].is_whitespace()
                && !matches!(c[i], '(' | ')' | ',' | ':' | '\'')
            {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(k))
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.kw("or") {
            self.i += 1;
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.kw("and") {
            self.i += 1;
            let r = self.unary()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn literal(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(json!(s)),
            Some(Tok::Num(n)) => Ok(json!(n)),
            Some(Tok::Ident(s)) if s == "true" => Ok(json!(true)),
            Some(Tok::Ident(s)) if s == "false" => Ok(json!(false)),
            Some(Tok::Ident(s)) if s == "null" => Ok(Value::Null),
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }
    fn op(&mut self) -> Result<Op, String> {
        match self.next() {
            Some(Tok::Ident(s)) => match s.to_ascii_lowercase().as_str() {
                "eq" => Ok(Op::Eq),
                "ne" => Ok(Op::Ne),
                "gt" => Ok(Op::Gt),
                "ge" => Ok(Op::Ge),
                "lt" => Ok(Op::Lt),
                "le" => Ok(Op::Le),
                o => Err(format!("unsupported operator '{o}'")),
            },
            other => Err(format!("expected an operator, found {other:?}")),
        }
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.kw("not") {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.i += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        let Some(Tok::Ident(name)) = self.next() else {
            return Err("expected a property or function".into());
        };
        let lname = name.to_ascii_lowercase();
        if self.peek() == Some(&Tok::LParen)
            && matches!(lname.as_str(), "startswith" | "endswith" | "isof")
        {
            self.i += 1;
            if lname == "isof" {
                let Some(Tok::Str(t)) = self.next() else {
                    return Err("isof expects a type name".into());
                };
                self.expect(Tok::RParen)?;
                return Ok(Expr::IsOf(t));
            }
            let Some(Tok::Ident(p)) = self.next() else {
                return Err("expected a property".into());
            };
            self.expect(Tok::Comma)?;
            let Some(Tok::Str(v)) = self.next() else {
                return Err("expected a string".into());
            };
            self.expect(Tok::RParen)?;
            return Ok(if lname == "startswith" {
                Expr::StartsWith(p, v)
            } else {
                Expr::EndsWith(p, v)
            });
        }
        if let Some(path) = name.strip_suffix("/any") {
            // path/any(x: x eq 'v')
            self.expect(Tok::LParen)?;
            let Some(Tok::Ident(var)) = self.next() else {
                return Err("expected a lambda variable".into());
            };
            self.expect(Tok::Colon)?;
            match self.next() {
                Some(Tok::Ident(v)) if v == var => {}
                other => return Err(format!("unexpected {other:?} in lambda")),
            }
            let op = self.op()?;
            let lit = self.literal()?;
            self.expect(Tok::RParen)?;
            return Ok(Expr::Any(path.to_string(), op, lit));
        }
        if self.kw("in") {
            self.i += 1;
            self.expect(Tok::LParen)?;
            let mut vals = vec![];
            loop {
                vals.push(self.literal()?);
                match self.next() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RParen) => break,
                    other => return Err(format!("unexpected {other:?} in 'in' list")),
                }
            }
            return Ok(Expr::In(name, vals));
        }
        let op = self.op()?;
        let lit = self.literal()?;
        Ok(Expr::Cmp(name, op, lit))
    }
}

pub fn parse_filter(s: &str) -> Result<Expr, String> {
    let mut p = P { t: lex(s)?, i: 0 };
    let e = p.or()?;
    if p.i < p.t.len() {
        return Err(format!("unexpected token {:?}", p.t[p.i]));
    }
    Ok(e)
}

/// Checks Graph's limits: at most 15 `in` values, `eq` values of at most 120 characters.
pub fn check_limits(e: &Expr, advanced: bool) -> Result<(), String> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_limits(a, advanced)?;
            check_limits(b, advanced)
        }
        Expr::Not(a) => check_limits(a, advanced),
        Expr::In(_, v) if !advanced && v.len() > 15 => Err(format!(
            "Too many child clauses specified in search filter expression containing 'OR' operators: {}. Max allowed: 15.",
            v.len()
        )),
        Expr::Cmp(_, _, Value::String(s)) if s.chars().count() > 120 => {
            Err("The value of a filter clause exceeds the maximum length of 120 characters.".into())
        }
        _ => Ok(()),
    }
}

fn cmp(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
    }
}

fn lookup(get: &dyn Fn(&str) -> Value, path: &str) -> Value {
    let mut parts = path.split('/');
    let first = parts.next().unwrap_or("");
    let mut v = get(first);
    for p in parts {
        v = v.get(p).cloned().unwrap_or(Value::Null);
    }
    v
}

/// Evaluates a filter given a property accessor.
pub fn eval(e: &Expr, get: &dyn Fn(&str) -> Value) -> bool {
    match e {
        Expr::And(a, b) => eval(a, get) && eval(b, get),
        Expr::Or(a, b) => eval(a, get) || eval(b, get),
        Expr::Not(a) => !eval(a, get),
        Expr::Cmp(p, op, v) => cmp(&lookup(get, p), *op, v),
        Expr::In(p, vs) => {
            let x = lookup(get, p);
            vs.iter().any(|v| cmp(&x, Op::Eq, v))
        }
        Expr::StartsWith(p, s) => lookup(get, p)
            .as_str()
            .is_some_and(|x| x.to_lowercase().starts_with(&s.to_lowercase())),
        Expr::EndsWith(p, s) => lookup(get, p)
            .as_str()
            .is_some_and(|x| x.to_lowercase().ends_with(&s.to_lowercase())),
        Expr::Any(p, op, v) => match lookup(get, p) {
            Value::Array(items) => items.iter().any(|x| cmp(x, *op, v)),
            _ => false,
        },
        Expr::IsOf(t) => {
            let actual = get("@odata.type");
            let actual = actual.as_str().unwrap_or("").trim_start_matches('#');
            actual.eq_ignore_ascii_case(t.trim_start_matches('#'))
        }
    }
}

/// Ids named by a filter made only of `id eq '..'` clauses joined by `or` (delta's filter form).
pub fn id_list(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Cmp(p, Op::Eq, Value::String(v)) if p == "id" => Some(vec![v.clone()]),
        Expr::In(p, vs) if p == "id" => vs.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        Expr::Or(a, b) => {
            let mut l = id_list(a)?;
            l.extend(id_list(b)?);
            Some(l)
        }
        _ => None,
    }
}

/// Parses `$filter` with Graph's rules (advanced operators need `ConsistencyLevel` + `$count`).
pub fn filter_of(req: &Req) -> Result<Option<Expr>, Resp> {
    let Some(raw) = req.q("$filter") else {
        return Ok(None);
    };
    let e =
        parse_filter(raw).map_err(|m| Resp::bad_request(&format!("Invalid filter clause: {m}")))?;
    let advanced = req.eventual() && req.q("$count") == Some("true");
    // With advanced queries the `in` limit is the 2,048-character URL instead of 15 values.
    let url_len = req.self_url_without(&[]).len() - req.base.len();
    if advanced && url_len > 2048 {
        return Err(Resp::bad_request(
            "The request URL exceeds 2,048 characters.",
        ));
    }
    check_limits(&e, advanced).map_err(|m| Resp::bad_request(&m))?;
    if needs_advanced(&e) && !advanced {
        return Err(Resp::error(
            400,
            "Request_UnsupportedQuery",
            "Unsupported query. Operators 'ne', 'not' and 'endsWith' require the ConsistencyLevel header set to eventual and $count=true.",
        ));
    }
    Ok(Some(e))
}

/// `$search="displayName:foo" AND "mail:bar"` (advanced query): tokens matched by prefix of words.
pub fn search_matches(search: &str, get: &dyn Fn(&str) -> Value) -> bool {
    let clauses: Vec<&str> = search.split(" OR ").collect();
    clauses.iter().any(|clause| {
        clause.split(" AND ").all(|term| {
            let term = term.trim().trim_matches('"');
            let Some((prop, needle)) = term.split_once(':') else {
                return true;
            };
            let v = get(prop.trim());
            let hay = v.as_str().unwrap_or("").to_lowercase();
            let needle = needle.trim().to_lowercase();
            hay.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.starts_with(&needle))
                || hay.starts_with(&needle)
        })
    })
}

/// An opaque skip token: a keyset cursor bound to the request it was issued for.
pub fn make_skiptoken(req: &Req, cursor: &Value) -> String {
    let bind = util::fnv1a(req.self_url_without(&["$skiptoken", "$top"]).as_bytes());
    util::encode_token(&json!({"c": cursor, "b": bind}))
}

pub fn read_skiptoken(req: &Req) -> Result<Option<Value>, Resp> {
    let Some(tok) = req.q("$skiptoken") else {
        return Ok(None);
    };
    let bind = util::fnv1a(req.self_url_without(&["$skiptoken", "$top"]).as_bytes());
    match util::decode_token(tok) {
        Some(v) if v.get("b").and_then(Value::as_u64) == Some(bind) => Ok(v.get("c").cloned()),
        _ => Err(Resp::bad_request("Skip token is null or invalid.")),
    }
}

/// `$top` with Graph's bounds.
pub fn top_of(req: &Req, default: usize, max: usize) -> Result<usize, Resp> {
    match req.q("$top") {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 && n <= max => Ok(n),
            _ => Err(Resp::bad_request(&format!(
                "Invalid page size specified: '{t}'. Must be between 1 and {max} inclusive."
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn get(p: &str) -> Value {
        match p {
            "displayName" => json!("Adele Vance"),
            "id" => json!("abc"),
            "groupTypes" => json!(["Unified"]),
            "accountEnabled" => json!(true),
            _ => Value::Null,
        }
    }
    #[test]
    fn filters() {
        let ok = |s: &str| eval(&parse_filter(s).unwrap(), &get);
        assert!(ok("startswith(displayName,'adele')"));
        assert!(ok("id eq 'abc' or id eq 'x'"));
        assert!(ok("id in ('x','abc')"));
        assert!(ok("groupTypes/any(c:c eq 'Unified')"));
        assert!(ok(
            "accountEnabled eq true and displayName eq 'Adele Vance'"
        ));
        assert!(!ok("displayName eq 'Bob'"));
        assert!(ok("city eq null"));
        assert!(ok("not (displayName eq 'Bob')"));
        assert_eq!(
            id_list(&parse_filter("id eq 'a' or id eq 'b'").unwrap()),
            Some(vec!["a".into(), "b".into()])
        );
        assert!(needs_advanced(&parse_filter("displayName ne 'x'").unwrap()));
        let many = format!(
            "id in ({})",
            (0..16)
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(check_limits(&parse_filter(&many).unwrap(), false).is_err());
        assert!(check_limits(&parse_filter(&many).unwrap(), true).is_ok());
    }
}
