//! Assembling a part with the engine's own phases.
//!
//! [`assemble_local`] runs the engine's quadrature, assembly and boundary
//! phases, with whichever local backend is named (serial, parallel, gpu:
//! anything registered), on a [`Part`]'s local mesh, and stops there: the
//! solve and post phases are taken by [`Hold`], a backend whose systems do
//! nothing. [`LocalSystem::from_assembled`] then keeps the rows this rank
//! owns: they equal the serial global rows bit for bit (see [`crate::part`]).

use crate::part::Part;
use bevy_ecs::prelude::*;
use quadflow_systems::amg::Csr;
use quadflow_systems::components::LinearSystem;
use quadflow_systems::pipeline::{
    Backend, Phase, PhasePlan, PhaseSystems, Pipeline, PipelineError, Registry, RunConfig,
};
use quadflow_systems::sparse::SymCsr;
use std::sync::Arc;

/// A backend that takes the solve and post phases and does nothing in
/// them: the distributed solve runs outside the local pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hold;

fn hold() {}

impl Backend for Hold {
    fn name(&self) -> &'static str {
        "mpi-hold"
    }
    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        match phase {
            Phase::Solve | Phase::Post => Some(hold.into_configs()),
            _ => None,
        }
    }
}

/// Runs the quadrature, assembly and boundary phases of the backend named
/// `local` (looked up in `registry`, which must hold `serial`) on the
/// part's mesh; returns the local matrix (every local row; the ghost rows
/// are incomplete) and right-hand side.
pub fn assemble_local(
    part: &Part,
    config: RunConfig,
    registry: &Registry,
    local: &str,
) -> Result<(SymCsr, Vec<f64>), PipelineError> {
    let mut reg = registry.clone();
    reg.register(Hold);
    let mut plan = PhasePlan::uniform(local);
    plan.set(Phase::Solve, "mpi-hold");
    plan.set(Phase::Post, "mpi-hold");
    let mut pipe = Pipeline::new(Arc::new(part.mesh.clone()), config, &reg, &plan)?;
    pipe.run()?;
    let sys = std::mem::take(&mut *pipe.world.resource_mut::<LinearSystem>());
    Ok((sys.k, sys.f))
}

/// The rows a rank owns of the global system, as assembled locally.
#[derive(Debug, Clone)]
pub struct LocalSystem {
    /// Owned rows of `K`, both triangles: `owned` rows, columns in local
    /// node numbering (owned nodes, then ghosts), sorted.
    pub k: Csr,
    /// `f` on the owned rows.
    pub f: Vec<f64>,
}

impl LocalSystem {
    /// Keeps the owned rows of a locally assembled system.
    pub fn from_assembled(part: &Part, k: &SymCsr, f: &[f64]) -> Self {
        let (rp, col, val) = k.to_full();
        let o = part.owned;
        let end = rp[o] as usize;
        Self {
            k: Csr::new(
                o,
                k.n,
                rp[..=o].iter().map(|&v| v as usize).collect(),
                col[..end].to_vec(),
                val[..end].to_vec(),
            ),
            f: f[..o].to_vec(),
        }
    }

    /// Assembles with the serial backend only.
    pub fn assemble_serial(part: &Part, config: RunConfig) -> Result<Self, PipelineError> {
        let (k, f) = assemble_local(part, config, &Registry::with_serial(), "serial")?;
        Ok(Self::from_assembled(part, &k, &f))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::part::build_parts;
    use crate::partition::{Method, partition, tests::lattice};
    use quadflow_systems::boundary::{
        BoundaryConfig, DirichletPart, RobinPart, Selector, Side, Value,
    };

    /// Serial global system of `mesh` through the same pipeline.
    pub(crate) fn global_system(
        mesh: &quadflow_systems::mesh::Mesh,
        config: RunConfig,
    ) -> (SymCsr, Vec<f64>) {
        let mut reg = Registry::with_serial();
        reg.register(Hold);
        let mut plan = PhasePlan::uniform("serial");
        plan.set(Phase::Solve, "mpi-hold");
        plan.set(Phase::Post, "mpi-hold");
        let mut pipe = Pipeline::new(Arc::new(mesh.clone()), config, &reg, &plan).unwrap();
        pipe.run().unwrap();
        let sys = std::mem::take(&mut *pipe.world.resource_mut::<LinearSystem>());
        (sys.k, sys.f)
    }

    /// Asserts that every owned row of every part equals the global row
    /// bit for bit (columns mapped to global ids).
    pub(crate) fn assert_rows_equal(
        mesh: &quadflow_systems::mesh::Mesh,
        parts: &[Part],
        config: &RunConfig,
    ) {
        let (gk, gf) = global_system(mesh, config.clone());
        let (grp, gcol, gval) = gk.to_full();
        for part in parts {
            let ls = LocalSystem::assemble_serial(part, config.clone()).unwrap();
            for l in 0..part.owned {
                let g = part.node_gid[l] as usize;
                let (c, v) = ls.k.row(l);
                let mut local: Vec<(u32, u64)> = c
                    .iter()
                    .zip(v)
                    .map(|(&j, &x)| (part.node_gid[j as usize], x.to_bits()))
                    .collect();
                local.sort_unstable();
                let r = grp[g] as usize..grp[g + 1] as usize;
                let global: Vec<(u32, u64)> = gcol[r.clone()]
                    .iter()
                    .zip(&gval[r])
                    .map(|(&j, &x)| (j, x.to_bits()))
                    .collect();
                assert_eq!(local, global, "part {} row {g}", part.rank);
                assert_eq!(
                    ls.f[l].to_bits(),
                    gf[g].to_bits(),
                    "part {} f[{g}]",
                    part.rank
                );
            }
        }
    }

    #[test]
    fn owned_rows_equal_serial_rows_bit_for_bit() {
        let m = lattice(10, 4, true);
        let mut cfg = RunConfig::default();
        for k in 1..=4 {
            let parts = build_parts(&m, &partition(&m, k, Method::Rcb).unwrap());
            assert_rows_equal(&m, &parts, &cfg);
        }
        // Robin with p != 0 on another side, a second Dirichlet part with
        // a function, a box selector, a source
        cfg.boundaries = BoundaryConfig {
            robin: vec![RobinPart {
                name: "bottom".into(),
                select: Selector::Side(Side::YMin),
                p: 0.7,
                gamma: 1.5,
            }],
            dirichlet: vec![
                DirichletPart {
                    name: "outlet".into(),
                    select: Selector::Side(Side::XMax),
                    value: Value::Constant(0.25),
                },
                DirichletPart {
                    name: "box".into(),
                    select: Selector::Box {
                        x0: 0.0,
                        x1: 1.0,
                        y0: 0.0,
                        y1: 0.6,
                    },
                    value: Value::Function(Arc::new(|x, y| x - 2.0 * y)),
                },
            ],
            ..Default::default()
        };
        cfg.physics.source = quadflow_systems::components::Source::Constant(0.3);
        for k in [2, 3, 7] {
            let parts = build_parts(&m, &partition(&m, k, Method::Rcb).unwrap());
            assert_rows_equal(&m, &parts, &cfg);
        }
    }
}
