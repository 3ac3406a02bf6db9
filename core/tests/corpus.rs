//! Every input the fuzz campaign kept (`fuzz/corpus/<target>/`, AFL++'s queue after the run
//! the closing note reports) through the same target bodies (`mcpgw_core::fuzzing`): what a
//! campaign once reached is checked on every run after, without the fuzzer.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 100,
        "{target}: only {} inputs in {}",
        files.len(),
        dir.display()
    );
    files.iter().map(|f| std::fs::read(f).expect("input")).collect()
}

#[test]
fn the_jsonrpc_corpus_passes() {
    corpus("jsonrpc").iter().for_each(|d| mcpgw_core::fuzzing::jsonrpc(d));
}

#[test]
fn the_sse_corpus_passes() {
    corpus("sse").iter().for_each(|d| mcpgw_core::fuzzing::sse(d));
}

#[test]
fn the_jwt_corpus_passes() {
    corpus("jwt").iter().for_each(|d| mcpgw_core::fuzzing::jwt(d));
}

#[test]
fn the_http_corpus_passes() {
    let gw = mcpgw_core::fuzzing::http_gateway();
    corpus("http").iter().for_each(|d| mcpgw_core::fuzzing::http(&gw, d));
}

#[test]
fn the_url_corpus_passes() {
    corpus("url").iter().for_each(|d| mcpgw_core::fuzzing::url(d));
}

#[test]
fn the_names_corpus_passes() {
    corpus("names").iter().for_each(|d| mcpgw_core::fuzzing::names(d));
}

#[test]
fn the_cookie_corpus_passes() {
    corpus("cookie").iter().for_each(|d| mcpgw_core::fuzzing::cookie(d));
}
