//! RFC 7644 §3.4.2.2 filters, shared by the twin (evaluation) and the
//! driver (quoting): `eq ne co sw ew pr gt ge lt le`, `and or not`, `()`,
//! and value paths `attr[filter]`.

use serde_json::Value;

/// A filter value as a quoted string literal: backslash and double quote
/// escaped, control characters as JSON escapes (RFC 7644 uses JSON string
/// syntax for values).
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(Vec<String>),
    Cmp(Vec<String>, Op, Value),
    /// `attr[filter]`, optionally followed by `.sub` (PATCH paths only).
    ValuePath(String, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            '"' => {
                // A JSON string literal.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                let lit: String = chars[start..=i].iter().collect();
                let v: String =
                    serde_json::from_str(&lit).map_err(|e| format!("bad string literal: {e}"))?;
                out.push(Tok::Str(v));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

/// An attribute path as lower-case segments, without a schema URN prefix.
pub fn attr_path(raw: &str) -> Vec<String> {
    let raw = match raw.rfind(':') {
        Some(i) => &raw[i + 1..],
        None => raw,
    };
    raw.split('.').map(|s| s.to_ascii_lowercase()).collect()
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while is_kw(self.peek(), "or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while is_kw(self.peek(), "and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Filter, String> {
        if is_kw(self.peek(), "not") {
            self.pos += 1;
            if self.next() != Some(Tok::Open) {
                return Err("`not` must be followed by `(`".into());
            }
            let f = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err("missing `)`".into());
            }
            return Ok(Filter::Not(Box::new(f)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let f = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err("missing `)`".into());
            }
            return Ok(f);
        }
        let Some(Tok::Word(attr)) = self.next() else {
            return Err("expected an attribute name".into());
        };
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Tok::RBracket) {
                return Err("missing `]`".into());
            }
            return Ok(Filter::ValuePath(
                attr_path(&attr).join("."),
                Box::new(inner),
            ));
        }
        let path = attr_path(&attr);
        let Some(Tok::Word(op)) = self.next() else {
            return Err(format!("expected an operator after `{attr}`"));
        };
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(format!("unknown operator `{other}`")),
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                n => serde_json::from_str::<serde_json::Number>(n)
                    .map(Value::Number)
                    .map_err(|_| format!("bad comparison value `{n}`"))?,
            },
            _ => return Err("expected a comparison value".into()),
        };
        Ok(Filter::Cmp(path, op, value))
    }
}

/// Parses a whole filter.
pub fn parse(s: &str) -> Result<Filter, String> {
    let mut p = Parser {
        toks: tokenize(s)?,
        pos: 0,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err("unexpected text after the filter".into());
    }
    Ok(f)
}

/// A key of an object, matched case-insensitively (attribute names are).
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Every value at `path` (multi-valued attributes flattened; a complex
/// multi-valued attribute without a sub-attribute means its `value`s).
fn values_at<'a>(res: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let mut cur: Vec<&Value> = vec![res];
    for seg in path {
        let mut next = Vec::new();
        for v in cur {
            match get_ci(v, seg) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur.into_iter()
        .filter_map(|v| {
            if v.is_object() {
                get_ci(v, "value")
            } else {
                Some(v)
            }
        })
        .collect()
}

fn compare(a: &Value, op: Op, b: &Value, case_exact: bool) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let (x, y) = if case_exact {
                (x.clone(), y.clone())
            } else {
                (x.to_lowercase(), y.to_lowercase())
            };
            match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                Op::Co => x.contains(&y),
                Op::Sw => x.starts_with(&y),
                Op::Ew => x.ends_with(&y),
                Op::Gt => x > y,
                Op::Ge => x >= y,
                Op::Lt => x < y,
                Op::Le => x <= y,
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                Op::Gt => x > y,
                Op::Ge => x >= y,
                Op::Lt => x < y,
                Op::Le => x <= y,
                _ => false,
            }
        }
        (Value::Bool(x), Value::Bool(y)) => match op {
            Op::Eq => x == y,
            Op::Ne => x != y,
            _ => false,
        },
        _ => false,
    }
}

/// Whether `res` matches. `case_exact`: string comparisons are
/// case-sensitive (a common deviation; RFC 7643 makes most attributes
/// caseExact false).
pub fn matches(f: &Filter, res: &Value, case_exact: bool) -> bool {
    match f {
        Filter::And(a, b) => matches(a, res, case_exact) && matches(b, res, case_exact),
        Filter::Or(a, b) => matches(a, res, case_exact) || matches(b, res, case_exact),
        Filter::Not(a) => !matches(a, res, case_exact),
        Filter::Present(p) => values_at(res, p).iter().any(|v| {
            !v.is_null() && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
        }),
        Filter::Cmp(p, Op::Ne, v) => !values_at(res, p)
            .iter()
            .any(|x| compare(x, Op::Eq, v, case_exact)),
        Filter::Cmp(p, Op::Eq, Value::Null) => values_at(res, p).is_empty(),
        Filter::Cmp(p, op, v) => values_at(res, p)
            .iter()
            .any(|x| compare(x, *op, v, case_exact)),
        Filter::ValuePath(attr, inner) => match get_ci(res, attr) {
            Some(Value::Array(items)) => items.iter().any(|i| matches(inner, i, case_exact)),
            Some(v @ Value::Object(_)) => matches(inner, v, case_exact),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_and_value_paths() {
        let u = json!({"userName": "Bjensen", "active": true, "meta": {"lastModified": "2024-05-01T00:00:00Z"},
            "emails": [{"value": "b@example.com", "type": "work"}, {"value": "x@home.example", "type": "home"}],
            "title": "a \"quoted\" \\ title"});
        let t = |f: &str| matches(&parse(f).unwrap(), &u, false);
        assert!(t("userName eq \"bjensen\""));
        assert!(!matches(
            &parse("userName eq \"bjensen\"").unwrap(),
            &u,
            true
        ));
        assert!(t("userName ne \"x\" and active eq true"));
        assert!(t(
            "userName co \"jen\" and userName sw \"B\" and userName ew \"sen\""
        ));
        assert!(t("title pr and not (nickName pr)"));
        assert!(t(
            "meta.lastModified gt \"2024-01-01T00:00:00Z\" and meta.lastModified le \"2024-05-01T00:00:00Z\""
        ));
        assert!(!t("meta.lastModified lt \"2024-01-01T00:00:00Z\""));
        assert!(t("meta.lastModified ge \"2024-05-01T00:00:00Z\""));
        assert!(t("emails[type eq \"work\" and value co \"@example.com\"]"));
        assert!(!t("emails[type eq \"home\" and value co \"@example.com\"]"));
        assert!(t(
            "emails.value eq \"X@HOME.example\" or userName eq \"zzz\""
        ));
        assert!(t(&format!("title eq {}", quote("a \"quoted\" \\ title"))));
        assert!(t(
            "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bjensen\""
        ));
        assert!(parse("userName eq").is_err());
        assert!(parse("userName zz \"x\"").is_err());
        assert!(parse("(userName eq \"x\"").is_err());
    }
}
