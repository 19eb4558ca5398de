//! The state directory's place: it holds secrets (the generated admin
//! token) and must not be committed. Owns the start-up check that warns when
//! the directory lies inside a git work tree that does not ignore it.
//! Invariant: runs once, at start; reads no file, only walks up the path
//! for `.git` and then asks `git check-ignore`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The root of the git work tree holding `dir` when that tree does not
/// ignore `dir`; `None` outside a work tree, when ignored, or when git
/// cannot say (not installed, not a repository after all).
pub fn unignored_in_work_tree(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    let root = absolute
        .ancestors()
        .skip(1)
        .find(|p| p.join(".git").exists())?
        .to_path_buf();
    // `check-ignore` answers 0 when ignored, 1 when not, 128 on errors.
    let status = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["check-ignore", "-q", "--no-index", "--"])
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    (status.code() == Some(1)).then_some(root)
}

/// Logs a warning when `dir` would be committed with the work tree.
pub fn warn_if_committable(dir: &Path) {
    if let Some(root) = unignored_in_work_tree(dir) {
        tracing::warn!(
            state_dir = %dir.display(),
            work_tree = %root.display(),
            "the state directory (admin token, state file) is inside a git work tree that does not \
             ignore it; add it to .gitignore or pass --state-dir outside the tree"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_in_a_work_tree_is_found_until_ignored() {
        let tree = tempfile::tempdir().expect("temp dir");
        let state = tree.path().join(".switchyard");
        assert_eq!(unignored_in_work_tree(&state), None, "not a work tree yet");
        let init = Command::new("git")
            .args(["init", "-q"])
            .arg(tree.path())
            .status()
            .expect("git runs");
        assert!(init.success());
        let root = unignored_in_work_tree(&state).expect("not ignored");
        assert_eq!(root.canonicalize().ok(), tree.path().canonicalize().ok());
        std::fs::write(tree.path().join(".gitignore"), ".switchyard/\n").expect("write");
        std::fs::create_dir(&state).expect("mkdir");
        assert_eq!(unignored_in_work_tree(&state), None, "ignored");
    }
}
