//! The schema compatibility gate: every `.avsc` under `schemas/` is checked against every
//! earlier version of itself in the history of a git revision (by default `main`), under the
//! mode `schemas/compatibility.toml` gives it, with apache-avro's schema resolution rules.
//! A violation names the file, the earlier version, the field and the rule broken.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::Deserialize;

/// Confluent's compatibility modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Mode {
    fn backward(self) -> bool {
        matches!(
            self,
            Mode::Backward | Mode::BackwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }
    fn forward(self) -> bool {
        matches!(
            self,
            Mode::Forward | Mode::ForwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }
    fn transitive(self) -> bool {
        matches!(
            self,
            Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "NONE",
            Mode::Backward => "BACKWARD",
            Mode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Mode::Forward => "FORWARD",
            Mode::ForwardTransitive => "FORWARD_TRANSITIVE",
            Mode::Full => "FULL",
            Mode::FullTransitive => "FULL_TRANSITIVE",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `schemas/compatibility.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompatConfig {
    pub default: Mode,
    pub events: Option<Mode>,
    pub commands: Option<Mode>,
    #[serde(default)]
    pub records: BTreeMap<String, Mode>,
}

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig {
            default: Mode::FullTransitive,
            events: None,
            commands: None,
            records: BTreeMap::new(),
        }
    }
}

impl CompatConfig {
    pub fn parse(text: &str) -> Result<CompatConfig, GateError> {
        toml::from_str(text).map_err(|e| GateError::Config(e.to_string()))
    }

    /// The mode of a record, given the topic it is published on (when known).
    pub fn mode_for(&self, full_name: &str, topic: Option<&str>) -> Mode {
        if let Some(mode) = self.records.get(full_name) {
            return *mode;
        }
        match topic {
            Some(t) if t.ends_with(".events") => self.events.unwrap_or(self.default),
            Some(t) if t.ends_with(".commands") => self.commands.unwrap_or(self.default),
            _ => self.default,
        }
    }
}

/// The gate could not run (as opposed to: it ran and found violations).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("reading {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a valid Avro schema: {message}")]
    InvalidSchema { path: String, message: String },
    #[error("schemas/compatibility.toml: {0}")]
    Config(String),
}

/// Which check failed: can the new schema read old data (backward), can old readers read new
/// data (forward)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema as reader of data written with the earlier version.
    Backward,
    /// The earlier version as reader of data written with the new schema.
    Forward,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// e.g. `schemas/payment/PaymentDeclined.avsc`.
    pub path: String,
    pub full_name: String,
    pub mode: Mode,
    /// The earlier version, e.g. `main@1a2b3c4`.
    pub earlier: String,
    pub direction: Direction,
    /// Dotted path of the field the rule is about, when there is one (e.g. `meta.saga_id`).
    pub field: Option<String>,
    /// What is wrong, in words.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (check, meaning) = match self.direction {
            Direction::Backward => ("BACKWARD", "the new schema cannot read data written with"),
            Direction::Forward => ("FORWARD", "readers still on"),
        };
        write!(
            f,
            "{}: {} ({}) breaks the {check} rule of {}: ",
            self.path, self.full_name, self.earlier, self.mode
        )?;
        match self.direction {
            Direction::Backward => write!(f, "{meaning} {}", self.earlier)?,
            Direction::Forward => write!(
                f,
                "{meaning} {} cannot read data written with the new schema",
                self.earlier
            )?,
        }
        match &self.field {
            Some(field) => write!(f, "; field `{field}`: {}", self.rule),
            None => write!(f, "; {}", self.rule),
        }
    }
}

/// Result of a gate run.
#[derive(Debug, Default)]
pub struct Report {
    /// Schemas checked, with the number of earlier versions each was compared with.
    pub checked: Vec<(String, Mode, usize)>,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Check two schema texts under `mode` (one earlier version). Used by the gate and usable on
/// registry versions as well.
pub fn check_pair(
    new: &Schema,
    earlier: &Schema,
    mode: Mode,
) -> Vec<(Direction, Option<String>, String)> {
    let mut out = Vec::new();
    if mode.backward()
        && let Some((field, rule)) = can_read(earlier, new, "the new schema", "the earlier version")
    {
        out.push((Direction::Backward, field, rule));
    }
    if mode.forward()
        && let Some((field, rule)) = can_read(new, earlier, "the earlier version", "the new schema")
    {
        out.push((Direction::Forward, field, rule));
    }
    out
}

fn can_read(
    writer: &Schema,
    reader: &Schema,
    reader_label: &str,
    writer_label: &str,
) -> Option<(Option<String>, String)> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        // Partial means resolution fails for some data (an enum symbol or union branch the
        // reader lacks); Confluent refuses that too.
        Ok(Compatibility::Partial) => Some((
            None,
            format!(
                "{reader_label} lacks enum symbols or union branches that {writer_label} can write, and has no default for them"
            ),
        )),
        Err(e) => Some(explain(&e, reader_label, writer_label)),
    }
}

/// Turns apache-avro's error (nested per field) into a field path and a sentence.
fn explain(
    e: &CompatibilityError,
    reader_label: &str,
    writer_label: &str,
) -> (Option<String>, String) {
    let mut path = Vec::new();
    let mut current = e;
    while let CompatibilityError::FieldTypeMismatch(field, inner) = current {
        path.push(field.clone());
        current = inner;
    }
    let rule = match current {
        CompatibilityError::MissingDefaultValue(field) => {
            path.push(field.clone());
            format!(
                "present in {reader_label} but not in {writer_label}, and without a default (add a \"default\", or do not remove/add it)"
            )
        }
        CompatibilityError::WrongType { .. } | CompatibilityError::TypeExpected { .. } => {
            format!("type changed incompatibly ({current})")
        }
        CompatibilityError::NameMismatch { .. } => format!("named type renamed ({current})"),
        CompatibilityError::MissingSymbols => {
            format!("{reader_label} has none of the enum symbols {writer_label} can write")
        }
        CompatibilityError::MissingUnionElements
        | CompatibilityError::SchemaMismatchAllUnionElements => {
            format!("union branches changed incompatibly ({current})")
        }
        other => other.to_string(),
    };
    let field = (!path.is_empty()).then(|| path.join("."));
    (field, rule)
}

/// Runs the gate over the `.avsc` files under `repo/schemas` in the working tree against the
/// history of `against` (a git revision, usually `main`).
pub fn run(repo: &Path, against: &str) -> Result<Report, GateError> {
    let schemas_dir = repo.join("schemas");
    let config = match std::fs::read_to_string(schemas_dir.join("compatibility.toml")) {
        Ok(text) => CompatConfig::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CompatConfig::default(),
        Err(e) => {
            return Err(GateError::Io {
                path: schemas_dir.join("compatibility.toml"),
                message: e.to_string(),
            });
        }
    };
    let topics: BTreeMap<&str, &str> = crate::all_message_types()
        .map(|t| (t.full_name, t.topic))
        .collect();

    let mut report = Report::default();
    for file in avsc_files(&schemas_dir)? {
        let rel = file
            .strip_prefix(repo)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file).map_err(|e| GateError::Io {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let new = parse(&rel, &text)?;
        let full_name = match &new {
            Schema::Record(r) => r.name.fullname(None),
            _ => rel.clone(),
        };
        let mode = config.mode_for(&full_name, topics.get(full_name.as_str()).copied());

        // Newest first; the same text may appear in several commits.
        let mut earlier: Vec<(String, String)> = Vec::new();
        for rev in git(repo, &["log", "--format=%h", against, "--", &rel])?.lines() {
            let Ok(old) = git(repo, &["show", &format!("{rev}:{rel}")]) else {
                continue; // a commit that deleted the file
            };
            if old != text && !earlier.iter().any(|(_, t)| *t == old) {
                earlier.push((format!("{against}@{rev}"), old));
            }
        }
        if !mode.transitive() {
            earlier.truncate(1);
        }
        if mode == Mode::None {
            earlier.clear();
        }
        for (label, old_text) in &earlier {
            let old = parse(&format!("{rel} at {label}"), old_text)?;
            for (direction, field, rule) in check_pair(&new, &old, mode) {
                report.violations.push(Violation {
                    path: rel.clone(),
                    full_name: full_name.clone(),
                    mode,
                    earlier: label.clone(),
                    direction,
                    field,
                    rule,
                });
            }
        }
        report.checked.push((rel, mode, earlier.len()));
    }
    Ok(report)
}

fn parse(label: &str, text: &str) -> Result<Schema, GateError> {
    Schema::parse_str(text).map_err(|e| GateError::InvalidSchema {
        path: label.to_owned(),
        message: e.to_string(),
    })
}

fn avsc_files(dir: &Path) -> Result<Vec<PathBuf>, GateError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| GateError::Io {
            path: d.clone(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "avsc") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn git(repo: &Path, args: &[&str]) -> Result<String, GateError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| GateError::Git {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(GateError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
