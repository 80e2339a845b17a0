//! `cargo xtask`: the local stack tool (filled in by the stack work).
fn main() {
    println!("xtask: not yet implemented");
}
