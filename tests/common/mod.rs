//! Helpers shared by the integration tests.
#![allow(dead_code)]

use quadflow::io::h5::{self as h5io, Reference};
use quadflow::run::{self, LoadedMesh, RunResult};
use quadflow::scene::Scene;
use std::path::PathBuf;

/// `../shared` beside the checkout (the large meshes of the reference
/// study; absent from a plain clone).
pub fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"))
}

/// The repository's own test data: the small reference meshes
/// (`meshes/`) and the published reference's results on them
/// (`reference/`).
pub fn data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// `kind/name.h5` (`kind` = `meshes` or `reference`) from the repository's
/// test data, else from `../shared`; `None` when neither has it.
fn find(kind: &str, name: &str) -> Option<PathBuf> {
    [data(), shared()]
        .into_iter()
        .map(|d| d.join(kind).join(format!("{name}.h5")))
        .find(|p| p.is_file())
}

/// The mesh file `name` (panics naming both places when it is in neither;
/// tests of the large shared meshes check [`has_mesh`] first).
pub fn mesh_path(name: &str) -> PathBuf {
    find("meshes", name)
        .unwrap_or_else(|| panic!("mesh {name}: in neither tests/data/meshes nor ../shared/meshes"))
}

/// Whether the mesh file `name` is available (in `tests/data` or
/// `../shared`), with or without a reference result.
pub fn mesh_exists(name: &str) -> bool {
    find("meshes", name).is_some()
}

/// Whether the mesh `name` and its reference result are available (the
/// large ones live in `../shared` only).
pub fn has_mesh(name: &str) -> bool {
    find("meshes", name).is_some() && find("reference", name).is_some()
}

/// Names of the meshes with a reference result: the repository's small
/// ones, plus `../shared`'s when it is beside the checkout.
pub fn reference_meshes() -> Vec<String> {
    let mut v: Vec<String> = [data(), shared()]
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join("reference")).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Says on stderr that a test skips and why (and appends it to
/// `$QUADFLOW_SKIP_LOG`, which `tests/run` lists at the end).
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Ok(path) = std::env::var("QUADFLOW_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
}

/// Whether `python3` can import `module`; if not, says the test skips
/// ([`skip`]).
pub fn need_python(test: &str, module: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            test,
            &format!("{module} not installed (pip install {module})"),
        );
    }
    ok
}

/// A mesh of unit-square Quad-8 blocks, each `(nx, ny, x0, y0)` its own
/// connected component (lower-left corner at `(x0, y0)`), the cell-centre
/// nodes unused.
pub fn blocks_mesh(parts: &[(usize, usize, f64, f64)]) -> quadflow::io::RawMesh {
    let (mut x, mut y, mut quad8) = (vec![], vec![], vec![]);
    for &(nx, ny, x0, y0) in parts {
        let base = x.len() as i64;
        let (bx, by, els) = quadflow_systems::mesh::lattice_grid(nx, ny, |u, v| {
            (x0 + nx as f64 * u, y0 + ny as f64 * v)
        });
        x.extend(bx);
        y.extend(by);
        quad8.extend(els.iter().map(|e| e.map(|v| base + i64::from(v))));
    }
    quadflow::io::RawMesh { x, y, quad8 }
}

/// Whether the shared mesh `name` is there; if not, says the test skips.
pub fn require_shared_mesh(test: &str, name: &str) -> bool {
    let ok = has_mesh(name);
    if !ok {
        skip(
            test,
            &format!("needs {name} from ../shared (not in a plain clone)"),
        );
    }
    ok
}

/// A scene on a reference mesh file with `extra` TOML appended.
pub fn scene_for_mesh(name: &str, extra: &str) -> Scene {
    let path = mesh_path(name);
    Scene::parse(
        &format!("[mesh]\nfile = {:?}\n{extra}", path.display().to_string()),
        "<test>",
    )
    .unwrap()
}

/// The reference results file of mesh `name` (panics naming both places
/// when it is in neither).
pub fn reference_path(name: &str) -> PathBuf {
    find("reference", name)
        .unwrap_or_else(|| panic!("reference {name}: in neither tests/data nor ../shared"))
}

/// Loads the reference of a mesh.
pub fn reference(name: &str) -> Reference {
    h5io::read_reference(&reference_path(name)).unwrap()
}

/// Runs a scene on a loaded mesh.
pub fn run_on(scene: &Scene, mesh: &LoadedMesh) -> RunResult {
    run::run_on(&scene.plan().unwrap(), mesh, None).unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// `max |a - b| / max |b|`.
pub fn rel_max(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Flattens a 2-column field.
pub fn flat(v: &[[f64; 2]]) -> Vec<f64> {
    v.iter().flat_map(|r| r.iter().copied()).collect()
}
