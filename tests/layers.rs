//! The layering rule of `src/lib.rs`, checked on the source: imports flow one
//! way, `http -> broker -> topic -> {config, log, plugin} -> {message,
//! duration}`, and the HTTP layer never reaches the log or a plugin, nor runs
//! blocking work itself.

use std::path::{Path, PathBuf};

/// Each module's tier: a module may use modules of lower tiers only (and,
/// within tier 2, config may use the constants and types of log and plugin).
fn tier(module: &str) -> Option<u8> {
    Some(match module {
        "http" => 5,
        "broker" => 4,
        "topic" => 3,
        "config" | "log" | "plugin" => 2,
        "message" | "duration" | "histogram" => 1,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top module a file of `src/` belongs to (`src/topic/writer.rs` ->
/// `topic`, `src/config.rs` -> `config`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a file names, outside comments.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            refs.push(name);
        }
        // `use crate::{a, b}` groups.
        if let Some(i) = code.find("crate::{") {
            let group = &code[i + "crate::{".len()..];
            for part in group.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.push(name);
                }
            }
        }
    }
    refs
}

/// No module imports one of a higher tier, nor one of its own tier except
/// config using log and plugin.
#[test]
fn imports_flow_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        let Some(from_tier) = tier(&from) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for to in crate_refs(&text) {
            let Some(to_tier) = tier(&to) else { continue };
            let sideways_ok = from == "config" && (to == "log" || to == "plugin");
            if to != from && (to_tier > from_tier || (to_tier == from_tier && !sideways_ok)) {
                wrong.push(format!("{} uses crate::{to}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// The HTTP layer talks to the broker and to `Topic` only: no `log::`, no
/// `plugin::`, no `Topic::log()`, and no blocking work of its own.
#[test]
fn http_reaches_neither_log_nor_plugins() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for banned in ["log::", "plugin::", ".log()", "spawn_blocking"] {
                let hit = code.match_indices(banned).any(|(i, _)| {
                    // `tracing::` and the like end in `log::` only by accident.
                    !(banned == "log::"
                        && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
                });
                if hit {
                    wrong.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the HTTP layer reaches below Topic:\n{}",
        wrong.join("\n")
    );
}
