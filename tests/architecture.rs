//! The structure the README's "Architecture" section describes, checked:
//! every `crate::` import of the engine (`systems/src`) and the application
//! (`src`) goes to a module of the same or a lower layer (so there is no
//! import circle between modules and no import back up a layer), and no
//! source file is over 1,000 lines. Test code (after `#[cfg(test)]`) may
//! reach anywhere. A new top-level module must be placed in a layer below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The engine's top-level modules, bottom layer first.
const ENGINE: &[&[&str]] = &[
    &["exec", "element"],
    &["mesh"],
    &["topology", "sparse"],
    &["ordering"],
    &["boundary"],
    &["solver"],
    &["amg", "cholesky"],
    &["components"],
    &["pipeline"],
    &["config"],
    &["common"],
    &["serial", "parallel", "gpu"],
    &["backends"],
];

/// The application's top-level modules, bottom layer first.
const APP: &[&[&str]] = &[
    &["io"],
    &["generate", "viz"],
    &["backends"],
    &["scene"],
    &["error"],
    &["run", "trace"],
    &["bench"],
    &["serve"],
    &["cli"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src_dir` belongs to (`None` for
/// `lib.rs` and `main.rs`).
fn module_of(src_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// `crate::NAME` references in the non-test code of `text` (comments
/// skipped), with their line numbers.
fn crate_imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(k) = rest.find("crate::") {
            let after = &rest[k + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
            rest = after;
        }
    }
    out
}

fn check(crate_name: &str, src_dir: &Path, layers: &[&[&str]]) -> Vec<String> {
    let layer: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, ms)| ms.iter().map(move |m| (*m, l)))
        .collect();
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        let shown = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        if lines > 1000 {
            problems.push(format!("{shown}: {lines} lines (at most 1,000)"));
        }
        let Some(m) = module_of(src_dir, f) else {
            continue;
        };
        let Some(&from) = layer.get(m.as_str()) else {
            problems.push(format!(
                "{shown}: module `{m}` of {crate_name} is in no layer of tests/architecture.rs"
            ));
            continue;
        };
        for (line, target) in crate_imports(&text) {
            if target == m {
                continue;
            }
            match layer.get(target.as_str()) {
                Some(&to) if to > from || (to == from && target != m) => problems.push(format!(
                    "{shown}:{line}: `{m}` imports `crate::{target}`, {}",
                    if to > from {
                        "a higher layer"
                    } else {
                        "a module of its own layer (put one below the other)"
                    }
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "{shown}:{line}: `crate::{target}` is in no layer of tests/architecture.rs"
                )),
            }
        }
    }
    problems
}

/// Import circles between the files of one folder module (`gpu/cg.rs`
/// -> `gpu/device.rs` -> `gpu/cg.rs`): edges from `super::NAME` and
/// `crate::FOLDER::NAME` imports between sibling files (the folder's
/// `mod.rs`, which declares and re-exports them, is left out).
fn sibling_cycles(src_dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    let mut by_dir: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        by_dir
            .entry(f.parent().unwrap().to_path_buf())
            .or_default()
            .push(f);
    }
    let mut problems = Vec::new();
    for (dir, fs) in by_dir {
        if dir == src_dir {
            continue;
        }
        let folder = dir.file_name().unwrap().to_string_lossy().to_string();
        let names: Vec<String> = fs
            .iter()
            .map(|f| f.file_stem().unwrap().to_string_lossy().to_string())
            .filter(|n| n != "mod")
            .collect();
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &fs {
            let me = f.file_stem().unwrap().to_string_lossy().to_string();
            if me == "mod" {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            let mut targets = Vec::new();
            for line in text.lines() {
                let t = line.trim_start();
                if t.starts_with("#[cfg(test)]") {
                    break;
                }
                if t.starts_with("//") {
                    continue;
                }
                let code = line.split("//").next().unwrap_or("");
                for prefix in ["super::".to_string(), format!("crate::{folder}::")] {
                    let mut rest = code;
                    while let Some(k) = rest.find(prefix.as_str()) {
                        let after = &rest[k + prefix.len()..];
                        let name: String = after
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if names.contains(&name) && name != me {
                            targets.push(name);
                        }
                        rest = after;
                    }
                }
                // `use super::{a, b::C}` lists
                if let Some(k) = code.find("super::{") {
                    for part in code[k + 8..].split(['}', ',']) {
                        let name: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if names.contains(&name) && name != me {
                            targets.push(name);
                        }
                    }
                }
            }
            targets.sort();
            targets.dedup();
            edges.insert(me, targets);
        }
        // depth-first search for a cycle
        fn visit(
            n: &str,
            edges: &BTreeMap<String, Vec<String>>,
            state: &mut BTreeMap<String, u8>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match state.get(n).copied().unwrap_or(0) {
                1 => {
                    let i = path.iter().position(|p| p == n).unwrap();
                    let mut c = path[i..].to_vec();
                    c.push(n.to_string());
                    return Some(c);
                }
                2 => return None,
                _ => {}
            }
            state.insert(n.to_string(), 1);
            path.push(n.to_string());
            for m in edges.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, edges, state, path) {
                    return Some(c);
                }
            }
            path.pop();
            state.insert(n.to_string(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for n in edges.keys() {
            if let Some(c) = visit(n, &edges, &mut state, &mut Vec::new()) {
                problems.push(format!(
                    "{}: import circle {}",
                    dir.strip_prefix(root()).unwrap_or(&dir).display(),
                    c.join(" -> ")
                ));
                break;
            }
        }
    }
    problems
}

#[test]
fn no_import_circle_between_the_files_of_a_folder() {
    let mut p = sibling_cycles(&root().join("systems/src"));
    p.extend(sibling_cycles(&root().join("src")));
    assert!(p.is_empty(), "{}", p.join("\n"));
}

#[test]
fn engine_imports_only_run_down_its_layers() {
    let p = check("quadflow-systems", &root().join("systems/src"), ENGINE);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

#[test]
fn application_imports_only_run_down_its_layers() {
    let p = check("quadflow", &root().join("src"), APP);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

#[test]
fn the_checker_sees_an_import_back_up() {
    let text = "use crate::pipeline::Backend;\n// crate::cli in a comment\n#[cfg(test)]\nuse crate::cli;\n";
    assert_eq!(crate_imports(text), vec![(1, "pipeline".to_string())]);
}
