//! Each compatibility level against a table of schema changes, with the verdict Confluent
//! (Java Avro's SchemaCompatibility) gives. Checked through the HTTP API: per-subject level,
//! register the old schema, test the new one.

use serde_json::{Value, json};

use crate::support::{Registry, record, start, unique_subject};

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

struct Case {
    name: &'static str,
    old: Value,
    new: Value,
    /// Can the new schema read old data?
    backward: bool,
    /// Can the old schema read new data?
    forward: bool,
}

fn enum_field(symbols: &[&str], default: Option<&str>) -> Value {
    let mut e = json!({ "type": "enum", "name": "Status", "symbols": symbols });
    if let Some(d) = default {
        e["default"] = json!(d);
    }
    json!([{ "name": "status", "type": e }])
}

fn cases() -> Vec<Case> {
    let id = json!({ "name": "id", "type": "string" });
    let f = |ty: Value| json!([{ "name": "x", "type": ty }]);
    vec![
        Case {
            name: "add optional field (nullable, default null)",
            old: json!([id]),
            new: json!([id, { "name": "note", "type": ["null", "string"], "default": null }]),
            backward: true,
            forward: true,
        },
        Case {
            name: "add field with a default",
            old: json!([id]),
            new: json!([id, { "name": "qty", "type": "int", "default": 1 }]),
            backward: true,
            forward: true,
        },
        Case {
            name: "add required field",
            old: json!([id]),
            new: json!([id, { "name": "qty", "type": "int" }]),
            backward: false,
            forward: true,
        },
        Case {
            name: "remove field without default",
            old: json!([id, { "name": "qty", "type": "int" }]),
            new: json!([id]),
            backward: true,
            forward: false,
        },
        Case {
            name: "remove field with default",
            old: json!([id, { "name": "qty", "type": "int", "default": 0 }]),
            new: json!([id]),
            backward: true,
            forward: true,
        },
        Case {
            name: "rename with alias",
            old: json!([{ "name": "qty", "type": "int" }]),
            new: json!([{ "name": "quantity", "type": "int", "aliases": ["qty"] }]),
            backward: true,
            forward: false,
        },
        Case {
            name: "rename without alias",
            old: json!([{ "name": "qty", "type": "int" }]),
            new: json!([{ "name": "quantity", "type": "int" }]),
            backward: false,
            forward: false,
        },
        Case {
            name: "int -> long (promotion)",
            old: f(json!("int")),
            new: f(json!("long")),
            backward: true,
            forward: false,
        },
        Case {
            name: "long -> int (narrowing)",
            old: f(json!("long")),
            new: f(json!("int")),
            backward: false,
            forward: true,
        },
        Case {
            name: "int -> double (promotion)",
            old: f(json!("int")),
            new: f(json!("double")),
            backward: true,
            forward: false,
        },
        Case {
            name: "float -> double (promotion)",
            old: f(json!("float")),
            new: f(json!("double")),
            backward: true,
            forward: false,
        },
        Case {
            name: "string -> bytes (interchangeable)",
            old: f(json!("string")),
            new: f(json!("bytes")),
            backward: true,
            forward: true,
        },
        Case {
            name: "int -> string (no promotion)",
            old: f(json!("int")),
            new: f(json!("string")),
            backward: false,
            forward: false,
        },
        Case {
            name: "string -> nullable string",
            old: f(json!("string")),
            new: f(json!(["null", "string"])),
            backward: true,
            forward: false,
        },
        Case {
            name: "decimal precision widened (Java ignores logical types)",
            old: f(
                json!({ "type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2 }),
            ),
            new: f(
                json!({ "type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2 }),
            ),
            backward: true,
            forward: true,
        },
        Case {
            name: "timestamp-millis -> plain long",
            old: f(json!({ "type": "long", "logicalType": "timestamp-millis" })),
            new: f(json!("long")),
            backward: true,
            forward: true,
        },
        Case {
            name: "enum symbol added",
            old: enum_field(&["NEW", "PAID"], None),
            new: enum_field(&["NEW", "PAID", "SHIPPED"], None),
            backward: true,
            forward: false,
        },
        Case {
            name: "enum symbol removed",
            old: enum_field(&["NEW", "PAID", "SHIPPED"], None),
            new: enum_field(&["NEW", "PAID"], None),
            backward: false,
            forward: true,
        },
        Case {
            name: "enum symbol added, readers have an enum default",
            old: enum_field(&["UNKNOWN", "NEW", "PAID"], Some("UNKNOWN")),
            new: enum_field(&["UNKNOWN", "NEW", "PAID", "SHIPPED"], Some("UNKNOWN")),
            backward: true,
            forward: true,
        },
    ]
}

fn expected(level: &str, case: &Case) -> bool {
    match level {
        "NONE" => true,
        "BACKWARD" | "BACKWARD_TRANSITIVE" => case.backward,
        "FORWARD" | "FORWARD_TRANSITIVE" => case.forward,
        _ => case.backward && case.forward,
    }
}

async fn verdict(reg: &Registry, subject: &str, new: &str) -> bool {
    let (status, body) = reg
        .post(
            &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
            &json!({ "schema": new }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["is_compatible"].as_bool().unwrap()
}

#[tokio::test]
async fn every_level_against_the_change_table() {
    let reg = start().await;
    let mut wrong = Vec::new();
    for case in cases() {
        let old = record("Thing", case.old.clone());
        let new = record("Thing", case.new.clone());
        for level in LEVELS {
            let subject = unique_subject("table");
            reg.set_level(&subject, level).await;
            reg.register_ok(&subject, &old).await;
            let got = verdict(&reg, &subject, &new).await;
            let want = expected(level, &case);
            if got != want {
                wrong.push(format!("{level} / {}: got {got}, want {want}", case.name));
            }
            // Registration enforces the same verdict (409 when incompatible).
            let (status, body) = reg.register(&subject, &new).await;
            let expected_status = if want { 200 } else { 409 };
            if status != expected_status {
                wrong.push(format!("{level} / {} register: {status} {body}", case.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "verdicts differing from Confluent:\n{}",
        wrong.join("\n")
    );
}

/// Three versions where each step is compatible with the previous one but the last is not
/// with the first: the transitive levels refuse it, the plain ones accept it.
#[tokio::test]
async fn transitive_levels_check_every_previous_version() {
    let reg = start().await;
    let x_int = json!({ "name": "x", "type": "int" });
    let x_int_default = json!({ "name": "x", "type": "int", "default": 0 });
    let x_string = json!({ "name": "x", "type": "string" });
    let x_string_default = json!({ "name": "x", "type": "string", "default": "" });
    let id = json!({ "name": "id", "type": "string" });
    let chains: [(&str, [Value; 3]); 3] = [
        // v3 reads v2 (x from its default) but not v1 (int is not a string).
        (
            "BACKWARD",
            [
                json!([id, x_int]),
                json!([id]),
                json!([id, x_string_default]),
            ],
        ),
        // v2 reads v3 (ignores x), v1 reads v2 (default) but not v3.
        (
            "FORWARD",
            [
                json!([id, x_string_default]),
                json!([id]),
                json!([id, x_int]),
            ],
        ),
        (
            "FULL",
            [
                json!([id, x_int_default]),
                json!([id]),
                json!([id, x_string_default]),
            ],
        ),
    ];
    // Keep `x_string` used for readability of the table above.
    let _ = x_string;
    for (level, [v1, v2, v3]) in chains {
        for transitive in [false, true] {
            let level = if transitive {
                format!("{level}_TRANSITIVE")
            } else {
                level.to_owned()
            };
            let subject = unique_subject("chain");
            reg.set_level(&subject, &level).await;
            reg.register_ok(&subject, &record("Chain", v1.clone()))
                .await;
            reg.register_ok(&subject, &record("Chain", v2.clone()))
                .await;
            let (status, body) = reg.register(&subject, &record("Chain", v3.clone())).await;
            let want = if transitive { 409 } else { 200 };
            assert_eq!(status, want, "{level}: {body}");
        }
    }
}

/// Renaming a record: Java Avro (and so Confluent) accepts it when the new record lists the
/// old full name in `aliases`; apache-avro alone would not (corrected in `compat.rs`).
#[tokio::test]
async fn record_rename_with_type_alias() {
    let reg = start().await;
    let fields = json!([{ "name": "id", "type": "string" }]);
    let old = record("Old", fields.clone());
    let renamed = json!({
        "type": "record", "name": "New", "namespace": "com.example.test",
        "aliases": ["com.example.test.Old"], "fields": fields
    })
    .to_string();
    let renamed_without_alias = record("New", fields.clone());
    // The alias also applies to a nested record.
    let outer = |inner: Value| record("Outer", json!([{ "name": "inner", "type": inner }]));

    for (level, new, want) in [
        ("BACKWARD", renamed.clone(), 200),
        ("BACKWARD", renamed_without_alias.clone(), 409),
        // The old reader has no alias for the new name.
        ("FORWARD", renamed.clone(), 409),
        ("FULL", renamed.clone(), 409),
        ("NONE", renamed_without_alias, 200),
    ] {
        let subject = unique_subject("rename");
        reg.set_level(&subject, level).await;
        reg.register_ok(&subject, &old).await;
        let (status, body) = reg.register(&subject, &new).await;
        assert_eq!(status, want, "{level}: {body}");
    }

    let subject = unique_subject("rename-nested");
    reg.register_ok(&subject, &outer(serde_json::from_str(&old).unwrap()))
        .await;
    let (status, body) = reg
        .register(&subject, &outer(serde_json::from_str(&renamed).unwrap()))
        .await;
    assert_eq!(status, 200, "{body}");
}
