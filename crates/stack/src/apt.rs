//! Debian packages the stack installs when a machine lacks them: as root, or through
//! password-less `sudo`, so a new machine with only the Rust toolchain can run everything.

use std::process::Command;

use nix::unistd::Uid;

use crate::error::StackError;

/// `apt-get update` then `apt-get install -y <packages>`; `component` names who asked, in
/// errors.
pub fn install(component: &str, packages: &[&str]) -> Result<(), StackError> {
    let sudo: &[&str] = if Uid::effective().is_root() {
        &[]
    } else {
        &["sudo", "-n"]
    };
    let run = |args: &[&str]| -> Result<(), StackError> {
        let all: Vec<&str> = sudo.iter().chain(args).copied().collect();
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(StackError::io(format!("run {}", all.join(" "))))?;
        if status.success() {
            Ok(())
        } else {
            Err(StackError::setup(
                component,
                format!("`{}` failed ({status})", all.join(" ")),
            ))
        }
    };
    run(&["apt-get", "update"])?;
    let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    run(&install)
}

/// Whether `program` is found on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
