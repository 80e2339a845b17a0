//! The drift test: every Rust message type agrees with its `.avsc`, field for field, and the
//! shared records are defined identically in every file that inlines them.
//!
//! For each type a fully populated sample is (1) encoded with the `.avsc` schema through the
//! same schema-aware serializer the codec uses and decoded back equal, and (2) its serde shape
//! walked against the schema: every schema field must be present in the Rust value with a
//! matching type, and every Rust field must be in the schema.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as AvroValue;
use apache_avro::writer::datum::GenericDatumWriter;
use saga_contracts::message::from_avro_value;
use saga_contracts::{Message, all_message_types};
use serde_json::Value as Json;

use crate::for_each_sample;

thread_local! {
    static CHECKED: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// Avro binary of `msg` under its own schema, the way the codec writes it.
pub fn avro_bytes<M: Message>(msg: &M) -> Vec<u8> {
    GenericDatumWriter::builder(M::schema())
        .build()
        .and_then(|w| w.write_ser_to_vec(msg))
        .unwrap_or_else(|e| {
            panic!(
                "{}: sample does not encode with its .avsc: {e}",
                M::FULL_NAME
            )
        })
}

fn check<M: Message + PartialEq>(msg: M) {
    let name = M::FULL_NAME;
    let schema = M::schema();
    let Schema::Record(record) = schema else {
        panic!("{name}: schema is not a record");
    };
    assert_eq!(record.name.fullname(None), name, "record name vs FULL_NAME");

    // (1) Binary round trip through the .avsc.
    let bytes = avro_bytes(&msg);
    let mut slice = &bytes[..];
    let value = GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut slice))
        .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
    assert!(slice.is_empty(), "{name}: bytes left over");
    let back: M = from_avro_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(back, msg, "{name}: round trip changed the value");

    // (2) Field-by-field shape check against the schema JSON.
    let schema_json: Json = serde_json::from_str(M::SCHEMA_JSON).unwrap();
    let sample = serde_json::to_value(&msg).unwrap();
    let mut named = BTreeMap::new();
    let mut errors = Vec::new();
    walk(&sample, &schema_json, "", &mut named, name, &mut errors);
    assert!(
        errors.is_empty(),
        "{name} drifted from its .avsc:\n  {}",
        errors.join("\n  ")
    );

    CHECKED.with(|c| c.borrow_mut().insert(name));
}

fn full_name(node: &serde_json::Map<String, Json>, enclosing_ns: &str) -> (String, String) {
    let name = node["name"].as_str().unwrap_or_default();
    if name.contains('.') {
        let ns = name.rsplit_once('.').map(|(ns, _)| ns).unwrap_or_default();
        return (name.to_owned(), ns.to_owned());
    }
    let ns = node
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or(enclosing_ns);
    (format!("{ns}.{name}"), ns.to_owned())
}

/// Checks that `sample` (serde's view of the Rust value) has exactly the shape of `schema`.
fn walk(
    sample: &Json,
    schema: &Json,
    ns: &str,
    named: &mut BTreeMap<String, Json>,
    path: &str,
    errors: &mut Vec<String>,
) {
    match schema {
        Json::String(t) => match t.as_str() {
            "string" => expect(sample.is_string(), path, "a string", sample, errors),
            "int" | "long" => expect(sample.is_i64(), path, "an integer", sample, errors),
            "boolean" => expect(sample.is_boolean(), path, "a boolean", sample, errors),
            "null" => expect(sample.is_null(), path, "null", sample, errors),
            reference => {
                let key = if reference.contains('.') {
                    reference.to_owned()
                } else {
                    format!("{ns}.{reference}")
                };
                match named.get(&key).cloned() {
                    Some(def) => walk(sample, &def, ns, named, path, errors),
                    None => errors.push(format!("{path}: unknown type {reference}")),
                }
            }
        },
        Json::Array(branches) => {
            // Every union here is ["null", T]; the sample must take the T branch so that T
            // is checked too.
            if sample.is_null() {
                errors.push(format!(
                    "{path}: sample leaves the optional field empty; populate it so its type is checked"
                ));
                return;
            }
            let non_null: Vec<_> = branches.iter().filter(|b| *b != "null").collect();
            match non_null.as_slice() {
                [one] => walk(sample, one, ns, named, path, errors),
                _ => errors.push(format!("{path}: unions other than [null, T] are not used")),
            }
        }
        Json::Object(node) => {
            if let Some(logical) = node.get("logicalType").and_then(Json::as_str) {
                match logical {
                    "uuid" => expect(
                        sample
                            .as_str()
                            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
                        path,
                        "a UUID string",
                        sample,
                        errors,
                    ),
                    "timestamp-micros" => {
                        expect(sample.is_i64(), path, "an integer (micros)", sample, errors)
                    }
                    other => errors.push(format!("{path}: unexpected logical type {other}")),
                }
                return;
            }
            match node.get("type").and_then(Json::as_str) {
                Some("record") => {
                    let (full, record_ns) = full_name(node, ns);
                    named.insert(full.clone(), schema.clone());
                    let Some(obj) = sample.as_object() else {
                        errors.push(format!("{path}: expected a record {full}, got {sample}"));
                        return;
                    };
                    let fields = node["fields"].as_array().cloned().unwrap_or_default();
                    let schema_fields: BTreeSet<&str> =
                        fields.iter().filter_map(|f| f["name"].as_str()).collect();
                    for key in obj.keys() {
                        if !schema_fields.contains(key.as_str()) {
                            errors.push(format!(
                                "{path}.{key}: field of the Rust type is not in the schema ({full})"
                            ));
                        }
                    }
                    for f in &fields {
                        let fname = f["name"].as_str().unwrap_or_default();
                        let fpath = format!("{path}.{fname}");
                        match obj.get(fname) {
                            Some(v) => walk(v, &f["type"], &record_ns, named, &fpath, errors),
                            None => errors.push(format!(
                                "{fpath}: schema field is missing from the Rust type ({full})"
                            )),
                        }
                    }
                }
                Some("array") => {
                    let Some(items) = sample.as_array() else {
                        errors.push(format!("{path}: expected an array, got {sample}"));
                        return;
                    };
                    if items.is_empty() {
                        errors.push(format!("{path}: sample array is empty; populate it"));
                    }
                    for (i, item) in items.iter().enumerate() {
                        walk(
                            item,
                            &node["items"],
                            ns,
                            named,
                            &format!("{path}[{i}]"),
                            errors,
                        );
                    }
                }
                Some("enum") => {
                    let (full, _) = full_name(node, ns);
                    named.insert(full, schema.clone());
                    let symbols: Vec<&str> = node["symbols"]
                        .as_array()
                        .map(|s| s.iter().filter_map(Json::as_str).collect())
                        .unwrap_or_default();
                    expect(
                        sample.as_str().is_some_and(|s| symbols.contains(&s)),
                        path,
                        "one of the enum's symbols",
                        sample,
                        errors,
                    );
                }
                Some(_) => walk(sample, &node["type"], ns, named, path, errors),
                None => errors.push(format!("{path}: schema node without a type")),
            }
        }
        other => errors.push(format!("{path}: unexpected schema node {other}")),
    }
}

fn expect(ok: bool, path: &str, what: &str, sample: &Json, errors: &mut Vec<String>) {
    if !ok {
        errors.push(format!(
            "{path}: expected {what}, the Rust type gives {sample}"
        ));
    }
}

#[test]
fn every_message_type_matches_its_avsc() {
    let n = for_each_sample!(check;);
    let checked = CHECKED.with(|c| c.borrow().clone());
    let all: BTreeSet<&str> = all_message_types().map(|t| t.full_name).collect();
    assert_eq!(
        checked, all,
        "every message type needs a sample in samples.rs"
    );
    assert_eq!(n, all.len());
}

/// The walker itself must catch drift, or the test above proves nothing.
#[test]
fn the_shape_check_catches_a_renamed_a_missing_and_a_retyped_field() {
    let schema: Json = serde_json::json!({
        "type": "record", "name": "T", "namespace": "x",
        "fields": [
            {"name": "a", "type": "string"},
            {"name": "b", "type": "long"},
            {"name": "c", "type": ["null", {"type": "string", "logicalType": "uuid"}]}
        ]
    });
    let run = |sample: Json| {
        let mut errors = Vec::new();
        walk(&sample, &schema, "", &mut BTreeMap::new(), "T", &mut errors);
        errors
    };
    let uuid = uuid::Uuid::now_v7().to_string();
    assert!(run(serde_json::json!({"a": "x", "b": 1, "c": uuid})).is_empty());
    let renamed = run(serde_json::json!({"a": "x", "bb": 1, "c": uuid}));
    assert!(
        renamed
            .iter()
            .any(|e| e.contains("T.bb") && e.contains("not in the schema"))
    );
    assert!(
        renamed
            .iter()
            .any(|e| e.contains("T.b:") && e.contains("missing from the Rust type"))
    );
    let retyped = run(serde_json::json!({"a": "x", "b": "1", "c": uuid}));
    assert!(
        retyped
            .iter()
            .any(|e| e.contains("T.b") && e.contains("an integer"))
    );
    let empty = run(serde_json::json!({"a": "x", "b": 1, "c": null}));
    assert!(empty.iter().any(|e| e.contains("populate")));
}

fn avsc_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(schemas_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "avsc") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_avsc_has_a_rust_type_in_its_service_namespace() {
    let types: BTreeMap<&str, &str> = all_message_types()
        .map(|t| (t.schema_path, t.full_name))
        .collect();
    let files = avsc_files();
    assert_eq!(files.len(), types.len(), "files: {files:?}");
    for f in files {
        let service = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let rel = format!("schemas/{service}/{stem}.avsc");
        let full = types
            .get(rel.as_str())
            .unwrap_or_else(|| panic!("{rel} has no Rust type"));
        assert_eq!(*full, format!("com.example.saga.{service}.{stem}"));
        let on_disk = std::fs::read_to_string(&f).unwrap();
        let t = all_message_types().find(|t| t.schema_path == rel).unwrap();
        assert_eq!(on_disk, t.schema_json, "{rel}: compiled-in copy is stale");
        Schema::parse_str(&on_disk).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

/// Collects every named type defined in `node` as (full name, definition with nested
/// definitions replaced by their full name), and checks that every record and field has a doc.
fn collect_named(
    node: &Json,
    ns: &str,
    path: &str,
    out: &mut Vec<(String, Json)>,
    undocumented: &mut Vec<String>,
) -> Json {
    match node {
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| collect_named(i, ns, path, out, undocumented))
                .collect(),
        ),
        Json::Object(map) => {
            let kind = map.get("type").and_then(Json::as_str);
            let is_named = matches!(kind, Some("record" | "enum" | "fixed"));
            let (full, inner_ns) = if is_named {
                full_name(map, ns)
            } else {
                (String::new(), ns.to_owned())
            };
            if is_named
                && map
                    .get("doc")
                    .and_then(Json::as_str)
                    .is_none_or(str::is_empty)
            {
                undocumented.push(format!("{path}: type {full}"));
            }
            let mut copy = serde_json::Map::new();
            for (k, v) in map {
                let v = if k == "fields" {
                    let fields = v.as_array().cloned().unwrap_or_default();
                    Json::Array(
                        fields
                            .iter()
                            .map(|f| {
                                let fname = f["name"].as_str().unwrap_or_default();
                                if f.get("doc")
                                    .and_then(Json::as_str)
                                    .is_none_or(str::is_empty)
                                {
                                    undocumented.push(format!("{path}: field {full}.{fname}"));
                                }
                                collect_named(f, &inner_ns, path, out, undocumented)
                            })
                            .collect(),
                    )
                } else if k == "type" || k == "items" {
                    collect_named(v, &inner_ns, path, out, undocumented)
                } else {
                    v.clone()
                };
                copy.insert(k.clone(), v);
            }
            if is_named {
                out.push((full.clone(), Json::Object(copy)));
                Json::String(full)
            } else {
                Json::Object(copy)
            }
        }
        other => other.clone(),
    }
}

#[test]
fn shared_records_are_identical_in_every_file_and_everything_is_documented() {
    let mut defs: BTreeMap<String, Vec<(String, Json)>> = BTreeMap::new();
    let mut undocumented = Vec::new();
    for f in avsc_files() {
        let rel = f.strip_prefix(schemas_dir()).unwrap().display().to_string();
        let json: Json = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let mut out = Vec::new();
        collect_named(&json, "", &rel, &mut out, &mut undocumented);
        for (name, def) in out {
            defs.entry(name).or_default().push((rel.clone(), def));
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    for shared in [
        "com.example.saga.Metadata",
        "com.example.saga.Money",
        "com.example.saga.Address",
        "com.example.saga.OrderLine",
        "com.example.saga.StockLine",
    ] {
        assert!(defs.contains_key(shared), "{shared} is defined nowhere");
    }
    for (name, versions) in &defs {
        let (first_file, first) = &versions[0];
        for (file, def) in &versions[1..] {
            assert_eq!(
                def, first,
                "{name} in {file} differs from its definition in {first_file}"
            );
        }
    }
    assert!(defs["com.example.saga.Metadata"].len() == all_message_types().count());
}

/// The serde <-> Avro mappings this crate relies on, each proven on its own.
#[test]
fn serde_mapping_of_logical_types_options_and_enums() {
    use saga_contracts::*;
    let mut m = crate::samples::meta();
    m.causation_id = None;
    let msg = OrderApproved { meta: m.clone() };
    let bytes = avro_bytes(&msg);
    let value = GenericDatumReader::builder(OrderApproved::schema())
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap();
    let AvroValue::Record(fields) = &value else {
        panic!()
    };
    let AvroValue::Record(meta) = &fields[0].1 else {
        panic!()
    };
    let get = |n: &str| meta.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("message_id"), AvroValue::Uuid(*m.message_id.as_uuid()));
    assert_eq!(
        get("occurred_at"),
        AvroValue::TimestampMicros(m.occurred_at.as_micros())
    );
    assert_eq!(
        get("causation_id"),
        AvroValue::Union(0, Box::new(AvroValue::Null))
    );
    assert_eq!(
        get("saga_id"),
        AvroValue::Union(1, Box::new(AvroValue::Uuid(*m.saga_id.unwrap().as_uuid())))
    );
    assert_eq!(from_avro_value::<OrderApproved>(value).unwrap(), msg);

    // Option::None in a nested record (Address.line2).
    let mut placed = crate::samples::order_placed();
    placed.shipping_address.line2 = None;
    let bytes = avro_bytes(&placed);
    let value = GenericDatumReader::builder(OrderPlaced::schema())
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap();
    assert_eq!(from_avro_value::<OrderPlaced>(value).unwrap(), placed);

    // Every enum symbol, by position.
    for reason in [
        DeclineReason::UnknownAccount,
        DeclineReason::InsufficientCredit,
        DeclineReason::CurrencyMismatch,
        DeclineReason::Other,
    ] {
        let msg = PaymentDeclined {
            meta: crate::samples::meta(),
            reason,
            detail: String::new(),
        };
        let bytes = avro_bytes(&msg);
        let value = GenericDatumReader::builder(PaymentDeclined::schema())
            .build()
            .unwrap()
            .read_value(&mut &bytes[..])
            .unwrap();
        assert_eq!(from_avro_value::<PaymentDeclined>(value).unwrap(), msg);
    }
}

/// A newer writer (an added field with a default, an added enum symbol) is read by this
/// crate's types through Avro resolution, which is what makes FULL_TRANSITIVE evolution work.
#[test]
fn newer_writer_schemas_resolve_into_current_types() {
    use saga_contracts::*;
    let mut v2: Json = serde_json::from_str(PaymentDeclined::SCHEMA_JSON).unwrap();
    let fields = v2["fields"].as_array_mut().unwrap();
    fields[1]["type"]["symbols"]
        .as_array_mut()
        .unwrap()
        .push("FRAUD_SUSPECTED".into());
    fields.push(
        serde_json::json!({"name": "retry_after_s", "type": "int", "default": 0, "doc": "new"}),
    );
    let writer = Schema::parse_str(&v2.to_string()).unwrap();

    let original = PaymentDeclined {
        meta: crate::samples::meta(),
        reason: DeclineReason::Other,
        detail: "looks odd".into(),
    };
    let mut record = match apache_avro::to_value(&original).unwrap() {
        AvroValue::Record(f) => f,
        _ => panic!(),
    };
    record[1].1 = AvroValue::Enum(4, "FRAUD_SUSPECTED".into());
    record.push(("retry_after_s".into(), AvroValue::Int(30)));
    let bytes = GenericDatumWriter::builder(&writer)
        .build()
        .unwrap()
        .write_value_to_vec(AvroValue::Record(record))
        .unwrap();
    let value = GenericDatumReader::builder(&writer)
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap();
    let decoded =
        <PaymentEvent as TopicMessage>::from_avro(PaymentDeclined::FULL_NAME, value).unwrap();
    // The unknown symbol falls back to the enum default.
    assert_eq!(decoded, PaymentEvent::PaymentDeclined(original));
}
