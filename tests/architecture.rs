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
    &["sparse"],
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
