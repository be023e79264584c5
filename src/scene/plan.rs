//! The typed plan of a run: a scene resolved once, every value checked,
//! the backends configured from their sections ([`Scene::plan`]).

use super::{OutputSection, Scene, SceneError};
use crate::generate::{self, Geometry};
use quadflow_systems::amg::{AmgSettings, Smoother, Strength};
use quadflow_systems::boundary::{
    BoundaryConfig, ComponentPolicy, DirichletPart, RobinPart, Selector, Side, Value,
};
use quadflow_systems::components::{Physics, SolverMethod, SolverSettings, Source};
use quadflow_systems::config::Catalog;
use quadflow_systems::mesh::OrientationPolicy;
use quadflow_systems::pipeline::{Phase, PhasePlan, Registry, RunConfig};
use quadflow_systems::solver::CgSettings;
use std::path::{Path, PathBuf};

/// Where the mesh of a scene comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshSource {
    /// A file.
    File(PathBuf),
    /// A generated geometry with a target node count.
    Generate(Geometry, usize),
}

/// A scene resolved for running: what to load, how to solve it, which
/// configured backend runs each phase, what to write.
#[derive(Clone)]
pub struct Plan {
    /// Free text of the run header.
    pub title: Option<String>,
    /// Where the mesh comes from.
    pub mesh: MeshSource,
    /// What to do with clockwise elements.
    pub orientation: OrientationPolicy,
    /// Physics, boundaries and solver as the engine takes them.
    pub config: RunConfig,
    /// The backend named for each phase.
    pub phases: PhasePlan,
    /// The configured backends and the fallback.
    pub registry: Registry,
    /// The output files.
    pub outputs: OutputSection,
    /// The scene as TOML (what results files store).
    pub scene_toml: String,
}

impl Plan {
    /// The configured backends named by the phase plan, each once, in
    /// phase order (before any fallback).
    pub fn planned_backends(&self) -> Vec<&std::sync::Arc<dyn quadflow_systems::Backend>> {
        let mut out: Vec<&std::sync::Arc<dyn quadflow_systems::Backend>> = Vec::new();
        for p in Phase::ALL {
            if let Some(b) = self.registry.get(self.phases.get(p))
                && !out.iter().any(|o| o.name() == b.name())
            {
                out.push(b);
            }
        }
        out
    }

    /// The solver's relative tolerance.
    pub fn rtol(&self) -> f64 {
        self.config.solver.cg.rtol
    }
}

impl Scene {
    /// Resolves the scene with this build's backends
    /// ([`crate::backends::catalog`]).
    pub fn plan(&self) -> Result<Plan, SceneError> {
        self.plan_with(&crate::backends::catalog())
    }

    /// Resolves the scene with the backends of `catalog`: every value
    /// checked, every backend configured from its section, every phase's
    /// backend known.
    pub fn plan_with(&self, catalog: &Catalog) -> Result<Plan, SceneError> {
        let registry = self.registry(catalog)?;
        let phases = self.phase_plan();
        for p in Phase::ALL {
            let name = phases.get(p);
            if registry.get(name).is_none() {
                let key = match p {
                    Phase::Quadrature => "backend.quadrature",
                    Phase::Assembly => "backend.assembly",
                    Phase::Boundary => "backend.boundary",
                    Phase::Solve => "backend.solve",
                    Phase::Post => "backend.post",
                };
                let key = if self.backend.default == name && !self.overrides.contains_key(key) {
                    "backend.default"
                } else {
                    key
                };
                return Err(self.err(
                    key,
                    format!(
                        "unknown backend \"{name}\" (available: {}){}",
                        catalog.names(),
                        crate::backends::not_built(name)
                            .map(|h| format!("; {h}"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(Plan {
            title: self.title.clone(),
            mesh: self.mesh_source()?,
            orientation: self.orientation()?,
            config: self.run_config()?,
            phases,
            registry,
            outputs: self.output.clone(),
            scene_toml: self.to_toml(),
        })
    }

    /// Every backend of `catalog` configured from its section.
    pub fn registry(&self, catalog: &Catalog) -> Result<Registry, SceneError> {
        catalog.configure(&self.backends).map_err(|e| {
            let key = match &e.error.key {
                Some(k) => format!("{}.{k}", e.backend),
                None => format!("[{}]", e.backend),
            };
            self.err(&key, e.error.message)
        })
    }

    /// The mesh source, with relative paths resolved against the scene's
    /// directory.
    pub fn mesh_source(&self) -> Result<MeshSource, SceneError> {
        match (&self.mesh.file, &self.mesh.generate) {
            (Some(_), Some(_)) => Err(self.err("mesh", "give either file or generate, not both")),
            (None, None) => Err(self.err(
                "mesh",
                "needs file = \"MESH.h5\" or generate = \"GEOMETRY\" (or give the mesh with --mesh FILE)",
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
                let range = generate::MIN_TARGET_NODES..=generate::MAX_TARGET_NODES;
                if !range.contains(&n) {
                    return Err(self.err(
                        "mesh.nodes",
                        format!(
                            "must lie in {}..={}, got {n}",
                            range.start(),
                            range.end()
                        ),
                    ));
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

    /// What to do with mesh components no Dirichlet boundary touches.
    pub fn component_policy(&self) -> Result<ComponentPolicy, SceneError> {
        match self.mesh.components.as_deref() {
            None => Ok(ComponentPolicy::default()),
            Some(c) => ComponentPolicy::parse(c).ok_or_else(|| {
                self.err(
                    "mesh.components",
                    format!("must be \"warn\" or \"refuse\", got \"{c}\""),
                )
            }),
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
            components: self.component_policy()?,
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
    pub fn phase_plan(&self) -> PhasePlan {
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
}
