//! The compatibility gate against a throwaway git repository: a breaking change is caught with
//! the field and the rule named, a compatible one passes, and the real schemas/ pass.

use std::path::Path;
use std::process::Command;

use saga_contracts::compat::{self, Direction, Mode};

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=gate-test", "-c", "user.email=gate@test"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

const V1: &str = r#"{"type":"record","name":"Thing","namespace":"com.example.saga.test","doc":"t",
 "fields":[{"name":"id","type":"string","doc":"id"},
           {"name":"note","type":["null","string"],"default":null,"doc":"n"},
           {"name":"kind","doc":"k","type":{"type":"enum","name":"Kind","symbols":["A","B"],"default":"A"}}]}"#;

/// A repo on branch `main` with `schemas/test/Thing.avsc` committed as V1 then `v2`.
fn repo_with_history(v2: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.join("schemas/test")).unwrap();
    std::fs::write(repo.join("schemas/test/Thing.avsc"), V1).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "v1"]);
    if let Some(v2) = v2 {
        std::fs::write(repo.join("schemas/test/Thing.avsc"), v2).unwrap();
        git(repo, &["commit", "-q", "-am", "v2"]);
    }
    dir
}

fn edit(repo: &Path, text: &str) {
    std::fs::write(repo.join("schemas/test/Thing.avsc"), text).unwrap();
}

#[test]
fn adding_a_field_without_default_breaks_backward_and_names_the_field() {
    let dir = repo_with_history(None);
    edit(
        dir.path(),
        &V1.replace(
            r#"{"name":"id","type":"string","doc":"id"},"#,
            r#"{"name":"id","type":"string","doc":"id"},{"name":"priority","type":"int","doc":"p"},"#,
        ),
    );
    let report = compat::run(dir.path(), "main").unwrap();
    assert!(!report.is_ok());
    let v = &report.violations[0];
    assert_eq!(v.path, "schemas/test/Thing.avsc");
    assert_eq!(v.mode, Mode::FullTransitive);
    assert_eq!(v.direction, Direction::Backward);
    assert_eq!(v.field.as_deref(), Some("priority"));
    let text = v.to_string();
    assert!(text.contains("BACKWARD rule of FULL_TRANSITIVE"), "{text}");
    assert!(
        text.contains("field `priority`") && text.contains("without a default"),
        "{text}"
    );
}

#[test]
fn removing_a_field_without_default_breaks_forward() {
    let dir = repo_with_history(None);
    edit(
        dir.path(),
        &V1.replace(r#"{"name":"id","type":"string","doc":"id"},"#, ""),
    );
    let report = compat::run(dir.path(), "main").unwrap();
    let forward: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.direction == Direction::Forward)
        .collect();
    assert_eq!(forward.len(), 1, "{:#?}", report.violations);
    assert_eq!(forward[0].field.as_deref(), Some("id"));
    // Removing a field is fine for a new reader.
    assert!(
        report
            .violations
            .iter()
            .all(|v| v.direction == Direction::Forward)
    );
}

#[test]
fn changing_a_field_type_is_caught() {
    let dir = repo_with_history(None);
    edit(
        dir.path(),
        &V1.replace(
            r#""name":"id","type":"string""#,
            r#""name":"id","type":"long""#,
        ),
    );
    let report = compat::run(dir.path(), "main").unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.field.as_deref() == Some("id") && v.rule.contains("type changed")),
        "{:#?}",
        report.violations
    );
}

#[test]
fn compatible_changes_pass() {
    let dir = repo_with_history(None);
    // A new optional field with a default, and a new enum symbol (the enum has a default).
    edit(
        dir.path(),
        &V1.replace(
            r#"{"name":"id","type":"string","doc":"id"},"#,
            r#"{"name":"id","type":"string","doc":"id"},{"name":"tag","type":"string","default":"","doc":"t"},"#,
        )
        .replace(r#"["A","B"]"#, r#"["A","B","C"]"#),
    );
    let report = compat::run(dir.path(), "main").unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(
        report.checked,
        vec![(
            "schemas/test/Thing.avsc".to_owned(),
            Mode::FullTransitive,
            1
        )]
    );
}

#[test]
fn transitive_mode_checks_every_earlier_version_not_just_the_last() {
    // v2 removed `note` (it had a default: fine); the working tree re-adds `note` as a
    // required string. Against v2 alone that is "a new field without default" as well, but
    // against v1 it is a type change of an existing field; both versions must be checked.
    let v2 = V1.replace(
        r#"{"name":"note","type":["null","string"],"default":null,"doc":"n"},"#,
        "",
    );
    let dir = repo_with_history(Some(&v2));
    edit(
        dir.path(),
        &V1.replace(
            r#""type":["null","string"],"default":null"#,
            r#""type":"string""#,
        ),
    );
    let report = compat::run(dir.path(), "main").unwrap();
    let earlier: std::collections::BTreeSet<_> = report
        .violations
        .iter()
        .map(|v| v.earlier.clone())
        .collect();
    assert_eq!(earlier.len(), 2, "{:#?}", report.violations);
    assert_eq!(report.checked[0].2, 2);
}

#[test]
fn mode_none_in_compatibility_toml_allows_anything() {
    let dir = repo_with_history(None);
    std::fs::write(
        dir.path().join("schemas/compatibility.toml"),
        "default = \"FULL_TRANSITIVE\"\n[records]\n\"com.example.saga.test.Thing\" = \"NONE\"\n",
    )
    .unwrap();
    edit(
        dir.path(),
        &V1.replace(
            r#""name":"id","type":"string""#,
            r#""name":"id","type":"long""#,
        ),
    );
    assert!(compat::run(dir.path(), "main").unwrap().is_ok());
}

#[test]
fn backward_only_mode_ignores_forward_breaks() {
    let dir = repo_with_history(None);
    std::fs::write(
        dir.path().join("schemas/compatibility.toml"),
        "default = \"BACKWARD\"\n",
    )
    .unwrap();
    edit(
        dir.path(),
        &V1.replace(r#"{"name":"id","type":"string","doc":"id"},"#, ""),
    );
    assert!(compat::run(dir.path(), "main").unwrap().is_ok());
}

#[test]
fn the_repository_schemas_pass_the_gate() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = compat::run(&repo, "HEAD").unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(
        report.checked.len(),
        saga_contracts::all_message_types().count()
    );
}

#[test]
fn the_checked_in_compatibility_toml_parses_with_full_transitive() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/compatibility.toml"),
    )
    .unwrap();
    let config = compat::CompatConfig::parse(&text).unwrap();
    assert_eq!(
        config.mode_for("com.example.saga.order.OrderPlaced", Some("order.events")),
        Mode::FullTransitive
    );
    assert_eq!(
        config.mode_for(
            "com.example.saga.inventory.ReserveStock",
            Some("inventory.commands")
        ),
        Mode::FullTransitive
    );
}
