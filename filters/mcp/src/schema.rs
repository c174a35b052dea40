//! A subset of JSON Schema, enough for the `inputSchema` MCP servers publish (FastMCP's
//! pydantic schemas, hand-written ones): `type` (one or a list), `properties`, `required`,
//! `additionalProperties` (bool or schema), `items` (one schema), `enum`, `const`,
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum` (numbers), `minLength`/`maxLength`,
//! `minItems`/`maxItems`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s (`#/$defs/X`,
//! `#/definitions/X`). Other keywords (`pattern`, `format`, ...) are not checked: a value they
//! would refuse passes to the server, which still validates.

use serde_json::Value;

/// Deepest nesting followed (schemas and `$ref` chains); deeper is refused, never a stack blowup.
const MAX_DEPTH: usize = 32;

/// Checks `value` against `schema`; `Err` is the first problem, with its JSON path.
pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    Checker { root: schema }.check(schema, value, "$", 0)
}

struct Checker<'a> {
    root: &'a Value,
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    let have = type_of(v);
    want == have || (want == "number" && have == "integer")
}

fn num(s: &Value, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

fn count(s: &Value, k: &str) -> Option<usize> {
    s.get(k)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl Checker<'_> {
    fn resolve<'s>(&'s self, r: &str) -> Option<&'s Value> {
        let path = r.strip_prefix('#')?;
        if path.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(path)
    }

    fn check(&self, s: &Value, v: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: schema nested too deeply"));
        }
        let obj = match s {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
            Value::Object(o) => o,
            _ => return Ok(()),
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            // An unresolvable reference is the server's problem, not the caller's: not checked.
            if let Some(target) = self.resolve(r) {
                self.check(target, v, at, depth + 1)?;
            }
        }
        match obj.get("type") {
            Some(Value::String(t)) if !type_ok(t, v) => {
                return Err(format!("{at}: expected {t}, got {}", type_of(v)));
            }
            Some(Value::Array(ts))
                if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)) =>
            {
                return Err(format!("{at}: {} is not an allowed type", type_of(v)));
            }
            _ => {}
        }
        if let Some(Value::Array(options)) = obj.get("enum") {
            if !options.contains(v) {
                return Err(format!("{at}: not one of the allowed values"));
            }
        }
        if let Some(c) = obj.get("const") {
            if c != v {
                return Err(format!("{at}: must be {c}"));
            }
        }
        if let Some(Value::Array(all)) = obj.get("allOf") {
            for sub in all {
                self.check(sub, v, at, depth + 1)?;
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(any)) = obj.get(key) {
                let ok = any
                    .iter()
                    .filter(|sub| self.check(sub, v, at, depth + 1).is_ok())
                    .count();
                if ok == 0 || (key == "oneOf" && ok > 1) {
                    return Err(format!("{at}: matches {ok} of the `{key}` alternatives"));
                }
            }
        }
        match v {
            Value::Number(_) => self.number(s, v, at),
            Value::String(text) => {
                let n = text.chars().count();
                if count(s, "minLength").is_some_and(|m| n < m) {
                    return Err(format!("{at}: shorter than minLength"));
                }
                if count(s, "maxLength").is_some_and(|m| n > m) {
                    return Err(format!("{at}: longer than maxLength"));
                }
                Ok(())
            }
            Value::Array(items) => {
                if count(s, "minItems").is_some_and(|m| items.len() < m) {
                    return Err(format!("{at}: fewer than minItems"));
                }
                if count(s, "maxItems").is_some_and(|m| items.len() > m) {
                    return Err(format!("{at}: more than maxItems"));
                }
                if let Some(item) = obj.get("items").filter(|i| i.is_object() || i.is_boolean()) {
                    for (i, x) in items.iter().enumerate() {
                        self.check(item, x, &format!("{at}[{i}]"), depth + 1)?;
                    }
                }
                Ok(())
            }
            Value::Object(fields) => {
                let props = obj.get("properties").and_then(Value::as_object);
                if let Some(Value::Array(req)) = obj.get("required") {
                    for r in req.iter().filter_map(Value::as_str) {
                        if !fields.contains_key(r) {
                            return Err(format!("{at}: missing required property `{r}`"));
                        }
                    }
                }
                let extra = obj.get("additionalProperties");
                for (k, x) in fields {
                    let path = format!("{at}.{k}");
                    match props.and_then(|p| p.get(k)) {
                        Some(sub) => self.check(sub, x, &path, depth + 1)?,
                        None => match extra {
                            Some(Value::Bool(false)) => {
                                return Err(format!("{at}: unexpected property `{k}`"))
                            }
                            Some(sub @ Value::Object(_)) => self.check(sub, x, &path, depth + 1)?,
                            _ => {}
                        },
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn number(&self, s: &Value, v: &Value, at: &str) -> Result<(), String> {
        let Some(x) = v.as_f64() else { return Ok(()) };
        let bad = |what: &str| Err(format!("{at}: {what}"));
        if num(s, "minimum").is_some_and(|m| x < m) {
            return bad("below minimum");
        }
        if num(s, "maximum").is_some_and(|m| x > m) {
            return bad("above maximum");
        }
        if num(s, "exclusiveMinimum").is_some_and(|m| x <= m) {
            return bad("not above exclusiveMinimum");
        }
        if num(s, "exclusiveMaximum").is_some_and(|m| x >= m) {
            return bad("not below exclusiveMaximum");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fastmcp_like() -> Value {
        json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "title": "A"},
                "b": {"type": "integer", "minimum": 0},
                "mode": {"enum": ["fast", "slow"]},
                "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": null},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "opts": {"$ref": "#/$defs/Opts"}
            },
            "required": ["a", "b"],
            "$defs": {"Opts": {"type": "object", "properties": {"x": {"type": "boolean"}},
                                "additionalProperties": false}}
        })
    }

    #[test]
    fn accepts_what_matches() {
        let s = fastmcp_like();
        for v in [
            json!({"a": 1, "b": 2}),
            json!({"a": 1.0, "b": 0, "mode": "fast", "note": null, "tags": ["x"]}),
            json!({"a": -3, "b": 2, "note": "hi", "opts": {"x": true}, "extra": 1}),
        ] {
            assert_eq!(check(&s, &v), Ok(()), "{v}");
        }
        assert_eq!(check(&json!({}), &json!({"anything": [1]})), Ok(()));
        assert_eq!(check(&json!(true), &json!(1)), Ok(()));
    }

    #[test]
    fn refuses_with_the_path() {
        let s = fastmcp_like();
        let cases = [
            (json!({"a": 1}), "$: missing required property `b`"),
            (
                json!({"a": "1", "b": 2}),
                "$.a: expected integer, got string",
            ),
            (
                json!({"a": 1.5, "b": 2}),
                "$.a: expected integer, got number",
            ),
            (json!({"a": 1, "b": -1}), "$.b: below minimum"),
            (
                json!({"a": 1, "b": 1, "mode": "x"}),
                "$.mode: not one of the allowed values",
            ),
            (
                json!({"a": 1, "b": 1, "note": "toolong"}),
                "$.note: matches 0 of the `anyOf` alternatives",
            ),
            (
                json!({"a": 1, "b": 1, "tags": ["a", 2]}),
                "$.tags[1]: expected string, got integer",
            ),
            (
                json!({"a": 1, "b": 1, "opts": {"y": 1}}),
                "$.opts: unexpected property `y`",
            ),
            (json!([1]), "$: expected object, got array"),
        ];
        for (v, want) in cases {
            assert_eq!(check(&s, &v), Err(want.to_string()), "{v}");
        }
    }

    #[test]
    fn a_reference_loop_is_refused_not_followed_forever() {
        let s = json!({"$ref": "#"});
        assert!(check(&s, &json!(1))
            .unwrap_err()
            .contains("nested too deeply"));
    }
}
