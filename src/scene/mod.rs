//! Scene files (TOML): what to solve and how. Every key is optional and
//! defaults to the reference configuration (`docs/numerics.md`); unknown
//! keys and bad values are errors that name the key (or the command-line
//! flag that set it). Each backend reads its own section (`[parallel]`,
//! `[gpu]`, ...). See the README's "Scene files" section.
//!
//! [`Scene`] is the file as written; [`Scene::plan`] resolves it once into
//! the typed [`Plan`] a run takes.

mod plan;
#[cfg(test)]
mod tests;

pub use plan::{MeshSource, Plan};

use quadflow_systems::amg::AmgSettings;
use quadflow_systems::boundary::BoundaryConfig;
use quadflow_systems::components::{Physics, SolverMethod};
use quadflow_systems::config::{Catalog, Flag, Table};
use quadflow_systems::solver::CgSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A scene problem: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The file could not be read.
    #[error("scene {path}: {source}")]
    Io {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type (the message names the key).
    #[error("scene {path}: {message}")]
    Parse {
        /// file
        path: String,
        /// the parser's message
        message: String,
    },
    /// A value out of range.
    #[error("scene {path}: {key}: {message}")]
    Value {
        /// file
        path: String,
        /// dotted key
        key: String,
        /// what is wrong
        message: String,
    },
    /// A bad value given by a command-line flag.
    #[error("{flag}: {message}")]
    Flag {
        /// the flag and its value, as typed (`--solver amg`)
        flag: String,
        /// what is wrong
        message: String,
    },
}

/// `[mesh]`: where the mesh comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// An HDF5 mesh file (relative paths are relative to the scene file).
    pub file: Option<PathBuf>,
    /// A built-in geometry to generate (`straight_channel`, `venturi`, ...).
    pub generate: Option<String>,
    /// Approximate node count of a generated mesh.
    pub nodes: Option<usize>,
    /// `fix` (renumber clockwise elements, warn) or `refuse`.
    pub orientation: Option<String>,
    /// `warn` (solve a mesh with a component no Dirichlet boundary
    /// touches, with a warning naming it) or `refuse`.
    pub components: Option<String>,
}

/// `[physics]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PhysicsSection {
    /// Stagnation pressure (Pa).
    pub p0: f64,
    /// Density (kg/m^3).
    pub rho: f64,
    /// Constant source term `f`.
    pub source: f64,
}

impl Default for PhysicsSection {
    fn default() -> Self {
        let p = Physics::default();
        Self {
            p0: p.p0,
            rho: p.rho,
            source: 0.0,
        }
    }
}

/// One Robin part, `du/dn + p u = gamma`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RobinSection {
    /// Name in messages.
    #[serde(default = "default_inlet")]
    pub name: String,
    /// Selector: `xmin`, `xmax`, `ymin`, `ymax`, `set:NAME` or `box:x0,x1,y0,y1`.
    pub select: String,
    /// `p` (0 = pure flux).
    #[serde(default)]
    pub p: f64,
    /// `gamma` (inflow flux; default 2.5, the reference's).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

/// One Dirichlet part, `u = value` by penalty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirichletSection {
    /// Name in messages.
    #[serde(default = "default_outlet")]
    pub name: String,
    /// Selector, as for Robin parts.
    pub select: String,
    /// Prescribed value.
    #[serde(default)]
    pub value: f64,
}

fn default_gamma() -> f64 {
    2.5
}
fn default_inlet() -> String {
    "inlet".into()
}
fn default_outlet() -> String {
    "outlet".into()
}

/// `[boundary]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BoundarySection {
    /// Side-selector tolerance.
    pub tolerance: f64,
    /// Penalty factor for Dirichlet and unused nodes.
    pub penalty: f64,
    /// Robin parts (default: the inlet `xmin`, `gamma = 2.5`).
    pub robin: Option<Vec<RobinSection>>,
    /// Dirichlet parts (default: the outlet `xmax`, `u = 0`).
    pub dirichlet: Option<Vec<DirichletSection>>,
}

impl Default for BoundarySection {
    fn default() -> Self {
        let b = BoundaryConfig::default();
        Self {
            tolerance: b.tol,
            penalty: b.penalty,
            robin: None,
            dirichlet: None,
        }
    }
}

/// `[solver]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SolverSection {
    /// `cg-jacobi` (the reference configuration), `amg-cg` or `cholesky`.
    pub method: String,
    /// Relative tolerance of the iterative methods (`cg-jacobi`, `amg-cg`),
    /// honoured as given: use `1e-10` with `amg-cg` for comparisons with
    /// a direct solve.
    pub rtol: f64,
    /// Iteration cap.
    pub max_iterations: usize,
    /// Keep a result that hit the cap (marked `converged = 0`).
    pub allow_unconverged: bool,
    /// `[solver.amg]`: parameters of `amg-cg`.
    pub amg: AmgSection,
}

impl Default for SolverSection {
    fn default() -> Self {
        let c = CgSettings::default();
        Self {
            method: SolverMethod::CgJacobi.name().into(),
            rtol: c.rtol,
            max_iterations: c.max_iter,
            allow_unconverged: false,
            amg: AmgSection::default(),
        }
    }
}

/// `[solver.amg]`: the AMG hierarchy and V-cycle of `amg-cg` (see
/// `quadflow_systems::amg::AmgSettings`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmgSection {
    /// Strength-of-connection threshold, in `(0, 1)`.
    pub theta: f64,
    /// Strong couplings: `negative` (`-a_ij >= theta sqrt(a_ii a_jj)`) or
    /// `magnitude` (`|a_ij| >= ...`).
    pub strength: String,
    /// `chebyshev` or `jacobi`.
    pub smoother: String,
    /// Chebyshev degree (Jacobi: steps per sweep), 1 to 10.
    pub degree: usize,
    /// Smoothing sweeps before the coarse correction.
    pub pre_sweeps: usize,
    /// Smoothing sweeps after it (equal to `pre_sweeps` keeps the
    /// preconditioner symmetric).
    pub post_sweeps: usize,
    /// Coarsest level size (dense Cholesky), 1 to 5000.
    pub max_coarse: usize,
    /// Most levels, at least 2.
    pub max_levels: usize,
    /// Chebyshev interval ratio `rho_hat / lower`, above 1.
    pub chebyshev_ratio: f64,
}

impl Default for AmgSection {
    fn default() -> Self {
        let a = AmgSettings::default();
        Self {
            theta: a.theta,
            strength: a.strength.name().into(),
            smoother: a.smoother.name().into(),
            degree: a.degree,
            pre_sweeps: a.pre_sweeps,
            post_sweeps: a.post_sweeps,
            max_coarse: a.max_coarse,
            max_levels: a.max_levels,
            chebyshev_ratio: a.cheb_ratio,
        }
    }
}

/// `[backend]`: the executor of every phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendSection {
    /// Backend of phases not named below.
    pub default: String,
    /// Per-phase overrides.
    pub quadrature: Option<String>,
    /// assembly
    pub assembly: Option<String>,
    /// boundary
    pub boundary: Option<String>,
    /// solve
    pub solve: Option<String>,
    /// post
    pub post: Option<String>,
}

impl Default for BackendSection {
    fn default() -> Self {
        Self {
            default: "serial".into(),
            quadrature: None,
            assembly: None,
            boundary: None,
            solve: None,
            post: None,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Results file (HDF5).
    pub results: Option<PathBuf>,
    /// Chrome trace file.
    pub trace: Option<PathBuf>,
    /// Flamegraph (SVG) file.
    pub flamegraph: Option<PathBuf>,
    /// ParaView file (VTK XML UnstructuredGrid, `.vtu`) of the mesh and
    /// the fields.
    pub vtu: Option<PathBuf>,
    /// PNG picture of the potential `u` over the mesh.
    pub png: Option<PathBuf>,
    /// XDMF index over the results file (which then carries the mesh):
    /// how ParaView opens results of any size.
    pub xdmf: Option<PathBuf>,
}

/// A whole scene.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Free text shown in the run header.
    pub title: Option<String>,
    /// Mesh source.
    #[serde(default)]
    pub mesh: MeshSection,
    /// Physics.
    #[serde(default)]
    pub physics: PhysicsSection,
    /// Boundaries.
    #[serde(default)]
    pub boundary: BoundarySection,
    /// Solver.
    #[serde(default)]
    pub solver: SolverSection,
    /// Backends.
    #[serde(default)]
    pub backend: BackendSection,
    /// Outputs.
    #[serde(default)]
    pub output: OutputSection,
    /// The backends' sections (`[parallel]`, `[gpu]`, ...), by backend
    /// name, as given; each backend reads its own
    /// ([`quadflow_systems::config::BackendKind`]).
    #[serde(skip)]
    pub backends: BTreeMap<String, Table>,
    /// Where the scene came from (not a key).
    #[serde(skip)]
    pub origin: String,
    /// Keys set by command-line flags, with the flag as typed (errors
    /// about them name the flag, not the scene).
    #[serde(skip)]
    pub overrides: BTreeMap<String, String>,
}

/// The built-in default scene: a generated venturi of about 20,000 nodes,
/// the reference configuration, serial backend. Needs no file.
pub const DEFAULT_SCENE: &str = include_str!("../../scenes/default.toml");

impl Scene {
    /// Parses scene text with this build's backends
    /// ([`crate::backends::catalog`]); `origin` names it in messages and is
    /// the base of relative paths (a file path, or `<built-in>`).
    pub fn parse(text: &str, origin: &str) -> Result<Self, SceneError> {
        Self::parse_with(text, origin, &crate::backends::catalog())
    }

    /// Parses scene text; the sections named after a kind of `catalog`
    /// are that backend's.
    pub fn parse_with(text: &str, origin: &str, catalog: &Catalog) -> Result<Self, SceneError> {
        let perr = |message: String| SceneError::Parse {
            path: origin.to_string(),
            message: message.trim_end().to_string(),
        };
        let mut table: Table = toml::from_str(text).map_err(|e| perr(e.to_string()))?;
        let mut backends = BTreeMap::new();
        for k in catalog.kinds() {
            match table.remove(k.name()) {
                None => {}
                Some(toml::Value::Table(t)) => {
                    backends.insert(k.name().to_string(), t);
                }
                Some(_) => {
                    return Err(perr(format!(
                        "{0} must be a section ([{0}]), the settings of the {0} backend",
                        k.name()
                    )));
                }
            }
        }
        let top: Vec<String> = table.keys().cloned().collect();
        let mut s = Scene::deserialize(toml::Value::Table(table)).map_err(|e| {
            let msg = e.to_string().trim_end().replace('\n', " ");
            // a top-level unknown key may be a misspelt backend section
            if msg.contains("unknown field") && !msg.contains(" in `") {
                let hint = top
                    .iter()
                    .find_map(|k| crate::backends::not_built(k))
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                perr(format!(
                    "{msg} (or a backend section: {}){hint}",
                    catalog.names()
                ))
            } else {
                perr(msg)
            }
        })?;
        s.backends = backends;
        s.origin = origin.to_string();
        s.check()?;
        s.registry(catalog)?;
        Ok(s)
    }

    /// Reads and parses a scene file.
    pub fn load(path: &Path) -> Result<Self, SceneError> {
        let text = std::fs::read_to_string(path).map_err(|e| SceneError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The built-in default scene.
    pub fn default_scene() -> Self {
        Self::parse(DEFAULT_SCENE, "<built-in default scene>").expect("the built-in scene is valid")
    }

    /// An error about `key`: naming the flag that set it, if one did, else
    /// the scene and the key.
    fn err(&self, key: &str, message: impl Into<String>) -> SceneError {
        match self.overrides.get(key) {
            Some(flag) => SceneError::Flag {
                flag: flag.clone(),
                message: message.into(),
            },
            None => SceneError::Value {
                path: self.origin.clone(),
                key: key.into(),
                message: message.into(),
            },
        }
    }

    /// Records that the flag `flag` (as typed) set `key`.
    pub fn set_by_flag(&mut self, key: &str, flag: impl Into<String>) {
        self.overrides.insert(key.to_string(), flag.into());
    }

    /// Sets `key` of backend `backend`'s section from the flag `flag` with
    /// the value `text`.
    pub fn set_backend_flag(
        &mut self,
        backend: &str,
        flag: &Flag,
        text: &str,
    ) -> Result<(), SceneError> {
        let typed = format!("--{} {text}", flag.long);
        let value = flag.parse(text).map_err(|message| SceneError::Flag {
            flag: typed.clone(),
            message,
        })?;
        self.backends
            .entry(backend.to_string())
            .or_default()
            .insert(flag.key.to_string(), value);
        self.set_by_flag(&format!("{backend}.{}", flag.key), typed);
        Ok(())
    }

    /// Checks every value that can be checked without the mesh source and
    /// the backends (called by `parse`); [`Scene::plan`] checks the rest.
    pub fn check(&self) -> Result<(), SceneError> {
        if self.mesh.file.is_some() || self.mesh.generate.is_some() {
            self.mesh_source()?;
        }
        self.orientation()?;
        self.component_policy()?;
        let p = &self.physics;
        if !(p.p0.is_finite()) {
            return Err(self.err("physics.p0", "must be a finite number"));
        }
        if !(p.rho.is_finite() && p.rho > 0.0) {
            return Err(self.err("physics.rho", format!("must be positive, got {}", p.rho)));
        }
        if !p.source.is_finite() {
            return Err(self.err("physics.source", "must be a finite number"));
        }
        let b = &self.boundary;
        if !(b.tolerance.is_finite() && b.tolerance > 0.0) {
            return Err(self.err(
                "boundary.tolerance",
                format!("must be positive, got {}", b.tolerance),
            ));
        }
        if !(b.penalty.is_finite() && b.penalty > 0.0) {
            return Err(self.err(
                "boundary.penalty",
                format!("must be positive, got {}", b.penalty),
            ));
        }
        self.boundaries()?;
        let s = &self.solver;
        if SolverMethod::parse(&s.method).is_none() {
            return Err(self.err(
                "solver.method",
                format!(
                    "unknown method \"{}\" (available: {})",
                    s.method,
                    SolverMethod::NAMES.join(", ")
                ),
            ));
        }
        if !(s.rtol > 0.0 && s.rtol < 1.0) {
            return Err(self.err("solver.rtol", format!("must lie in (0, 1), got {}", s.rtol)));
        }
        if s.max_iterations == 0 {
            return Err(self.err("solver.max_iterations", "must be at least 1"));
        }
        self.amg_settings()?;
        Ok(())
    }

    /// Sets every phase to one backend (the `--backend` flag).
    pub fn set_backend(&mut self, name: &str) {
        self.backend = BackendSection {
            default: name.to_string(),
            ..BackendSection::default()
        };
    }

    /// The scene as TOML (stored in results files), backend sections
    /// included.
    pub fn to_toml(&self) -> String {
        let mut t = Table::try_from(self).unwrap_or_default();
        for (k, v) in &self.backends {
            t.insert(k.clone(), toml::Value::Table(v.clone()));
        }
        toml::to_string(&t).unwrap_or_default()
    }
}
