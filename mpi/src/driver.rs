//! A whole distributed run: rank 0 holds the mesh, partitions it and sends
//! every rank its part; every rank assembles its rows with a local
//! backend's phases and takes part in the distributed solve; `u` comes
//! back to rank 0.
//!
//! Errors are agreed ([`crate::comm::agree`]): when any rank fails at a
//! stage (bad partition, assembly, solve), every rank returns the message
//! of the lowest failing rank (rank 0's when rank 0 holds the mesh and
//! finds the problem), so that no rank waits forever in a collective the
//! others have left.

use crate::assemble::{LocalSystem, assemble_local};
use crate::comm::{self, Comm};
use crate::part::{Part, build_parts};
use crate::partition::{self, Method, Quality};
use quadflow_systems::components::SolverMethod;
use quadflow_systems::mesh::Mesh;
use quadflow_systems::pipeline::{Registry, RunConfig};
use quadflow_systems::solver::SolveStats;
use std::time::Instant;

/// How rank 0 splits the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// By a partitioner.
    Method(Method),
    /// By a given element-to-part map (tests, or a partition computed
    /// elsewhere).
    Explicit(Vec<u32>),
}

/// Rank 0 validates the boundary selection on the whole mesh, partitions
/// and builds the parts; every rank receives its own (collective).
/// `mesh` is read on `root` only. Returns the part and, on `root`, the
/// partition's quality.
pub fn distribute(
    comm: &dyn Comm,
    root: usize,
    mesh: Option<&Mesh>,
    split: &Split,
    config: &RunConfig,
) -> Result<(Part, Option<Quality>), String> {
    let k = comm.size();
    let mut staged: Option<(Vec<Vec<u8>>, Quality)> = None;
    let mine = if comm.rank() == root {
        let build = || -> Result<(Vec<Vec<u8>>, Quality), String> {
            let mesh = mesh.ok_or("the root rank has no mesh")?;
            // the boundary must select something on the whole mesh; a part
            // may well select nothing
            quadflow_systems::boundary::resolve(mesh, &config.boundaries)
                .map_err(|e| e.to_string())?;
            let p = match split {
                Split::Method(m) => partition::partition(mesh, k, *m),
                Split::Explicit(map) => partition::from_element_parts(mesh, k, map.clone()),
            }
            .map_err(|e| e.to_string())?;
            let q = partition::quality(mesh, &p);
            let parts = build_parts(mesh, &p);
            Ok((parts.iter().map(Part::encode).collect(), q))
        };
        match build() {
            Ok(s) => {
                staged = Some(s);
                None
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    comm::agree(comm, mine)?;
    let (bufs, q) = match staged {
        Some((b, q)) => (Some(b), Some(q)),
        None => (None, None),
    };
    let buf = comm::scatter(comm, root, bufs);
    Ok((Part::decode(&buf), q))
}

/// Settings of a distributed run.
#[derive(Debug, Clone)]
pub struct DistSettings {
    /// Physics, boundaries, solver settings (method `cg-jacobi` or
    /// `amg-cg`).
    pub run: RunConfig,
    /// How the mesh is split.
    pub split: Split,
    /// Local backend for quadrature, assembly and boundary (registered in
    /// the registry given to [`run`]).
    pub local: String,
    /// Distributed AMG parameters.
    pub amg: crate::amg::DistAmgSettings,
}

impl Default for DistSettings {
    fn default() -> Self {
        Self {
            run: RunConfig::default(),
            split: Split::Method(Method::Rcb),
            local: "serial".into(),
            amg: Default::default(),
        }
    }
}

/// What a distributed run produced.
#[derive(Debug, Clone)]
pub struct DistRun {
    /// `u` in global numbering, on the root rank only.
    pub u: Option<Vec<f64>>,
    /// Solver figures (the same on every rank).
    pub stats: SolveStats,
    /// `||f - K u|| / ||f||` of the whole system.
    pub true_residual: f64,
    /// The partition's quality, on the root rank only.
    pub quality: Option<Quality>,
    /// Seconds: distribute, assemble, solve (this rank's clock).
    pub seconds: [f64; 3],
    /// This rank's owned nodes, ghosts and local elements.
    pub local: [usize; 3],
}

/// Runs the whole pipeline over the ranks (collective). `mesh` on `root`
/// only.
pub fn run(
    comm: &dyn Comm,
    root: usize,
    mesh: Option<&Mesh>,
    settings: &DistSettings,
    registry: &Registry,
) -> Result<DistRun, String> {
    let t0 = Instant::now();
    let (part, quality) = distribute(comm, root, mesh, &settings.split, &settings.run)?;
    let t1 = Instant::now();
    let assembled = assemble_local(&part, settings.run.clone(), registry, &settings.local);
    let mine = assembled
        .as_ref()
        .err()
        .map(|e| format!("rank {}: {e}", comm.rank()));
    comm::agree(comm, mine)?;
    let (k, f) = assembled.expect("agreed");
    let sys = LocalSystem::from_assembled(&part, &k, &f);
    drop(k);
    let t2 = Instant::now();
    let cg = &settings.run.solver.cg;
    let sol = match settings.run.solver.method {
        SolverMethod::CgJacobi => {
            crate::cg::solve_cg_jacobi(comm, &part, &sys, cg, &mut |_, _| true)
        }
        SolverMethod::AmgCg => crate::amg::solve_amg_cg(
            comm,
            &part,
            &sys,
            cg,
            &settings.run.solver.amg,
            &settings.amg,
        ),
        SolverMethod::Cholesky => {
            return Err("the distributed solve runs cg-jacobi or amg-cg, not cholesky".into());
        }
    };
    // solver errors are reached by every rank alike (they follow from
    // reduced values), but agree anyway
    let mine = sol.as_ref().err().map(|e| e.to_string());
    comm::agree(comm, mine)?;
    let sol = sol.expect("agreed");
    let t3 = Instant::now();
    if !sol.stats.converged && !settings.run.solver.allow_unconverged {
        return Err(format!(
            "the solver did not converge: {} iterations reached the cap with relative residual {:.3e} (target {:e})",
            sol.stats.iterations, sol.stats.recurrence_residual, cg.rtol
        ));
    }
    let u = crate::cg::gather_u(comm, root, &part, &sol.u);
    Ok(DistRun {
        u,
        stats: sol.stats,
        true_residual: sol.true_residual,
        quality,
        seconds: [
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ],
        local: [part.owned, part.ghosts(), part.element_gid.len()],
    })
}
