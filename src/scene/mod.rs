//! Scene files (TOML): what to solve and how. Every key is optional and
//! defaults to SPEC's reference configuration; unknown keys and bad values
//! are errors that name the key. See the README's "Scene files" section.

use crate::generate::Geometry;
use quadflow_systems::amg::{AmgSettings, Smoother, Strength};
use quadflow_systems::boundary::{BoundaryConfig, DirichletPart, RobinPart, Selector, Side, Value};
use quadflow_systems::components::{Physics, SolverMethod, SolverSettings, Source};
use quadflow_systems::gpu::{Gpu, GpuSolveStrategy};
use quadflow_systems::mesh::OrientationPolicy;
use quadflow_systems::parallel::{AssemblyStrategy, Parallel};
use quadflow_systems::pipeline::{Phase, PhasePlan, RunConfig};
use quadflow_systems::solver::CgSettings;
use serde::{Deserialize, Serialize};
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
    /// `gamma` (inflow flux).
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

/// `[parallel]`: settings of the `parallel` backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParallelSection {
    /// Threads (0 = one per core).
    pub threads: usize,
    /// `direct-csr` (coloured scatter into CSR) or `batched-coo`.
    pub assembly: String,
    /// Elements per batch of `batched-coo`.
    pub batch_size: usize,
}

impl Default for ParallelSection {
    fn default() -> Self {
        Self {
            threads: 0,
            assembly: "direct-csr".into(),
            batch_size: 1024,
        }
    }
}

/// `[gpu]`: settings of the `gpu` backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSection {
    /// `custom` (own fused kernels, seed 5) or `vendor` (cuSPARSE + cuBLAS, seed 6).
    pub strategy: String,
    /// Iterations between host convergence checks of the custom CG.
    pub check_every: usize,
    /// CUDA device ordinal.
    pub device: usize,
}

impl Default for GpuSection {
    fn default() -> Self {
        Self {
            strategy: "custom".into(),
            check_every: 32,
            device: 0,
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
    /// Parallel backend settings.
    #[serde(default)]
    pub parallel: ParallelSection,
    /// GPU backend settings.
    #[serde(default)]
    pub gpu: GpuSection,
    /// Outputs.
    #[serde(default)]
    pub output: OutputSection,
    /// Where the scene came from (not a key).
    #[serde(skip)]
    pub origin: String,
}

/// The built-in default scene: a generated venturi of about 20,000 nodes,
/// the reference configuration, serial backend. Needs no file.
pub const DEFAULT_SCENE: &str = include_str!("../../scenes/default.toml");

/// Where the mesh of a scene comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshSource {
    /// A file.
    File(PathBuf),
    /// A generated geometry with a target node count.
    Generate(Geometry, usize),
}

impl Scene {
    /// Parses scene text; `origin` names it in messages and is the base of
    /// relative paths (a file path, or `<built-in>`).
    pub fn parse(text: &str, origin: &str) -> Result<Self, SceneError> {
        let mut s: Scene = toml::from_str(text).map_err(|e| SceneError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        s.origin = origin.to_string();
        s.check()?;
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

    fn err(&self, key: &str, message: impl Into<String>) -> SceneError {
        SceneError::Value {
            path: self.origin.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks every value; called by `parse`, and again after command-line
    /// overrides.
    pub fn check(&self) -> Result<(), SceneError> {
        self.mesh_source()?;
        self.orientation()?;
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
        self.parallel_backend()?;
        self.gpu_backend()?;
        Ok(())
    }

    /// The mesh source, with relative paths resolved against the scene's
    /// directory.
    pub fn mesh_source(&self) -> Result<MeshSource, SceneError> {
        match (&self.mesh.file, &self.mesh.generate) {
            (Some(_), Some(_)) => Err(self.err("mesh", "give either file or generate, not both")),
            (None, None) => Err(self.err(
                "mesh",
                "needs file = \"MESH.h5\" or generate = \"GEOMETRY\"",
            )),
            (Some(f), None) => {
                if self.mesh.nodes.is_some() {
                    return Err(self.err("mesh.nodes", "only applies to generated meshes"));
                }
                let base = Path::new(&self.origin)
                    .parent()
                    .filter(|_| !self.origin.starts_with('<'));
                Ok(MeshSource::File(match base {
                    Some(b) if f.is_relative() => b.join(f),
                    _ => f.clone(),
                }))
            }
            (None, Some(g)) => {
                let geom = Geometry::parse(g).ok_or_else(|| {
                    self.err(
                        "mesh.generate",
                        format!(
                            "unknown geometry \"{g}\" (available: {})",
                            Geometry::ALL.map(|g| g.name()).join(", ")
                        ),
                    )
                })?;
                let n = self.mesh.nodes.unwrap_or(20_000);
                if !(50..=50_000_000).contains(&n) {
                    return Err(
                        self.err("mesh.nodes", format!("must lie in 50..=50000000, got {n}"))
                    );
                }
                Ok(MeshSource::Generate(geom, n))
            }
        }
    }

    /// The orientation policy.
    pub fn orientation(&self) -> Result<OrientationPolicy, SceneError> {
        match self.mesh.orientation.as_deref() {
            None | Some("fix") => Ok(OrientationPolicy::Fix),
            Some("refuse") => Ok(OrientationPolicy::Refuse),
            Some(o) => Err(self.err(
                "mesh.orientation",
                format!("must be \"fix\" or \"refuse\", got \"{o}\""),
            )),
        }
    }

    fn selector(&self, key: &str, s: &str) -> Result<Selector, SceneError> {
        if let Some(side) = Side::parse(s) {
            return Ok(Selector::Side(side));
        }
        if let Some(name) = s.strip_prefix("set:").filter(|n| !n.is_empty()) {
            return Ok(Selector::Named(name.to_string()));
        }
        if let Some(b) = s.strip_prefix("box:") {
            let v: Vec<f64> = b.split(',').filter_map(|t| t.trim().parse().ok()).collect();
            if v.len() == 4 && v[0] <= v[1] && v[2] <= v[3] {
                return Ok(Selector::Box {
                    x0: v[0],
                    x1: v[1],
                    y0: v[2],
                    y1: v[3],
                });
            }
        }
        Err(self.err(
            key,
            format!(
                "bad selector \"{s}\": use xmin, xmax, ymin, ymax, set:NAME or box:x0,x1,y0,y1"
            ),
        ))
    }

    /// The boundary configuration.
    pub fn boundaries(&self) -> Result<BoundaryConfig, SceneError> {
        let b = &self.boundary;
        let mut cfg = BoundaryConfig {
            tol: b.tolerance,
            penalty: b.penalty,
            ..BoundaryConfig::default()
        };
        if let Some(r) = &b.robin {
            cfg.robin = r
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if !(r.p.is_finite() && r.p >= 0.0) {
                        return Err(
                            self.err(&format!("boundary.robin[{i}].p"), "must be finite and >= 0")
                        );
                    }
                    if !r.gamma.is_finite() {
                        return Err(
                            self.err(&format!("boundary.robin[{i}].gamma"), "must be finite")
                        );
                    }
                    Ok(RobinPart {
                        name: r.name.clone(),
                        select: self.selector(&format!("boundary.robin[{i}].select"), &r.select)?,
                        p: r.p,
                        gamma: r.gamma,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(d) = &b.dirichlet {
            cfg.dirichlet =
                d.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        if !d.value.is_finite() {
                            return Err(self
                                .err(&format!("boundary.dirichlet[{i}].value"), "must be finite"));
                        }
                        Ok(DirichletPart {
                            name: d.name.clone(),
                            select: self
                                .selector(&format!("boundary.dirichlet[{i}].select"), &d.select)?,
                            value: Value::Constant(d.value),
                        })
                    })
                    .collect::<Result<_, _>>()?;
        }
        Ok(cfg)
    }

    /// The AMG settings of `[solver.amg]`, checked.
    pub fn amg_settings(&self) -> Result<AmgSettings, SceneError> {
        let a = &self.solver.amg;
        if !(a.theta > 0.0 && a.theta < 1.0) {
            return Err(self.err(
                "solver.amg.theta",
                format!("must lie in (0, 1), got {}", a.theta),
            ));
        }
        let strength = Strength::parse(&a.strength).ok_or_else(|| {
            self.err(
                "solver.amg.strength",
                format!(
                    "unknown strength \"{}\" (available: {})",
                    a.strength,
                    Strength::NAMES.join(", ")
                ),
            )
        })?;
        let smoother = Smoother::parse(&a.smoother).ok_or_else(|| {
            self.err(
                "solver.amg.smoother",
                format!(
                    "unknown smoother \"{}\" (available: {})",
                    a.smoother,
                    Smoother::NAMES.join(", ")
                ),
            )
        })?;
        if !(1..=10).contains(&a.degree) {
            return Err(self.err(
                "solver.amg.degree",
                format!("must lie in 1..=10, got {}", a.degree),
            ));
        }
        if a.pre_sweeps > 10 {
            return Err(self.err(
                "solver.amg.pre_sweeps",
                format!("must lie in 0..=10, got {}", a.pre_sweeps),
            ));
        }
        if a.post_sweeps > 10 {
            return Err(self.err(
                "solver.amg.post_sweeps",
                format!("must lie in 0..=10, got {}", a.post_sweeps),
            ));
        }
        if a.pre_sweeps + a.post_sweeps == 0 {
            return Err(self.err(
                "solver.amg.pre_sweeps",
                "pre_sweeps and post_sweeps are both 0: the V-cycle would not smooth",
            ));
        }
        if !(1..=5000).contains(&a.max_coarse) {
            return Err(self.err(
                "solver.amg.max_coarse",
                format!(
                    "must lie in 1..=5000 (the coarsest level is factorised densely), got {}",
                    a.max_coarse
                ),
            ));
        }
        if !(2..=50).contains(&a.max_levels) {
            return Err(self.err(
                "solver.amg.max_levels",
                format!("must lie in 2..=50, got {}", a.max_levels),
            ));
        }
        if !(a.chebyshev_ratio.is_finite() && a.chebyshev_ratio > 1.0) {
            return Err(self.err(
                "solver.amg.chebyshev_ratio",
                format!("must be above 1, got {}", a.chebyshev_ratio),
            ));
        }
        Ok(AmgSettings {
            theta: a.theta,
            strength,
            smoother,
            degree: a.degree,
            pre_sweeps: a.pre_sweeps,
            post_sweeps: a.post_sweeps,
            max_coarse: a.max_coarse,
            max_levels: a.max_levels,
            cheb_ratio: a.chebyshev_ratio,
            ..AmgSettings::default()
        })
    }

    /// Physics, boundaries and solver as the engine takes them.
    pub fn run_config(&self) -> Result<RunConfig, SceneError> {
        let s = &self.solver;
        Ok(RunConfig {
            physics: Physics {
                p0: self.physics.p0,
                rho: self.physics.rho,
                source: Source::Constant(self.physics.source),
            },
            boundaries: self.boundaries()?,
            solver: SolverSettings {
                method: SolverMethod::parse(&s.method).ok_or_else(|| {
                    self.err("solver.method", format!("unknown method \"{}\"", s.method))
                })?,
                cg: CgSettings {
                    rtol: s.rtol,
                    max_iter: s.max_iterations,
                },
                amg: self.amg_settings()?,
                allow_unconverged: s.allow_unconverged,
            },
        })
    }

    /// The backend of each phase.
    pub fn plan(&self) -> PhasePlan {
        let b = &self.backend;
        let mut plan = PhasePlan::uniform(&b.default);
        for (phase, name) in [
            (Phase::Quadrature, &b.quadrature),
            (Phase::Assembly, &b.assembly),
            (Phase::Boundary, &b.boundary),
            (Phase::Solve, &b.solve),
            (Phase::Post, &b.post),
        ] {
            if let Some(n) = name {
                plan.set(phase, n);
            }
        }
        plan
    }

    /// The parallel backend as configured by `[parallel]`.
    pub fn parallel_backend(&self) -> Result<Parallel, SceneError> {
        let p = &self.parallel;
        if p.batch_size == 0 {
            return Err(self.err("parallel.batch_size", "must be at least 1"));
        }
        if p.threads > 1024 {
            return Err(self.err(
                "parallel.threads",
                format!("{} threads is unreasonable (0 = one per core)", p.threads),
            ));
        }
        let strategy = AssemblyStrategy::parse(&p.assembly, p.batch_size).ok_or_else(|| {
            self.err(
                "parallel.assembly",
                format!(
                    "unknown strategy \"{}\" (available: {})",
                    p.assembly,
                    AssemblyStrategy::NAMES.join(", ")
                ),
            )
        })?;
        Ok(Parallel {
            threads: p.threads,
            strategy,
        })
    }

    /// The GPU backend as configured by `[gpu]`.
    pub fn gpu_backend(&self) -> Result<Gpu, SceneError> {
        let g = &self.gpu;
        let strategy = GpuSolveStrategy::parse(&g.strategy).ok_or_else(|| {
            self.err(
                "gpu.strategy",
                format!(
                    "unknown strategy \"{}\" (available: custom, vendor)",
                    g.strategy
                ),
            )
        })?;
        if g.check_every == 0 {
            return Err(self.err("gpu.check_every", "must be at least 1"));
        }
        let mut b = Gpu::with_strategy(strategy);
        b.cg.check_every = g.check_every;
        b.device = g.device;
        Ok(b)
    }

    /// Sets every phase to one backend (the `--backend` flag).
    pub fn set_backend(&mut self, name: &str) {
        self.backend = BackendSection {
            default: name.to_string(),
            ..BackendSection::default()
        };
    }

    /// The scene as TOML (stored in results files).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scene_parses() {
        let s = Scene::default_scene();
        assert!(matches!(
            s.mesh_source().unwrap(),
            MeshSource::Generate(Geometry::Venturi, _)
        ));
        assert_eq!(s.plan(), PhasePlan::uniform("serial"));
        let back = Scene::parse(&s.to_toml(), "<round trip>").unwrap();
        assert_eq!(back.mesh, s.mesh);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Scene::parse(
            "[solver]\nrtoll = 1e-8\n[mesh]\ngenerate='venturi'",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("rtoll"), "{e}");
        let e = Scene::parse("colour = 3\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Scene::parse(
            "[mesh]\ngenerate='venturi'\n[solver.amg]\ntheeta = 0.1\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("theeta"), "{e}");
    }

    #[test]
    fn amg_example_scene_lists_the_defaults() {
        let s = Scene::parse(include_str!("../../scenes/amg.toml"), "scenes/amg.toml").unwrap();
        let c = s.run_config().unwrap();
        assert_eq!(c.solver.method, SolverMethod::AmgCg);
        assert_eq!(c.solver.amg, AmgSettings::default());
    }

    #[test]
    fn solver_methods_and_amg_keys() {
        let s = Scene::parse(
            "[mesh]\ngenerate='venturi'\n[solver]\nmethod = 'amg-cg'\nrtol = 1e-10\n\
             [solver.amg]\ntheta = 0.1\nsmoother = 'jacobi'\ndegree = 3\nmax_coarse = 200\n\
             strength = 'magnitude'\n",
            "t.toml",
        )
        .unwrap();
        let c = s.run_config().unwrap();
        assert_eq!(c.solver.method, SolverMethod::AmgCg);
        assert_eq!(c.solver.cg.rtol, 1e-10);
        assert_eq!(c.solver.amg.theta, 0.1);
        assert_eq!(c.solver.amg.smoother, Smoother::Jacobi);
        assert_eq!(c.solver.amg.strength, Strength::Magnitude);
        assert_eq!(c.solver.amg.degree, 3);
        assert_eq!(c.solver.amg.max_coarse, 200);
        assert_eq!(c.solver.amg.pre_sweeps, AmgSettings::default().pre_sweeps);
        let back = Scene::parse(&s.to_toml(), "<round trip>").unwrap();
        assert_eq!(back.solver, s.solver);
        for m in SolverMethod::NAMES {
            let s = Scene::parse(
                &format!("[mesh]\ngenerate='venturi'\n[solver]\nmethod = '{m}'\n"),
                "t.toml",
            )
            .unwrap();
            assert_eq!(s.run_config().unwrap().solver.method.name(), *m);
        }
    }

    #[test]
    fn bad_values_are_named() {
        let base = "[mesh]\ngenerate = 'venturi'\n";
        for (extra, key) in [
            ("[solver]\nrtol = -1.0\n", "solver.rtol"),
            ("[solver]\nmethod = 'magic'\n", "solver.method"),
            ("[solver.amg]\ntheta = 0.0\n", "solver.amg.theta"),
            ("[solver.amg]\nsmoother = 'gauss'\n", "solver.amg.smoother"),
            ("[solver.amg]\nstrength = 'big'\n", "solver.amg.strength"),
            (
                "[solver.amg]\nchebyshev_ratio = 1.0\n",
                "solver.amg.chebyshev_ratio",
            ),
            ("[solver.amg]\ndegree = 0\n", "solver.amg.degree"),
            (
                "[solver.amg]\npre_sweeps = 0\npost_sweeps = 0\n",
                "solver.amg.pre_sweeps",
            ),
            ("[solver.amg]\nmax_coarse = 0\n", "solver.amg.max_coarse"),
            ("[solver.amg]\nmax_levels = 1\n", "solver.amg.max_levels"),
            ("[physics]\nrho = 0.0\n", "physics.rho"),
            (
                "[[boundary.robin]]\nselect = 'left'\ngamma = 1.0\n",
                "boundary.robin[0].select",
            ),
            ("[boundary]\ntolerance = 0.0\n", "boundary.tolerance"),
            ("[parallel]\nassembly = 'lil'\n", "parallel.assembly"),
            ("[parallel]\nbatch_size = 0\n", "parallel.batch_size"),
            ("[gpu]\nstrategy = 'cupy'\n", "gpu.strategy"),
            ("[gpu]\ncheck_every = 0\n", "gpu.check_every"),
        ] {
            let e = Scene::parse(&format!("{base}{extra}"), "t.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        let e = Scene::parse("[mesh]\ngenerate = 'blob'\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("mesh.generate"), "{e}");
        let e = Scene::parse("[mesh]\ngenerate = 'venturi'\nnodes = 3\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("mesh.nodes"), "{e}");
        let e =
            Scene::parse("[mesh]\nfile = 'a.h5'\ngenerate = 'venturi'\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = Scene::parse(
            "[mesh]\ngenerate = 'venturi'\norientation = 'flip'\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mesh.orientation"), "{e}");
    }

    #[test]
    fn relative_mesh_path_is_relative_to_the_scene() {
        let s = Scene::parse("[mesh]\nfile = 'm.h5'\n", "/a/b/scene.toml").unwrap();
        assert_eq!(
            s.mesh_source().unwrap(),
            MeshSource::File(PathBuf::from("/a/b/m.h5"))
        );
    }

    #[test]
    fn selectors_and_plan() {
        let s = Scene::parse(
            "[mesh]\ngenerate='venturi'\n[backend]\ndefault='serial'\nsolve='other'\n\
             [[boundary.dirichlet]]\nselect='box:0,1,0,0.5'\nvalue=2.0\n\
             [[boundary.robin]]\nselect='set:inlet'\ngamma=1.0\np=0.5\n",
            "t.toml",
        )
        .unwrap();
        let b = s.boundaries().unwrap();
        assert_eq!(b.robin[0].select, Selector::Named("inlet".into()));
        assert!(matches!(b.dirichlet[0].select, Selector::Box { x1, .. } if x1 == 1.0));
        assert_eq!(s.plan().get(Phase::Solve), "other");
        assert_eq!(s.plan().get(Phase::Post), "serial");
    }
}
