//! The controller's layers, checked on its source: each module may name only modules of its own
//! layer or of one below it, the web framework is named only by the front ends, and the database
//! library only by the modules that are allowed to query (see the README's layout table).
//!
//! ```text
//! front     api/ sshd server main          what users and programs talk to; wiring
//! domain    hosts vps duplo netmon …       what the product does, in its own words
//! engines   ops storage sched tasks audit  durable operations, chunk store, loops, records,
//!           pair                           and who leads the controller pair
//! base      db repo schema models error …  persistence and plumbing
//! ```
//!
//! What does not hold yet is listed in `KNOWN` with the reason; each entry must still be true
//! (the test fails when one is fixed, so the list only shrinks) and nothing new may join it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, &[&str])] = &[
    ("front", &["api", "sshd", "server", "main", "core"]),
    (
        "domain",
        &[
            "hosts",
            "vps",
            "duplo",
            "netmon",
            "templates",
            "auth",
            "site",
            "takeover",
            "controllers",
            "settings",
            "metrics",
            "provision",
            "alerts",
            "backup",
        ],
    ),
    (
        "engines",
        &["ops", "storage", "sched", "tasks", "audit", "pair"],
    ),
    (
        "base",
        &[
            "db", "repo", "schema", "models", "error", "fault", "hub", "ssh", "keys", "files",
            "stall", "config", "lib",
        ],
    ),
];

/// Crates of the web framework: named only by the front ends that serve HTTP.
const WEB_CRATES: &[&str] = &[
    "actix_web",
    "actix_ws",
    "actix_files",
    "actix_http",
    "actix_rt",
    "utoipa_actix_web",
];
const WEB_ALLOWED: &[&str] = &["api", "server", "main"];

/// Upward imports that are still there, each with why. `(from, to)` are top-level modules.
const KNOWN: &[(&str, &str, &str)] = &[];

/// Files that build queries outside the persistence layer (relative to `src/`): none. The
/// persistence layer (`db`, `repo`, `schema`, `models`) may, and `error` turns the database's
/// errors into the domain's; nothing may join this list.
const DIESEL_KNOWN: &[&str] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file that ships: comments and the unit tests at its end left out.
fn shipped_code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`hosts/admin.rs` → `hosts`).
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The crate-level names a file uses: `crate::NAME`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + krate.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

struct Found {
    upward: BTreeMap<(String, String), Vec<String>>,
    web: Vec<String>,
    diesel: BTreeSet<String>,
    unplaced: BTreeSet<String>,
}

fn scan() -> Found {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut found = Found {
        upward: BTreeMap::new(),
        web: Vec::new(),
        diesel: BTreeSet::new(),
        unplaced: BTreeSet::new(),
    };
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_path_buf();
        let shown = rel.to_string_lossy().to_string();
        let module = module_of(&rel);
        let code = shipped_code(&std::fs::read_to_string(&f).unwrap());
        let Some(own) = layer_of(&module) else {
            found.unplaced.insert(module);
            continue;
        };
        for used in crate_paths(&code) {
            // Macros exported at the crate's root come from the database layer.
            let used = if used == "with_backend" {
                "db".to_string()
            } else {
                used
            };
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {
                    found
                        .upward
                        .entry((module.clone(), used))
                        .or_default()
                        .push(shown.clone());
                }
                Some(_) => {}
                None => {
                    found.unplaced.insert(used);
                }
            }
        }
        if !WEB_ALLOWED.contains(&module.as_str()) {
            for krate in WEB_CRATES {
                if names_crate(&code, krate) {
                    found.web.push(format!("{shown} names {krate}"));
                }
            }
        }
        // A query names diesel, a table (`x::table`) or the schema, also through a glob import.
        let queries =
            names_crate(&code, "diesel") || code.contains("::table") || code.contains("schema::");
        if queries && !["db", "repo", "schema", "models", "error"].contains(&module.as_str()) {
            found.diesel.insert(shown);
        }
    }
    found
}

#[test]
fn every_module_has_a_layer() {
    let found = scan();
    assert!(
        found.unplaced.is_empty(),
        "modules without a layer (add them to LAYERS here and to the README's table): {:?}",
        found.unplaced
    );
}

#[test]
fn the_web_framework_is_named_only_by_the_front_ends() {
    let found = scan();
    assert!(
        found.web.is_empty(),
        "below api/ nothing names the web framework (return a crate::error::Error; api/ maps it):\n{}",
        found.web.join("\n")
    );
}

#[test]
fn modules_import_only_their_layer_or_below() {
    let found = scan();
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<String> = found
        .upward
        .iter()
        .filter(|(k, _)| !known.contains(k))
        .map(|((a, b), files)| {
            format!("{a} imports {b}, a layer above it, in {}", files.join(", "))
        })
        .collect();
    assert!(new.is_empty(), "imports that point up:\n{}", new.join("\n"));
    let fixed: Vec<&(String, String)> = known
        .iter()
        .filter(|k| !found.upward.contains_key(*k))
        .collect();
    assert!(
        fixed.is_empty(),
        "fixed, so take them out of KNOWN in tests/layers.rs: {fixed:?}"
    );
}

#[test]
fn only_the_known_files_build_queries_outside_the_persistence_layer() {
    let found = scan();
    let known: BTreeSet<String> = DIESEL_KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<&String> = found.diesel.difference(&known).collect();
    assert!(
        new.is_empty(),
        "these files name diesel; queries belong in the persistence layer: {new:?}"
    );
    let fixed: Vec<&String> = known.difference(&found.diesel).collect();
    assert!(
        fixed.is_empty(),
        "no longer name diesel, so take them out of DIESEL_KNOWN: {fixed:?}"
    );
}

/// Functions (not tests) longer than [`MAX_FN_LINES`] that are still there, to be split: the
/// crate's source folder and the function's name. Nothing new may join this list.
const LONG_KNOWN: &[(&str, &str)] = &[];

const MAX_FN_LINES: usize = 150;

/// Source files that are unit tests as a whole (declared `#[cfg(test)] mod …`).
const TEST_FILES: &[&str] = &[
    "backend/src/netmon/sim.rs",
    "backend/src/netmon/scenarios.rs",
];

/// Every function of the workspace's crates longer than [`MAX_FN_LINES`] (rustfmt's layout: a
/// function ends at the first line that is its indentation and `}`), tests left out.
fn long_functions() -> BTreeSet<(String, String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeSet::new();
    for krate in [
        "backend",
        "cli",
        "agent",
        "shared",
        "frontend",
        "testhosts",
        "bench",
    ] {
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        for f in files {
            let shown = format!(
                "{krate}/{}",
                f.strip_prefix(root.join(krate)).unwrap().display()
            );
            if TEST_FILES.contains(&shown.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let end = lines
                .windows(2)
                .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod "))
                .unwrap_or(lines.len());
            for i in 0..end {
                let l = lines[i];
                let t = l.trim_start();
                let Some(pos) = t.find("fn ") else { continue };
                let head = &t[..pos];
                let qualifiers = head
                    .split_whitespace()
                    .all(|w| w.starts_with("pub") || ["async", "const", "unsafe"].contains(&w));
                if !qualifiers || l.trim_end().ends_with('}') || l.trim_end().ends_with(';') {
                    continue;
                }
                let name: String = t[pos + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let indent = &l[..l.len() - t.len()];
                let close = format!("{indent}}}");
                let len = lines[i..end]
                    .iter()
                    .position(|x| *x == close)
                    .map_or(0, |n| n + 1);
                if len > MAX_FN_LINES {
                    out.insert((shown.clone(), name, len));
                }
            }
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_150_lines() {
    let found = long_functions();
    let known: BTreeSet<(&str, &str)> = LONG_KNOWN.iter().copied().collect();
    let new: Vec<String> = found
        .iter()
        .filter(|(f, n, _)| !known.contains(&(f.as_str(), n.as_str())))
        .map(|(f, n, len)| format!("{f}: {n} has {len} lines"))
        .collect();
    assert!(
        new.is_empty(),
        "functions longer than {MAX_FN_LINES} lines (split them by what they do):\n{}",
        new.join("\n")
    );
    let fixed: Vec<&(&str, &str)> = known
        .iter()
        .filter(|(f, n)| !found.iter().any(|(ff, nn, _)| ff == f && nn == n))
        .collect();
    assert!(
        fixed.is_empty(),
        "no longer too long, so take them out of LONG_KNOWN: {fixed:?}"
    );
}
