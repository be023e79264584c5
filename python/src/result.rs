//! `quadflow.SolveResult`: what `solve` returns. The fields are NumPy
//! arrays that own the engine's vectors (handed over, not copied).

use crate::error::{quadflow_error, to_py};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quadflow::io::h5::{self, Attr, ResultsData};
use quadflow::io::vtu;
use quadflow::run::RunResult;
use quadflow::systems::pipeline::Phase;
use quadflow::viz::plot::{self, Field, PlotOptions};
use std::path::PathBuf;

/// `Vec<[T; N]>` as an `(len, N)` array, without a copy.
pub fn rows_array<T: numpy::Element, const N: usize>(v: Vec<[T; N]>) -> Array2<T> {
    let rows = v.len();
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `[T; N]` has the size of `N` `T` and their alignment, so the
    // allocation of `cap` arrays is one of `N * cap` values of `T` with the
    // same layout.
    let flat =
        unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), rows * N, v.capacity() * N) };
    Array2::from_shape_vec((rows, N), flat).expect("rows * N values")
}

/// The result of `quadflow.solve`: the potential `u` per node, the
/// velocity `vel` (elements x 2), speed `abs_vel` and pressure `pressure`
/// per element, and how the solve went.
#[pyclass(module = "quadflow", name = "SolveResult", frozen)]
pub struct SolveResult {
    /// Potential per node.
    #[pyo3(get)]
    u: Py<PyArray1<f64>>,
    /// Velocity per element, `(elements, 2)`.
    #[pyo3(get)]
    vel: Py<PyArray2<f64>>,
    /// Speed per element.
    #[pyo3(get)]
    abs_vel: Py<PyArray1<f64>>,
    /// Bernoulli pressure per element.
    #[pyo3(get)]
    pressure: Py<PyArray1<f64>>,
    /// The run without its field vectors (handed to the arrays above).
    run: RunResult,
}

impl SolveResult {
    /// Hands a run's vectors over to NumPy arrays.
    pub fn new(py: Python<'_>, mut run: RunResult) -> Self {
        let u = std::mem::take(&mut run.solution.u);
        let vel = std::mem::take(&mut run.vel);
        let abs_vel = std::mem::take(&mut run.abs_vel);
        let pressure = std::mem::take(&mut run.pressure);
        Self {
            u: u.into_pyarray(py).unbind(),
            vel: rows_array(vel).into_pyarray(py).unbind(),
            abs_vel: abs_vel.into_pyarray(py).unbind(),
            pressure: pressure.into_pyarray(py).unbind(),
            run,
        }
    }

    /// Calls `f` with the fields as slices (the arrays as they are now).
    fn with_fields<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&[f64], &[[f64; 2]], &[f64], &[f64]) -> PyResult<R>,
    ) -> PyResult<R> {
        let err = |e: &dyn std::fmt::Display| quadflow_error(format!("result arrays: {e}"));
        let u = self.u.bind(py).try_readonly().map_err(|e| err(&e))?;
        let vel = self.vel.bind(py).try_readonly().map_err(|e| err(&e))?;
        let abs_vel = self.abs_vel.bind(py).try_readonly().map_err(|e| err(&e))?;
        let pressure = self.pressure.bind(py).try_readonly().map_err(|e| err(&e))?;
        let vel = vel.as_slice().map_err(|e| err(&e))?;
        // SAFETY: a C-ordered (elements, 2) float64 array: pairs of f64.
        let vel =
            unsafe { std::slice::from_raw_parts(vel.as_ptr().cast::<[f64; 2]>(), vel.len() / 2) };
        f(
            u.as_slice().map_err(|e| err(&e))?,
            vel,
            abs_vel.as_slice().map_err(|e| err(&e))?,
            pressure.as_slice().map_err(|e| err(&e))?,
        )
    }
}

fn attr_to_py<'py>(py: Python<'py>, a: &Attr) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        Attr::Int(v) => v.into_pyobject(py)?.into_any(),
        Attr::Float(v) => v.into_pyobject(py)?.into_any(),
        Attr::Str(v) => v.into_pyobject(py)?.into_any(),
    })
}

#[pymethods]
impl SolveResult {
    /// Solver iterations.
    #[getter]
    fn iterations(&self) -> usize {
        self.run.solution.stats.iterations
    }

    /// Whether the solver reached its tolerance.
    #[getter]
    fn converged(&self) -> bool {
        self.run.solution.stats.converged
    }

    /// `||f - K u|| / ||f||`, computed after the solve (the penalty rows
    /// of the Dirichlet nodes dominate it; see
    /// `equilibrated_relative_residual`).
    #[getter]
    fn true_relative_residual(&self) -> f64 {
        self.run.solution.true_residual
    }

    /// `||D (f - K u)|| / ||D f||` with `D = diag(|K_ii|)^-1/2`: the
    /// residual of the equilibrated system, the one `rtol` bounds (the
    /// results file's `equilibrated_relative_residual`).
    #[getter]
    fn equilibrated_relative_residual(&self) -> f64 {
        self.run.solution.equilibrated_residual
    }

    /// Wall seconds per phase: `load`, `quadrature`, `assembly`,
    /// `boundary`, `solve`, `post` and `total` (load to the end of post).
    #[getter]
    fn times<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("load", self.run.load_seconds)?;
        for p in Phase::ALL {
            d.set_item(p.name(), self.run.phase_seconds[p.index()])?;
        }
        d.set_item("total", self.run.total_seconds)?;
        Ok(d)
    }

    /// The backend: one name, or `phase=name` pairs when phases differ.
    #[getter]
    fn backend(&self) -> String {
        self.run.backend_label()
    }

    /// The solver method (`cg-jacobi`, `amg-cg`, `cholesky`).
    #[getter]
    fn solver(&self) -> String {
        self.run.solver.clone()
    }

    /// The solver's relative tolerance.
    #[getter]
    fn rtol(&self) -> f64 {
        self.run.rtol
    }

    /// Non-zeros of the assembled matrix.
    #[getter]
    fn matrix_nnz(&self) -> usize {
        self.run.nnz
    }

    /// Nodes of the mesh.
    #[getter]
    fn nodes(&self) -> usize {
        self.run.mesh.nodes()
    }

    /// Elements of the mesh.
    #[getter]
    fn elements(&self) -> usize {
        self.run.mesh.elements.len()
    }

    /// Warnings and notes of the run (renumbered elements, fallbacks).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.run.notes.clone()
    }

    /// Every root attribute the results file stores (`iterations`,
    /// `time_solve`, `scene`, the backends' own, ...), as a dict.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.run.attributes() {
            d.set_item(k, attr_to_py(py, &v)?)?;
        }
        Ok(d)
    }

    /// The command line's report of the run (mesh, phases, solver, range
    /// of u) as text.
    fn report(&self, py: Python<'_>) -> PyResult<String> {
        self.with_fields(py, |u, _, _, _| {
            let mut r = self.run.clone();
            r.solution.u = u.to_vec();
            Ok(r.report(None))
        })
    }

    /// Writes the results file (HDF5, as `quadflow run --out`: datasets
    /// `u`, `vel`, `abs_vel`, `pressure` as the arrays are now, and the
    /// attributes), whole or not at all.
    fn write(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let attrs = self.run.attributes();
        self.with_fields(py, |u, vel, abs_vel, pressure| {
            h5::write_results(
                &path,
                &ResultsData {
                    u,
                    vel,
                    abs_vel,
                    pressure,
                    attrs,
                },
            )
            .map_err(to_py)
        })
    }

    /// Writes a ParaView file (VTK XML `.vtu`: the mesh, `u` per node,
    /// `vel`, `abs_vel`, `pressure` per element).
    fn write_vtu(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with_fields(py, |u, vel, abs_vel, pressure| {
            vtu::write_vtu(&path, &self.run.mesh, u, vel, abs_vel, pressure).map_err(to_py)
        })
    }

    /// Writes a PNG picture of a field (`"u"`, `"abs_vel"` or
    /// `"pressure"`) over the mesh, with a colour bar, as `quadflow plot`.
    #[pyo3(signature = (path, field = "u"))]
    fn write_png(&self, py: Python<'_>, path: PathBuf, field: &str) -> PyResult<()> {
        let f = Field::ALL
            .into_iter()
            .find(|f| f.name() == field)
            .ok_or_else(|| {
                quadflow_error(format!(
                    "field={field:?}: unknown field (available: {})",
                    Field::ALL.map(|f| f.name()).join(", ")
                ))
            })?;
        self.with_fields(py, |u, _, abs_vel, pressure| {
            let values = match f {
                Field::U => u,
                Field::AbsVel => abs_vel,
                Field::Pressure => pressure,
            };
            let opts = PlotOptions {
                title: plot::title(
                    &plot::mesh_name(&self.run.origin),
                    f,
                    &self.run.backend_label(),
                ),
                ..PlotOptions::default()
            };
            plot::plot_png(&path, &self.run.mesh, values, f, &opts).map_err(to_py)
        })
    }

    fn __repr__(&self) -> String {
        let s = &self.run.solution.stats;
        format!(
            "<quadflow.SolveResult: {} nodes, {} elements, backend {}, {} {} iterations ({}), relative residual {:.3e}, {:.3} s>",
            self.run.mesh.nodes(),
            self.run.mesh.elements.len(),
            self.run.backend_label(),
            self.run.solver,
            s.iterations,
            if s.converged {
                "converged"
            } else {
                "NOT converged"
            },
            self.run.solution.equilibrated_residual,
            self.run.total_seconds
        )
    }
}
