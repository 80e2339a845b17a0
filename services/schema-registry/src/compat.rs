//! Compatibility levels and the reader/writer check behind them.
//!
//! The check is apache-avro's `SchemaCompatibility::can_read`, with two corrections where it
//! diverges from Java Avro (which Confluent uses):
//!
//! - apache-avro answers `Partial` when a reader can read only *some* of what the writer
//!   writes (an enum reader missing some of the writer's symbols and without a default, a
//!   union reader missing some of the writer's branches). Java reports those as incompatible
//!   (`MISSING_ENUM_SYMBOLS`, `MISSING_UNION_BRANCH`), so `Partial` counts as incompatible.
//! - apache-avro requires named types (records, enums, fixed) to have the same unqualified
//!   name and ignores the reader type's `aliases`; Java also accepts a writer type whose full
//!   name is one of the reader type's aliases (a renamed record). Here the writer's types are
//!   renamed through the reader's aliases before the check, as Java's resolver does
//!   (`Schema.applyAliases`).
//! - apache-avro compares logical types (decimal precision and scale must match); Java's
//!   check looks at the underlying types only, so logical types are stripped before the
//!   check.
//!
//! The other rules checked agree with Java: reader field aliases (renamed fields), reader
//! defaults for missing fields, enum defaults, int->long->float->double and string<->bytes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde_json::Value;

/// Confluent's default is BACKWARD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    /// The new schema must read data written with the old one.
    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    /// The old schema must read data written with the new one.
    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown compatibility level {0:?}")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

/// Can `reader` read everything written with `writer`? `Err` carries why not.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match java_view(writer, reader) {
        Some((writer, reader)) => avro_can_read(&writer, &reader),
        None => avro_can_read(writer, reader),
    }
}

/// The pair as Java's check sees it: writer types renamed through the reader's type aliases,
/// logical types reduced to their underlying types (Java's check ignores them, so e.g. a
/// decimal precision change passes). `None` if a rewritten schema does not parse, in which
/// case the originals are checked as they are.
fn java_view(writer: &Schema, reader: &Schema) -> Option<(Schema, Schema)> {
    let reader_json = canonical_json(reader)?;
    let mut writer_json = canonical_json(writer)?;
    let mut renames = HashMap::new();
    collect_type_aliases(&reader_json, &mut renames);
    if !renames.is_empty() {
        rename_types(&mut writer_json, &renames);
    }
    let writer = Schema::parse_str(&strip_logical_types(writer_json).to_string()).ok()?;
    let reader = Schema::parse_str(&strip_logical_types(reader_json).to_string()).ok()?;
    Some((writer, reader))
}

fn strip_logical_types(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(strip_logical_types).collect()),
        Value::Object(mut obj) => {
            if obj.remove("logicalType").is_some() {
                obj.remove("precision");
                obj.remove("scale");
                if obj.len() == 1
                    && let Some(Value::String(ty)) = obj.get("type")
                {
                    return Value::String(ty.clone());
                }
            }
            Value::Object(
                obj.into_iter()
                    // Defaults are data, not schemas: leave them alone.
                    .map(|(k, v)| {
                        let v = if k == "default" {
                            v
                        } else {
                            strip_logical_types(v)
                        };
                        (k, v)
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

fn avro_can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(
            "the reader can read only part of the writer's values: an enum lacks some of the \
             writer's symbols (and has no default) or a union lacks some of the writer's branches"
                .to_owned(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks `new` against `previous` (oldest first) under `level`: the latest only, or all
/// for the transitive levels. Returns the reasons it is incompatible (empty: compatible).
pub fn check(level: Level, new: &Schema, previous: &[Schema]) -> Vec<String> {
    let against: &[Schema] = if level.transitive() {
        previous
    } else {
        previous.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    check_each(level, new, against)
}

/// Checks `new` against each of `against` in the direction(s) of `level`, ignoring
/// transitivity (the caller picked the schemas).
pub fn check_each(level: Level, new: &Schema, against: &[Schema]) -> Vec<String> {
    let mut messages = Vec::new();
    for old in against.iter().rev() {
        if level.backward()
            && let Err(why) = can_read(old, new)
        {
            messages.push(format!(
                "{level}: the new schema cannot read data written with an existing schema: {why}"
            ));
        }
        if level.forward()
            && let Err(why) = can_read(new, old)
        {
            messages.push(format!(
                "{level}: an existing schema cannot read data written with the new schema: {why}"
            ));
        }
    }
    messages
}

/// The schema in this registry's canonical JSON, where every name is a full name.
fn canonical_json(schema: &Schema) -> Option<Value> {
    let text = serde_json::to_string(schema).ok()?;
    let canonical = crate::canonical::canonical_form(&text).ok()?;
    serde_json::from_str(&canonical).ok()
}

fn is_named_definition(obj: &serde_json::Map<String, Value>) -> bool {
    matches!(
        obj.get("type").and_then(Value::as_str),
        Some("record" | "error" | "enum" | "fixed")
    ) && obj.get("name").is_some_and(Value::is_string)
}

fn collect_type_aliases(value: &Value, renames: &mut HashMap<String, String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_type_aliases(v, renames)),
        Value::Object(obj) => {
            if is_named_definition(obj)
                && let (Some(name), Some(aliases)) = (
                    obj.get("name").and_then(Value::as_str),
                    obj.get("aliases").and_then(Value::as_array),
                )
            {
                for alias in aliases.iter().filter_map(Value::as_str) {
                    renames.insert(alias.to_owned(), name.to_owned());
                }
            }
            obj.values().for_each(|v| collect_type_aliases(v, renames));
        }
        _ => {}
    }
}

/// Renames named-type definitions and references in place; true when anything changed.
fn rename_types(value: &mut Value, renames: &HashMap<String, String>) -> bool {
    match value {
        Value::String(s) => match renames.get(s.as_str()) {
            Some(new) => {
                *s = new.clone();
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| rename_types(v, renames) | changed),
        Value::Object(obj) => {
            let mut changed = false;
            if is_named_definition(obj)
                && let Some(Value::String(name)) = obj.get_mut("name")
                && let Some(new) = renames.get(name.as_str())
            {
                *name = new.clone();
                changed = true;
            }
            // Type positions only: field names and enum symbols are not type names.
            for key in ["type", "items", "values"] {
                if let Some(v) = obj.get_mut(key) {
                    changed |= rename_types(v, renames);
                }
            }
            if let Some(Value::Array(fields)) = obj.get_mut("fields") {
                for field in fields {
                    if let Some(t) = field.get_mut("type") {
                        changed |= rename_types(t, renames);
                    }
                }
            }
            changed
        }
        _ => false,
    }
}
