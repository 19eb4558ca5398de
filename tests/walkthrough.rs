//! The README's migration walkthrough, run as `scripts/walkthrough.sh` against
//! this build's `switchyard demo` on free ports: round robin, /api/users on
//! the new service, splits 90/10, 50/50 and 0/100, DRAIN, MAINT and READY.
//! The script stops the demo itself, on failure too.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn readme_walkthrough_script_passes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/walkthrough.sh"))
        .current_dir(root)
        .env("SWITCHYARD", env!("CARGO_BIN_EXE_switchyard"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "ok: round robin",
        "ok: /api/users answered by users",
        "9 times by the monolith, 1 times by users",
        "5 times by the monolith, 5 times by users",
        "0 times by the monolith, 10 times by users",
        "ok: drained",
        "ok: in MAINT",
        "ok: round robin again",
        "walkthrough: all steps passed",
    ] {
        assert!(stdout.contains(step), "missing {step:?}:\n{stdout}");
    }
}
