//! Compatibility levels and the reader/writer check behind them.
//!
//! The check is apache-avro's `SchemaCompatibility::can_read`, with one correction where it
//! diverges from Java Avro (which Confluent uses): apache-avro answers `Partial` when a reader
//! can read only *some* of what the writer writes (an enum reader missing some of the
//! writer's symbols and without a default, a union reader missing some of the writer's
//! branches). Java reports those as incompatible (`MISSING_ENUM_SYMBOLS`,
//! `MISSING_UNION_BRANCH`), so `Partial` counts as incompatible here. The other rules that
//! were checked agree with Java: reader field aliases (renames), reader defaults for missing
//! fields, enum defaults, int->long->float->double and string<->bytes promotions.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

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
