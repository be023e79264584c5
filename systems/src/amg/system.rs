//! The equilibrated system AMG-CG runs on, and the whole solve.

use super::pcg::amg_pcg;
use super::settings::AmgSettings;
use super::setup::Hierarchy;
use crate::exec::Exec;
use crate::solver::{CgSettings, EquilibratedSystem, Scaling, SolveError, SolveStats, residuals};
use crate::sparse::{Csr, SymCsr};
use std::ops::Deref;
use std::time::Instant;

/// The system AMG-CG runs on: the equilibrated, decoupled, renumbered
/// system of [`EquilibratedSystem`] (the one scaling and RCM order every
/// iterative method shares) with its matrix as a full CSR (both
/// triangles), as the setup and the cycle read it; the [`Scaling`] is
/// reached through `Deref`.
#[derive(Debug, Clone)]
pub struct AmgSystem {
    /// `D K D` on the coupled rows, renumbered, both triangles.
    pub a: Csr,
    /// The scaling and the rows.
    pub scaling: Scaling,
}

impl Deref for AmgSystem {
    type Target = Scaling;
    fn deref(&self) -> &Scaling {
        &self.scaling
    }
}

impl AmgSystem {
    /// Equilibrates `K u = f`, splits off decoupled rows, renumbers
    /// ([`EquilibratedSystem::new`]), and expands the matrix to both
    /// triangles.
    pub fn new(k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        Self::new_with(Exec::current(), k, f)
    }

    /// [`AmgSystem::new`] on `exec` (the same bits on every executor).
    pub fn new_with(exec: Exec, k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        let (scaling, a) = EquilibratedSystem::scaling_with_full(exec, k, f)?;
        Ok(Self { a, scaling })
    }

    /// [`AmgSystem::new`] from the full (both triangles) CSR `(fp, fc,
    /// fv)` of `K` (sorted columns, every diagonal stored), as the GPU
    /// backend downloads it.
    pub fn from_full(
        n: usize,
        fp: &[u32],
        fc: &[u32],
        fv: &[f64],
        f: &[f64],
    ) -> Result<Self, SolveError> {
        assert!(fp.len() == n + 1 && f.len() == n);
        Self::new(&SymCsr::upper_of_full(fp, fc, fv), f)
    }
}

/// Full AMG-CG solve of `K u = f`: equilibrate (and decouple, renumber),
/// build the hierarchy, CG with the V-cycle ([`amg_pcg`]), unscale. `setup_seconds` covers the
/// equilibration and the hierarchy, `solve_seconds` the CG iteration.
pub fn solve_amg_cg(
    k: &SymCsr,
    f: &[f64],
    cg: &CgSettings,
    amg: &AmgSettings,
    exec: Exec,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<(Vec<f64>, SolveStats), SolveError> {
    let t0 = Instant::now();
    let (sys, h) = {
        let _s = tracing::info_span!("amg_setup", n = k.n).entered();
        let mut sys = {
            let _s = tracing::info_span!("amg_equilibrate").entered();
            AmgSystem::new_with(exec, k, f)?
        };
        let a = std::mem::take(&mut sys.a);
        let h = Hierarchy::new(exec, a, sys.near_null_space(), amg)?;
        (sys, h)
    };
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let out = {
        let _s = tracing::info_span!("amg_cg").entered();
        let check = |x: &[f64]| residuals(k, f, &sys.unscale(x)).equilibrated;
        amg_pcg(exec, &h, &sys.b, sys.b_norm, cg, &check, progress)?
    };
    let a = h.fine();
    let stats = SolveStats {
        setup_seconds: setup,
        solve_seconds: t1.elapsed().as_secs_f64(),
        decoupled_rows: sys.decoupled(),
        cg_rows: a.nrows(),
        cg_stored: (a.nnz() + a.nrows()) / 2,
        levels: h.levels(),
        operator_complexity: h.operator_complexity(),
        bytes_per_iteration: h.bytes_per_iteration(),
        ..out.stats
    };
    Ok((sys.unscale(&out.x), stats))
}
