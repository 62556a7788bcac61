//! The layering rule of `src/lib.rs`, checked on the source: imports flow one
//! way, `http -> broker -> {topic, token} -> config -> {log, plugin} ->
//! {durable, rate_limit} -> {message, duration, histogram, lock, fault}`;
//! the HTTP layer never reaches the log or a plugin, nor runs blocking work
//! itself; no two sibling modules use each other, directly or around a
//! cycle, re-exports of a parent included; and every route pattern is
//! written once.

use std::path::{Path, PathBuf};

/// Each module's tier: a module may use modules of lower tiers only. The
/// same table as the diagram in `src/lib.rs`.
fn tier(module: &str) -> Option<u8> {
    Some(match module {
        "http" => 7,
        "broker" => 6,
        "group" => 5,
        "topic" | "token" => 4,
        "config" => 3,
        "log" | "plugin" => 2,
        "durable" | "rate_limit" | "record" => 1,
        "message" | "duration" | "histogram" | "lock" | "fault" | "encode" | "bounded"
        | "idle_spin" => 0,
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

/// No module imports one of a higher tier, nor one of its own tier.
#[test]
fn imports_flow_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_tier) = tier(&from) else {
            wrong.push(format!("{}: module {from} has no tier", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for to in crate_refs(&text) {
            let Some(to_tier) = tier(&to) else { continue };
            if to != from && to_tier >= from_tier {
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

/// Every blocking job goes through `idle_spin::spawn_blocking`, which
/// counts it, so that no worker spins while a blocking thread wants a CPU.
#[test]
fn blocking_jobs_are_counted() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let wrong: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("idle_spin.rs"))
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| {
                    l.split("//")
                        .next()
                        .unwrap_or("")
                        .contains("task::spawn_blocking")
                })
                .map(|(n, l)| format!("{}:{}: {}", file.display(), n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "blocking jobs idle_spin does not count:\n{}",
        wrong.join("\n")
    );
}

/// A file's module path: `src/http/front.rs` -> `["http", "front"]`,
/// `src/http/mod.rs` -> `["http"]`, `src/lib.rs` -> `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The paths a file names, as module paths from the crate root: every
/// `crate::a::b`, `super::a` and `self::a`, with `use` groups
/// (`super::{a, b::c}`) expanded one level. Comments are skipped.
fn named_paths(here: &[String], is_dir_module: bool, text: &str) -> Vec<Vec<String>> {
    // `super` of `src/http/front.rs` is `http`; of `src/http/mod.rs`, the crate.
    let parent: Vec<String> = if is_dir_module || here.is_empty() {
        here[..here.len().saturating_sub(1)].to_vec()
    } else {
        here[..here.len() - 1].to_vec()
    };
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (root, base) in [
        ("crate::", Vec::new()),
        ("super::", parent.clone()),
        ("self::", here.to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(root) {
            // `foo_crate::` or `xsuper::` are other names.
            let before = &rest[..i];
            rest = &rest[i + root.len()..];
            if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = rest;
            loop {
                if let Some(group) = tail.strip_prefix('{') {
                    // One level of a `use` group: each part's first name.
                    let end = group.find('}').unwrap_or(group.len());
                    for part in group[..end].split(',') {
                        let name = ident(part.trim());
                        if !name.is_empty() && name != "self" {
                            let mut p = path.clone();
                            p.push(name);
                            out.push(p);
                        }
                    }
                    break;
                }
                let name = ident(tail);
                if name.is_empty() {
                    break;
                }
                tail = &tail[name.len()..];
                path.push(name);
                match tail.strip_prefix("::") {
                    Some(t) => tail = t,
                    None => break,
                }
            }
            out.push(path);
        }
    }
    out
}

/// No two sibling modules use each other, directly or around a cycle: a
/// file's uses of a sibling (or of anything inside it) are edges between
/// the siblings, at every level of `src/`, and the graph of each level
/// has no cycle.
#[test]
fn no_sibling_imports_each_other() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    // What a parent's `use child::Item` makes visible as `parent::Item`:
    // naming it reaches the child, so it is resolved to the child.
    let mut reexports: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for file in &files {
        let parent = module_path(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = ["pub use ", "pub(crate) use ", "use "]
                .iter()
                .find_map(|p| line.strip_prefix(p))
            else {
                continue;
            };
            let rest = rest.trim_end_matches(';');
            let Some((child, items)) = rest.split_once("::") else {
                continue;
            };
            let mut child_path = parent.clone();
            child_path.push(child.to_string());
            if !modules.contains(&child_path) {
                continue;
            }
            for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
                let item = item.trim();
                let name = item
                    .rsplit_once(" as ")
                    .map_or_else(|| item.rsplit("::").next().unwrap_or(item), |(_, a)| a)
                    .trim();
                if !name.is_empty() && name != "self" && name != "*" {
                    let mut key = parent.clone();
                    key.push(name.to_string());
                    reexports.insert(key, child.to_string());
                }
            }
        }
    }
    // Edges by level: parent module path -> (from child, to child) -> a file.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<(String, String), String>> = BTreeMap::new();
    for file in &files {
        let here = module_path(&src, file);
        let is_dir_module = file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        let text = std::fs::read_to_string(file).unwrap();
        for path in named_paths(&here, is_dir_module, &text) {
            let common = here.iter().zip(&path).take_while(|(a, b)| a == b).count();
            if common >= here.len() || common >= path.len() {
                continue; // A use of an ancestor or a descendant.
            }
            let target: Vec<String> = path[..=common].to_vec();
            let to = if modules.contains(&target) {
                path[common].clone()
            } else if let Some(child) = reexports.get(&target) {
                child.clone() // The parent's re-export of a child's item.
            } else {
                continue; // An item of the common parent itself.
            };
            if to == here[common] {
                continue;
            }
            edges.entry(here[..common].to_vec()).or_default().insert(
                (here[common].clone(), to),
                file.strip_prefix(&src).unwrap().display().to_string(),
            );
        }
    }
    let mut cycles = Vec::new();
    for (level, level_edges) in &edges {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in level_edges.keys() {
            next.entry(from).or_default().push(to);
        }
        // Each node that reaches itself is on a cycle; name one.
        for start in next.keys() {
            let mut stack = vec![(*start, vec![*start])];
            let mut seen = BTreeSet::new();
            while let Some((node, trail)) = stack.pop() {
                for &to in next.get(node).map(Vec::as_slice).unwrap_or(&[]) {
                    if to == *start {
                        let mut shown: Vec<String> = trail
                            .windows(2)
                            .map(|w| {
                                format!(
                                    "{} ({})",
                                    w[0],
                                    level_edges[&(w[0].to_string(), w[1].to_string())]
                                )
                            })
                            .collect();
                        shown.push(format!(
                            "{} ({})",
                            node,
                            level_edges[&(node.to_string(), to.to_string())]
                        ));
                        cycles.push(format!("in {:?}: {} -> {start}", level, shown.join(" -> ")));
                    } else if seen.insert(to) {
                        let mut t = trail.clone();
                        t.push(to);
                        stack.push((to, t));
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(
        cycles.is_empty(),
        "sibling modules that use each other (each shown with the file that makes the step):\n{}",
        cycles.join("\n")
    );
}

/// Every route pattern is written once in `src/`: in the route table, from
/// which routers, rights, metrics and the front's classification are built.
/// Unit tests (a file's `#[cfg(test)] mod tests`, last by convention) send
/// paths, which may look like patterns, and are not read.
#[test]
fn route_patterns_are_written_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = netlog::route_table()
        .into_iter()
        .map(|(pattern, _, _)| (format!("\"{pattern}\""), Vec::new()))
        .collect();
    assert!(seen.len() >= 18, "the table has every route: {seen:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines().enumerate().peekable();
        while let Some((n, line)) = lines.next() {
            if line.trim() == "#[cfg(test)]"
                && lines.peek().is_some_and(|(_, l)| l.trim() == "mod tests {")
            {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            for (literal, places) in seen.iter_mut() {
                for _ in code.matches(literal.as_str()) {
                    places.push(format!("{}:{}", file.display(), n + 1));
                }
            }
        }
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, places)| places.len() != 1)
        .map(|(literal, places)| format!("{literal}: {places:?}"))
        .collect();
    assert!(
        twice.is_empty(),
        "route patterns written other than once in src/:\n{}",
        twice.join("\n")
    );
}

/// A module re-exports only what its own files define: no `pub use
/// crate::...` outside `lib.rs`, so a layer cannot hand a lower layer's
/// types up past the layering (as `topic` once did with the log's errors).
#[test]
fn modules_reexport_only_their_own_items() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        if file.ends_with("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            let public = ["pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| line.strip_prefix(p));
            if public.is_some_and(|rest| rest.starts_with("crate::")) {
                wrong.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "re-exports of other modules' items:\n{}",
        wrong.join("\n")
    );
}
