//! The canonical text under which a schema is stored and deduplicated.
//!
//! Avro's Parsing Canonical Form (PCF) is the starting point: full names instead of
//! namespaces, fixed attribute order, no whitespace, `{"type":"int"}` collapsed to `"int"`.
//! PCF also drops attributes that change what a *reader* does, and with them the schema's
//! compatibility verdicts: field `default`s, `aliases`, enum `default`, logical types. Two
//! schemas differing only there must not share an id, so the canonical form keeps them.
//! Only `doc` and unknown properties are dropped: they change neither encoding nor
//! resolution.

use serde_json::{Map, Value};

const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CanonicalError(String);

fn err(msg: impl Into<String>) -> CanonicalError {
    CanonicalError(msg.into())
}

/// Canonical text of an Avro schema given as JSON text. The caller validates the schema with
/// apache-avro; this only normalises its JSON.
pub fn canonical_form(schema: &str) -> Result<String, CanonicalError> {
    let value: Value =
        serde_json::from_str(schema).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let canon = canon(&value, None)?;
    serde_json::to_string(&canon).map_err(|e| err(e.to_string()))
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    if name.contains('.') {
        return name.to_owned();
    }
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn namespace_of(full: &str) -> Option<String> {
    full.rsplit_once('.').map(|(ns, _)| ns.to_owned())
}

/// Builds an object with keys in a fixed order (insertion order when serde_json keeps it,
/// sorted otherwise: either way deterministic).
fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}

fn canon(value: &Value, ns: Option<&str>) -> Result<Value, CanonicalError> {
    match value {
        Value::String(s) if PRIMITIVES.contains(&s.as_str()) => Ok(Value::String(s.clone())),
        Value::String(s) => Ok(Value::String(full_name(s, ns))),
        Value::Array(branches) => branches
            .iter()
            .map(|b| canon(b, ns))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(obj) => canon_object(obj, ns),
        other => Err(err(format!("unexpected schema element {other}"))),
    }
}

fn canon_object(obj: &Map<String, Value>, ns: Option<&str>) -> Result<Value, CanonicalError> {
    let ty = obj
        .get("type")
        .ok_or_else(|| err("schema object without \"type\""))?;
    let ty_name = match ty {
        Value::String(s) => s.as_str(),
        // {"type": {...}} or {"type": [...]}: the wrapper adds nothing.
        nested => return canon(nested, ns),
    };
    let copy = |pairs: &mut Vec<(&'static str, Value)>, keys: &[&'static str]| {
        for key in keys {
            if let Some(v) = obj.get(*key) {
                pairs.push((key, v.clone()));
            }
        }
    };
    match ty_name {
        "record" | "error" | "enum" | "fixed" => {
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("{ty_name} without a name")))?;
            let own_ns = obj.get("namespace").and_then(Value::as_str).or(ns);
            let full = full_name(name, own_ns);
            let inner_ns = namespace_of(&full);
            let mut pairs: Vec<(&'static str, Value)> = vec![
                ("name", Value::String(full.clone())),
                ("type", Value::String(ty_name.to_owned())),
            ];
            match ty_name {
                "enum" => copy(&mut pairs, &["symbols", "default"]),
                "fixed" => copy(&mut pairs, &["size", "logicalType", "precision", "scale"]),
                _ => {
                    let fields = obj
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| err(format!("record {full} without fields")))?;
                    let fields = fields
                        .iter()
                        .map(|f| canon_field(f, inner_ns.as_deref()))
                        .collect::<Result<Vec<_>, _>>()?;
                    pairs.push(("fields", Value::Array(fields)));
                }
            }
            if let Some(aliases) = obj.get("aliases").and_then(Value::as_array) {
                // Aliases of named types are names too: resolve them like the name.
                let aliases = aliases
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|a| Value::String(full_name(a, own_ns)))
                    .collect();
                pairs.push(("aliases", Value::Array(aliases)));
            }
            Ok(object(pairs))
        }
        "array" => {
            let items = obj.get("items").ok_or_else(|| err("array without items"))?;
            let mut pairs = vec![
                ("type", Value::String("array".into())),
                ("items", canon(items, ns)?),
            ];
            copy(&mut pairs, &["logicalType"]);
            Ok(object(pairs))
        }
        "map" => {
            let values = obj.get("values").ok_or_else(|| err("map without values"))?;
            let mut pairs = vec![
                ("type", Value::String("map".into())),
                ("values", canon(values, ns)?),
            ];
            copy(&mut pairs, &["logicalType"]);
            Ok(object(pairs))
        }
        prim if PRIMITIVES.contains(&prim) => {
            if obj.contains_key("logicalType") {
                let mut pairs = vec![("type", Value::String(prim.to_owned()))];
                copy(&mut pairs, &["logicalType", "precision", "scale"]);
                Ok(object(pairs))
            } else {
                Ok(Value::String(prim.to_owned()))
            }
        }
        // A reference to a named type written as {"type": "com.x.Name"}.
        name => Ok(Value::String(full_name(name, ns))),
    }
}

fn canon_field(field: &Value, ns: Option<&str>) -> Result<Value, CanonicalError> {
    let obj = field
        .as_object()
        .ok_or_else(|| err("record field is not an object"))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err("record field without a name"))?;
    let ty = obj
        .get("type")
        .ok_or_else(|| err(format!("field {name} without a type")))?;
    let mut pairs = vec![
        ("name", Value::String(name.to_owned())),
        ("type", canon(ty, ns)?),
    ];
    for key in ["default", "aliases", "order"] {
        if let Some(v) = obj.get(key) {
            // "ascending" is the default order; spelling it out is not a different schema.
            if key == "order" && v == "ascending" {
                continue;
            }
            pairs.push((key, v.clone()));
        }
    }
    Ok(object(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_namespaces_and_doc_do_not_matter() {
        let a = r#"{"type":"record","name":"Order","namespace":"com.x","doc":"an order",
            "fields":[{"name":"id","type":{"type":"string"}},{"name":"m","type":{"type":"record","name":"Money","fields":[{"name":"a","type":"long"}]}},{"name":"m2","type":"Money"}]}"#;
        let b = r#"{ "name" : "com.x.Order", "type" : "record", "fields" : [
            {"type":"string","name":"id","doc":"x"},
            {"name":"m","type":{"type":"record","name":"com.x.Money","fields":[{"name":"a","type":"long"}]}},
            {"name":"m2","type":"com.x.Money"}]}"#;
        assert_eq!(canonical_form(a).unwrap(), canonical_form(b).unwrap());
    }

    #[test]
    fn defaults_aliases_and_logical_types_matter() {
        let base = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
        let with_default =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}"#;
        let with_alias =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["b"]}]}"#;
        let logical = r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"int","logicalType":"date"}}]}"#;
        let all = [base, with_default, with_alias, logical].map(|s| canonical_form(s).unwrap());
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
    }
}
