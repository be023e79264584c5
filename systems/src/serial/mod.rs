//! The single-threaded executor (execution model 1, the "CPU
//! baseline" of `docs/execution-models.md`): implements
//! every phase and is the fallback of every other backend.

use crate::boundary;
use crate::common;
use crate::components::*;
use crate::config::{BackendKind, SettingError, Table};
use crate::element;
use crate::mesh::MeshError;
use crate::pipeline::{Backend, Phase, PhaseSystems, Registry};
use crate::solver::{Exec, SerialKernels};
use crate::sparse::{SlotWriter, SymCsr};
use bevy_ecs::prelude::*;
use std::sync::Arc;

/// The serial backend plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl Backend for Serial {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => quadrature.into_configs(),
            Phase::Assembly => (build_pattern, assemble).chain().into_configs(),
            Phase::Boundary => apply_boundary.into_configs(),
            Phase::Solve => solve.into_configs(),
            Phase::Post => post.into_configs(),
        })
    }

    fn single_threaded(&self) -> bool {
        true
    }
}

impl BackendKind for Serial {
    fn name(&self) -> &'static str {
        "serial"
    }

    fn about(&self) -> &'static str {
        "single-threaded executor of every phase (the reference; the default fallback)"
    }

    fn configure(
        &self,
        section: &Table,
        _configured: &Registry,
    ) -> Result<Arc<dyn Backend>, SettingError> {
        if let Some(k) = section.keys().next() {
            return Err(SettingError::key(k, "the serial backend has no settings"));
        }
        Ok(Arc::new(Serial))
    }
}

impl Registry {
    /// A registry with the serial backend only, which is also the
    /// fallback.
    pub fn with_serial() -> Self {
        let mut r = Self::new("serial");
        r.register(Serial);
        r
    }
}

/// Quadrature: geometric factors of every element at the 3 x 3 points.
pub fn quadrature(
    mut q: Query<(&ElementIndex, &ElementCoords, &Nodes, &mut Quadrature)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("serial::quadrature").entered();
    for (idx, c, nodes, mut qd) in &mut q {
        match element::quad_data(&c.0) {
            Ok(d) => qd.0 = d,
            Err((point, det)) => {
                fail(
                    &mut failure,
                    MeshError::Degenerate {
                        element: idx.0 as usize,
                        nodes: nodes.0,
                        point,
                        det,
                    },
                );
                return;
            }
        }
    }
}

/// Assembly, step 1: the sparsity pattern from the connectivity, and each
/// element's slot map into it (written while the rows are built).
pub fn build_pattern(
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    mut q: Query<(&ElementIndex, &mut Slots)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("serial::pattern").entered();
    let elements = &mesh.0.elements;
    let k = {
        let mut items: Vec<_> = q.iter_mut().collect();
        let slots = SlotWriter::scattered(
            elements.len(),
            items.iter_mut().map(|(idx, s)| (idx.0 as usize, &mut s.0)),
        );
        match SymCsr::pattern_into_slots(mesh.0.nodes(), elements, &slots) {
            Ok(k) => k,
            Err(e) => return fail(&mut failure, e),
        }
    };
    sys.nnz = k.full_nnz();
    sys.f = vec![0.0; k.n];
    sys.k = k;
}

/// Assembly, step 2: element matrices (and loads) scattered into the CSR
/// values through the slot maps, in element order.
pub fn assemble(
    mut sys: ResMut<LinearSystem>,
    physics: Res<Physics>,
    q: Query<(&Nodes, &ElementCoords, &Quadrature, &Slots)>,
) {
    let _s = tracing::info_span!("serial::element_scatter").entered();
    let LinearSystem { k, f, .. } = &mut *sys;
    let val = &mut k.val;
    for (nodes, c, qd, slots) in &q {
        let ke = element::stiffness_sym(&qd.0);
        for (s, v) in slots.0.iter().zip(ke.iter()) {
            val[*s as usize] += v;
        }
        if let Some(fe) = common::element_load(&physics.source, &c.0, &qd.0) {
            for (a, v) in fe.iter().enumerate() {
                f[nodes.0[a] as usize] += v;
            }
        }
    }
}

/// Boundary: resolve the selection, add Robin edges and penalties.
pub fn apply_boundary(
    mesh: Res<MeshRes>,
    bc: Res<Boundaries>,
    mut sys: ResMut<LinearSystem>,
    mut report: ResMut<BoundaryReport>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("serial::boundary").entered();
    let resolved = match boundary::resolve(&mesh.0, &bc.0) {
        Ok(r) => r,
        Err(e) => return fail(&mut failure, e),
    };
    let LinearSystem { k, f, .. } = &mut *sys;
    *report = common::apply_boundary(&mesh.0, &bc.0, &resolved, k, f);
}

/// Solve: the configured method with single-threaded kernels.
pub fn solve(
    sys: Res<LinearSystem>,
    settings: Res<SolverSettings>,
    mut hook: ResMut<ProgressHook>,
    mut solution: ResMut<Solution>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("serial::solve").entered();
    common::solve_into(
        &sys,
        &settings,
        &mut SerialKernels::default(),
        Exec::Serial,
        &mut hook,
        &mut solution,
        &mut failure,
    );
}

/// Post-processing: velocity, speed and pressure of every element, into
/// [`ElementOutputs`].
pub fn post(
    solution: Res<Solution>,
    physics: Res<Physics>,
    mesh: Res<MeshRes>,
    mut outputs: ResMut<ElementOutputs>,
    q: Query<(&ElementIndex, &Nodes, &ElementCoords)>,
) {
    let _s = tracing::info_span!("serial::post").entered();
    let u = &solution.u;
    let half_rho = physics.rho / 2.0;
    let places = common::output_places(&mut outputs, mesh.0.elements.len());
    for (idx, nodes, c) in &q {
        let ue = nodes.0.map(|v| u[v as usize]);
        let f = element::post(&c.0, &ue, physics.p0, half_rho);
        // SAFETY: one thread.
        unsafe { common::put_fields(&places, idx.0 as usize, &f) };
    }
}
