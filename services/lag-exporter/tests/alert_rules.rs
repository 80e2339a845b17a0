//! The alert rules of deploy/prometheus fire on the series that should fire them and not on
//! others: `promtool test rules` with the unit tests beside them (promtool is installed by
//! deploy/check_rules.sh, which CI runs first).

use std::path::Path;
use std::process::Command;

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool on PATH (deploy/check_rules.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
