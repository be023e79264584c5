//! Helpers shared by the integration tests.
#![allow(dead_code)]

use quadflow::io::h5::{self as h5io, Reference};
use quadflow::run::{self, LoadedMesh, RunResult};
use quadflow::scene::Scene;
use std::path::PathBuf;

/// `../shared` beside the checkout.
pub fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"))
}

/// Names of the meshes that have a reference result.
pub fn reference_meshes() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(shared().join("reference"))
        .expect("../shared/reference must exist beside the checkout")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A scene on a shared mesh file with `extra` TOML appended.
pub fn scene_for_mesh(name: &str, extra: &str) -> Scene {
    let path = shared().join("meshes").join(format!("{name}.h5"));
    Scene::parse(
        &format!("[mesh]\nfile = {:?}\n{extra}", path.display().to_string()),
        "<test>",
    )
    .unwrap()
}

/// Loads the reference of a mesh.
pub fn reference(name: &str) -> Reference {
    h5io::read_reference(&shared().join("reference").join(format!("{name}.h5"))).unwrap()
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
