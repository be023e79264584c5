//! `quadflow._native`: the Python bindings of quadflow (re-exported by the
//! `quadflow` package). Arrays in, arrays out, the same engine and the same
//! messages as the command line; the GIL is released while the engine
//! runs, and Ctrl-C stops a solve.

mod arrays;
mod error;
mod interrupt;
mod result;
mod scene;

use arrays::{Connectivity, connectivity, coordinates};
use error::{QuadflowError, quadflow_error, to_py};
use interrupt::run_detached;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use quadflow::generate::Geometry;
use quadflow::io::RawMesh;
use quadflow::io::gmsh::MshVersion;
use quadflow::io::h5::MeshLayout;
use quadflow::run::{self, LoadedMesh};
use quadflow::scene::Plan;
use quadflow::systems::components::ProgressHook;
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use result::{SolveResult, rows_array};
use scene::{Overrides, scene_of, with_mesh_file};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// What the scene's `[mesh]` holds when the mesh is given as arrays.
const ARRAYS: &str = "<arrays>";

/// The mesh argument of `solve`.
enum MeshArg<'py> {
    /// The scene's own mesh.
    Scene,
    /// A mesh file.
    File(PathBuf),
    /// `(x, y, quad8)`.
    Arrays(Vec<f64>, Vec<f64>, Connectivity<'py>),
}

fn mesh_arg<'py>(mesh: Option<&Bound<'py, PyAny>>) -> PyResult<MeshArg<'py>> {
    let Some(m) = mesh.filter(|m| !m.is_none()) else {
        return Ok(MeshArg::Scene);
    };
    if m.is_instance_of::<PyTuple>() || m.is_instance_of::<PyList>() {
        let n = m.len()?;
        if n != 3 {
            return Err(quadflow_error(format!(
                "mesh as arrays must be a tuple (x, y, quad8), got {n} items"
            )));
        }
        return Ok(MeshArg::Arrays(
            coordinates("x", &m.get_item(0)?)?,
            coordinates("y", &m.get_item(1)?)?,
            connectivity("quad8", &m.get_item(2)?)?,
        ));
    }
    if m.is_instance_of::<PyString>() || m.hasattr("__fspath__")? {
        return Ok(MeshArg::File(m.extract::<PathBuf>()?));
    }
    Err(quadflow_error(format!(
        "mesh must be a path (.h5, .msh), a tuple (x, y, quad8) of arrays, or None for the scene's mesh; got {}",
        m.get_type().name()?
    )))
}

/// The scene of a call with its overrides applied and, for arrays, its
/// mesh replaced by them; resolved into a plan.
fn plan_for(
    scene: Option<&Bound<'_, PyAny>>,
    overrides: &Overrides,
    mesh: &MeshArg<'_>,
) -> PyResult<Plan> {
    let mut s = scene_of(scene)?;
    match mesh {
        MeshArg::Scene => {}
        MeshArg::File(p) => with_mesh_file(&mut s, p)?,
        MeshArg::Arrays(..) => {
            s.mesh.file = Some(PathBuf::from(ARRAYS));
            s.mesh.generate = None;
            s.mesh.nodes = None;
        }
    }
    overrides.apply(&mut s)?;
    s.plan().map_err(to_py)
}

fn arrays_origin(x: &[f64], quad8: &[[i64; 8]]) -> String {
    format!("arrays ({} nodes, {} elements)", x.len(), quad8.len())
}

/// Solves a mesh: `mesh` is a path (.h5, .msh), a tuple `(x, y, quad8)` of
/// NumPy arrays, or None for the scene's own mesh. `scene` is a scene file
/// path, TOML text or a dict with the scene file's keys (default: the
/// reference configuration). `backend`, `solver`, `rtol`, `threads` and
/// `max_iterations` override the scene (None: the scene's; without a scene
/// serial, cg-jacobi, 1e-8, one thread per core, 15000). Returns a
/// `SolveResult`.
#[pyfunction]
#[pyo3(signature = (mesh = None, *, backend = None, solver = None, rtol = None, threads = None, scene = None, max_iterations = None))]
#[allow(clippy::too_many_arguments)]
fn solve(
    py: Python<'_>,
    mesh: Option<&Bound<'_, PyAny>>,
    backend: Option<String>,
    solver: Option<String>,
    rtol: Option<f64>,
    threads: Option<i64>,
    scene: Option<&Bound<'_, PyAny>>,
    max_iterations: Option<usize>,
) -> PyResult<SolveResult> {
    let started = Instant::now();
    let overrides = Overrides {
        backend,
        solver,
        rtol,
        threads,
        max_iterations,
    };
    let mesh = mesh_arg(mesh)?;
    let plan = plan_for(scene, &overrides, &mesh)?;
    let out = match mesh {
        MeshArg::Scene | MeshArg::File(_) => {
            run_detached(py, |stop| run::run(&plan, Some(hook(stop))))?
        }
        MeshArg::Arrays(x, y, q) => {
            let quad8 = q.elements();
            let origin = arrays_origin(&x, quad8);
            let plan = &plan;
            run_detached(py, move |stop| {
                for b in plan.planned_backends() {
                    b.prewarm();
                }
                let loaded =
                    LoadedMesh::from_arrays(plan, x, y, quad8, BTreeMap::new(), origin, started)?;
                run::run_on(plan, &loaded, Some(hook(stop)))
            })?
        }
    };
    Ok(SolveResult::new(py, out.map_err(to_py)?))
}

/// The progress hook that stops the solve when asked to (Ctrl-C).
fn hook(stop: interrupt::Stop) -> ProgressHook {
    ProgressHook(Some(Box::new(move |_, _| !stop.requested())))
}

/// Assembles the system of a mesh given as arrays: returns `(K, f)` with
/// `K` the full symmetric matrix (a `scipy.sparse.csr_matrix`; without
/// SciPy the tuple `(data, indices, indptr)`) and `f` the right-hand side,
/// with the boundary conditions applied when `boundary` (the system the
/// solver is given, before its equilibration). `scene`, `backend` and
/// `threads` as for `solve`.
#[pyfunction]
#[pyo3(signature = (x, y, quad8, *, boundary = true, scene = None, backend = None, threads = None))]
#[allow(clippy::too_many_arguments)]
fn assemble<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    quad8: &Bound<'py, PyAny>,
    boundary: bool,
    scene: Option<&Bound<'py, PyAny>>,
    backend: Option<String>,
    threads: Option<i64>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<f64>>)> {
    let started = Instant::now();
    let mesh = MeshArg::Arrays(
        coordinates("x", x)?,
        coordinates("y", y)?,
        connectivity("quad8", quad8)?,
    );
    let overrides = Overrides {
        backend,
        threads,
        ..Overrides::default()
    };
    let plan = plan_for(scene, &overrides, &mesh)?;
    let MeshArg::Arrays(x, y, q) = mesh else {
        unreachable!("arrays")
    };
    let quad8 = q.elements();
    let origin = arrays_origin(&x, quad8);
    let plan = &plan;
    let (n, (rowptr, col, val), f) = run_detached(py, move |_| {
        let loaded = LoadedMesh::from_arrays(plan, x, y, quad8, BTreeMap::new(), origin, started)?;
        let a = run::assemble_on(plan, &loaded, boundary)?;
        Ok::<_, quadflow::error::AppError>((a.system.k.n, a.system.k.to_full(), a.system.f))
    })?
    .map_err(to_py)?;
    let f = f.into_pyarray(py);
    let (indptr, indices) = (index_array(py, rowptr)?, index_array(py, col)?);
    let data = val.into_pyarray(py).into_any();
    let k = match py.import("scipy.sparse") {
        Ok(sp) => sp.getattr("csr_matrix")?.call1((
            (data, indices, indptr),
            // shape
            (n, n),
        ))?,
        Err(_) => PyTuple::new(py, [data, indices, indptr])?.into_any(),
    };
    Ok((k, f))
}

/// CSR indices as an int32 array (handed over, not copied) where they fit,
/// else int64.
fn index_array<'py>(py: Python<'py>, v: Vec<u32>) -> PyResult<Bound<'py, PyAny>> {
    if v.iter().all(|&i| i <= i32::MAX as u32) {
        let mut v = std::mem::ManuallyDrop::new(v);
        // SAFETY: u32 and i32 have one size and alignment; every value
        // fits, so each reads as the same number.
        let v = unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<i32>(), v.len(), v.capacity()) };
        Ok(v.into_pyarray(py).into_any())
    } else {
        let v: Vec<i64> = v.into_iter().map(i64::from).collect();
        Ok(v.into_pyarray(py).into_any())
    }
}

/// A mesh as `(x, y, quad8)` arrays (float64, float64, int64 (E, 8)).
type MeshArrays<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyAny>,
);

fn mesh_arrays(py: Python<'_>, raw: RawMesh) -> MeshArrays<'_> {
    (
        raw.x.into_pyarray(py),
        raw.y.into_pyarray(py),
        rows_array(raw.quad8).into_pyarray(py).into_any(),
    )
}

/// Generates a mesh of a built-in geometry (straight_channel, venturi,
/// backward_step, s_bend, t_junction, elbow_90) of about `nodes` nodes;
/// returns `(x, y, quad8)`.
#[pyfunction]
#[pyo3(signature = (geometry, nodes = 20000))]
fn generate<'py>(py: Python<'py>, geometry: &str, nodes: usize) -> PyResult<MeshArrays<'py>> {
    let g = Geometry::parse(geometry).ok_or_else(|| {
        quadflow_error(format!(
            "unknown geometry \"{geometry}\" (available: {})",
            Geometry::ALL.map(|g| g.name()).join(", ")
        ))
    })?;
    let raw = run_detached(py, |_| quadflow::generate::generate(g, nodes))?.map_err(to_py)?;
    Ok(mesh_arrays(py, raw))
}

/// Reads a mesh file (.h5/.hdf5: datasets x, y, quad8; .msh: gmsh 2.2 or
/// 4.1); returns `(x, y, quad8)` as stored (not validated: `solve` does).
#[pyfunction]
fn read_mesh(py: Python<'_>, path: PathBuf) -> PyResult<MeshArrays<'_>> {
    let raw = run_detached(py, |_| quadflow::io::read_mesh_file(&path))?.map_err(to_py)?;
    Ok(mesh_arrays(py, raw.raw))
}

/// Writes a mesh file, the format by extension: .h5 (HDF5, int32
/// connectivity, stored as `layout` says: "gzip" or "contiguous") or .msh
/// (gmsh `msh_version` "4.1" or "2.2", ASCII or `binary`). The mesh is checked first (as `solve` checks it); the file is
/// written whole or not at all.
#[pyfunction]
#[pyo3(signature = (path, x, y, quad8, *, msh_version = "4.1", binary = false, layout = "gzip"))]
#[allow(clippy::too_many_arguments)] // the Python signature's keywords
fn write_mesh(
    py: Python<'_>,
    path: PathBuf,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    quad8: &Bound<'_, PyAny>,
    msh_version: &str,
    binary: bool,
    layout: &str,
) -> PyResult<()> {
    let version = MshVersion::parse(msh_version, binary).ok_or_else(|| {
        quadflow_error(format!(
            "msh_version={msh_version:?}: unknown gmsh format version (use \"2.2\" or \"4.1\")"
        ))
    })?;
    let layout = MeshLayout::parse(layout).ok_or_else(|| {
        quadflow_error(format!(
            "layout={layout:?}: unknown HDF5 layout (use {})",
            MeshLayout::NAMES
        ))
    })?;
    let raw = RawMesh {
        x: coordinates("x", x)?,
        y: coordinates("y", y)?,
        quad8: connectivity("quad8", quad8)?.elements().to_vec(),
    };
    run_detached(py, |_| {
        Mesh::new_with(
            raw.x.clone(),
            raw.y.clone(),
            &raw.quad8,
            OrientationPolicy::Fix,
            true,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        quadflow::io::write_any_mesh(&path, &raw, &BTreeMap::new(), version, layout)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?
    .map_err(quadflow_error)
}

/// The backends this build knows, with one line about each.
#[pyfunction]
fn backends() -> Vec<(String, String)> {
    quadflow::backends::catalog()
        .kinds()
        .map(|k| (k.name().to_string(), k.about().to_string()))
        .collect()
}

/// The native part of the `quadflow` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("QuadflowError", m.py().get_type::<QuadflowError>())?;
    m.add_class::<SolveResult>()?;
    m.add_function(wrap_pyfunction!(solve, m)?)?;
    m.add_function(wrap_pyfunction!(assemble, m)?)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(read_mesh, m)?)?;
    m.add_function(wrap_pyfunction!(write_mesh, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("GEOMETRIES", Geometry::ALL.map(|g| g.name()).to_vec())?;
    Ok(())
}
