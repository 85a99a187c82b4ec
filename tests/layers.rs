//! The module layers of docs/DESIGN.md, checked on the source: a module
//! imports only modules of lower layers (never its own layer's others, nor
//! anything above it), and no two sibling modules import each other. A new
//! `use crate::...` that breaks the picture fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may import any module
/// of a lower layer.
const LAYERS: &[&[&str]] = &[
    &["clock", "random", "tls"],
    &["events", "files"],
    &["domain"],
    &["keys"],
    &["tokens", "state", "ssf", "passwords", "metrics"],
    &["store", "bus"],
    &["sync"],
    &["error", "config"],
    &["service"],
    &["http", "startup"],
    &["server", "sidecar"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's module path under `src/` (`service/push.rs` -> [service, push]).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its unit tests (they may import freely).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read source");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The identifiers that follow `prefix` in `text` (`crate::` -> `store`, ...).
fn names_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        // Not the tail of a longer path (`recall_verifier::crate::`).
        .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn every_module_imports_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let path = module_path(&src, file);
        let Some(top) = path.first() else { continue };
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer_of(top).unwrap_or_else(|| panic!("{top} is in no layer of LAYERS"));
        let text = code(file);
        for used in names_after(&text, "crate::")
            .into_iter()
            .collect::<BTreeSet<_>>()
        {
            if used == top.as_str() {
                continue;
            }
            match layer_of(used) {
                Some(l) if l < own => {}
                _ => broken.push(format!("{}: imports crate::{used}", file.display())),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_two_sibling_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // module path -> the sibling modules it names through `super::` or
    // its own parent's `crate::` path.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    for file in &files {
        let path = module_path(&src, file);
        if path.len() < 2 {
            continue;
        }
        let parent = &path[..path.len() - 1];
        let text = code(file);
        let parent_prefix = format!("crate::{}::", parent.join("::"));
        for name in names_after(&text, "super::")
            .into_iter()
            .chain(names_after(&text, &parent_prefix))
        {
            let mut sibling = parent.to_vec();
            sibling.push(name.to_owned());
            if sibling != path && known.contains(&sibling) {
                edges.entry(path.clone()).or_default().insert(sibling);
            }
        }
    }
    let mut circles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if from < to && edges.get(to).is_some_and(|back| back.contains(from)) {
                circles.push(format!("{} <-> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_layer_list_names_every_top_level_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(layer_of(name).is_some(), "{name} is in no layer");
        }
    }
}
