//! Replays the seed corpus of every fuzz target (`fuzz/corpus/<target>/`),
//! so whatever the fuzzers found and saved stays fixed in `cargo test`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use switchyard::proxy::fuzzing;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "no corpus in {}", dir.display());
}

#[test]
fn the_config_corpus_loads_or_is_refused_without_a_panic() {
    replay("config", fuzzing::config);
}

#[test]
fn the_request_head_corpus_passes_the_checks_without_a_panic() {
    replay("request_head", fuzzing::request_head);
}

#[test]
fn the_path_corpus_normalises_to_stable_paths() {
    replay("path", fuzzing::path);
}
