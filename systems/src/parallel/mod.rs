//! The multi-threaded CPU executor (rayon): the seed's "threaded" and
//! "Numba" rows. Every phase runs on a dedicated rayon pool of the
//! configured size; results equal the serial executor's bit for bit.
//!
//! Assembly has two strategies:
//! - [`AssemblyStrategy::BatchedCoo`] (seed 2): element batches write
//!   upper-triangle triplets into their own buffers; the buffers are merged
//!   into CSR by a counting sort on rows and a per-row sort that sums
//!   duplicates. No precomputed pattern.
//! - [`AssemblyStrategy::DirectCsr`] (seed 4): the pattern and slot maps are
//!   built once (in parallel over row blocks and elements); element matrices
//!   are computed in parallel, then added straight into the CSR values in
//!   one sequential stream in element order, so the matrix equals the
//!   serial one bit for bit. No triplets, no sort, no atomics.

mod cg;

pub use cg::ParallelKernels;

use crate::boundary;
use crate::common::{self, ProgressHook};
use crate::components::*;
use crate::element::{self, NODES, SYM_ENTRIES, SYM_PAIRS};
use crate::mesh::MeshError;
use crate::pipeline::{Backend, Phase, PhaseSystems, PipelineError, fail};
use crate::solver::Exec;
use crate::sparse::{self, SymCsr};
use bevy_ecs::prelude::*;
use rayon::prelude::*;
use std::sync::Arc;

/// How the parallel backend assembles the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssemblyStrategy {
    /// Per-batch triplet buffers merged into CSR (seed 2).
    BatchedCoo {
        /// Elements per batch.
        batch: usize,
    },
    /// Coloured direct scatter into a precomputed CSR (seed 4).
    DirectCsr,
}

impl AssemblyStrategy {
    /// Scene / CLI names.
    pub const NAMES: &'static [&'static str] = &["direct-csr", "batched-coo"];

    /// Parses a name; `batch` is used by `batched-coo`.
    pub fn parse(s: &str, batch: usize) -> Option<Self> {
        match s {
            "direct-csr" => Some(Self::DirectCsr),
            "batched-coo" => Some(Self::BatchedCoo { batch }),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Self::DirectCsr => "direct-csr",
            Self::BatchedCoo { .. } => "batched-coo",
        }
    }
}

/// The parallel backend plugin and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    /// Threads (0 = one per core).
    pub threads: usize,
    /// Assembly strategy.
    pub strategy: AssemblyStrategy,
}

impl Default for Parallel {
    fn default() -> Self {
        Self {
            threads: 0,
            strategy: AssemblyStrategy::DirectCsr,
        }
    }
}

/// The pool and settings the parallel systems use.
#[derive(Resource, Clone)]
pub struct ParallelRuntime {
    /// The rayon pool of the configured size.
    pub pool: Arc<rayon::ThreadPool>,
    /// Settings.
    pub settings: Parallel,
}

impl Backend for Parallel {
    fn name(&self) -> &'static str {
        "parallel"
    }

    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => quadrature.into_configs(),
            Phase::Assembly => match self.strategy {
                AssemblyStrategy::DirectCsr => {
                    (build_pattern, assemble_direct).chain().into_configs()
                }
                AssemblyStrategy::BatchedCoo { .. } => assemble_coo.into_configs(),
            },
            Phase::Boundary => apply_boundary.into_configs(),
            Phase::Solve => solve.into_configs(),
            Phase::Post => post.into_configs(),
        })
    }

    fn prepare(&self, world: &mut World) -> Result<(), PipelineError> {
        if let AssemblyStrategy::BatchedCoo { batch: 0 } = self.strategy {
            return Err(PipelineError::Backend {
                backend: "parallel".into(),
                message: "the batch size of batched-coo assembly must be at least 1".into(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("quadflow-{i}"))
            .build()
            .map_err(|e| PipelineError::Backend {
                backend: "parallel".into(),
                message: format!("cannot start {} threads: {e}", self.threads),
            })?;
        world.insert_resource(ParallelRuntime {
            pool: Arc::new(pool),
            settings: *self,
        });
        Ok(())
    }
}

/// Quadrature in parallel over elements.
pub fn quadrature(
    rt: Res<ParallelRuntime>,
    mut q: Query<(&ElementIndex, &ElementCoords, &Nodes, &mut Quadrature)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::quadrature").entered();
    let mut items: Vec<_> = q.iter_mut().collect();
    let bad = rt.pool.install(|| {
        items
            .par_iter_mut()
            .filter_map(|(idx, c, nodes, qd)| match element::quad_data(&c.0) {
                Ok(d) => {
                    qd.0 = d;
                    None
                }
                Err((point, det)) => Some(MeshError::Degenerate {
                    element: idx.0 as usize,
                    nodes: nodes.0,
                    point,
                    det,
                }),
            })
            .min_by_key(|e| match e {
                MeshError::Degenerate { element, .. } => *element,
                _ => usize::MAX,
            })
    });
    if let Some(e) = bad {
        fail(&mut failure, e);
    }
}

/// The sparsity pattern built in parallel over row blocks.
pub fn pattern_parallel(
    n: usize,
    elements: &[[u32; NODES]],
) -> Result<SymCsr, sparse::PatternTooLarge> {
    let (ptr, adj) = sparse::node_elements(n, elements);
    let blocks = (rayon::current_num_threads() * 4).max(1);
    let step = n.div_ceil(blocks).max(1);
    let parts: Vec<(Vec<u32>, Vec<u32>)> = (0..n.div_ceil(step))
        .into_par_iter()
        .map(|b| {
            let rows = b * step..((b + 1) * step).min(n);
            let mut mark = vec![u32::MAX; n];
            let mut col = Vec::with_capacity(rows.len() * 12);
            let mut len = Vec::with_capacity(rows.len());
            sparse::pattern_rows(rows, elements, &ptr, &adj, &mut mark, &mut col, &mut len);
            (col, len)
        })
        .collect();
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    let mut col = Vec::with_capacity(total);
    let mut len = Vec::with_capacity(n);
    for (c, l) in parts {
        col.extend_from_slice(&c);
        len.extend_from_slice(&l);
    }
    SymCsr::from_row_lengths(n, &len, col)
}

/// Direct CSR, step 1: pattern and slot maps (parallel).
pub fn build_pattern(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    mut q: Query<(&Nodes, &mut Slots)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::pattern").entered();
    let k = match rt
        .pool
        .install(|| pattern_parallel(mesh.0.nodes(), &mesh.0.elements))
    {
        Ok(k) => k,
        Err(e) => return fail(&mut failure, e),
    };
    {
        let _s = tracing::info_span!("parallel::slot_maps").entered();
        let mut items: Vec<_> = q.iter_mut().collect();
        rt.pool.install(|| {
            items
                .par_iter_mut()
                .for_each(|(nodes, slots)| slots.0 = sparse::slot_map(&k, &nodes.0))
        });
    }
    sys.nnz = k.full_nnz();
    sys.f = vec![0.0; k.n];
    sys.k = k;
}

/// Direct CSR, step 2: element matrices (and loads) computed in parallel
/// into a buffer, then added into the CSR values through the slot maps in
/// one sequential stream in element order: no races, no atomics, and every
/// entry receives its contributions in the serial executor's order, so the
/// matrix is bit-for-bit the serial one for any thread count. (Two race-free
/// parallel scatters were tried and measured slower on 2 cores: row owners
/// each streaming all elements, 30 ms, and a per-row gather through the
/// node-to-element adjacency, 45 ms, against 8 ms for this stream on
/// `y_tube_195k`.)
pub fn assemble_direct(
    rt: Res<ParallelRuntime>,
    mut sys: ResMut<LinearSystem>,
    physics: Res<Physics>,
    q: Query<(&Nodes, &ElementCoords, &Quadrature, &Slots)>,
) {
    let _s = tracing::info_span!("parallel::element_scatter").entered();
    // element order = query order (entities were spawned in element order)
    let items: Vec<_> = q.iter().collect();
    let source = &physics.source;
    let (ke, fe): (Vec<[f64; SYM_ENTRIES]>, Vec<Option<[f64; NODES]>>) = rt.pool.install(|| {
        let _s = tracing::info_span!("parallel::element_kernels").entered();
        items
            .par_iter()
            .with_min_len(256)
            .map(|(_, c, qd, _)| {
                (
                    element::stiffness_sym(&qd.0),
                    common::element_load(source, &c.0, &qd.0),
                )
            })
            .unzip()
    });
    let _s = tracing::info_span!("parallel::scatter").entered();
    let LinearSystem { k, f, .. } = &mut *sys;
    let val = &mut k.val;
    // one sequential stream over the precomputed element matrices, in
    // element order (the serial executor's summation order)
    for ((item, ke), fe) in items.iter().zip(&ke).zip(&fe) {
        for (s, v) in item.3.0.iter().zip(ke) {
            val[*s as usize] += v;
        }
        if let Some(fe) = fe {
            for (a, v) in fe.iter().enumerate() {
                f[item.0.0[a] as usize] += v;
            }
        }
    }
}

/// Merges upper-triangle triplets into CSR: counting sort on rows, then a
/// per-row sort on columns summing duplicates. Every row gets a diagonal.
pub fn coo_to_csr(
    n: usize,
    batches: &[Vec<(u32, u32, f64)>],
) -> Result<SymCsr, sparse::PatternTooLarge> {
    let mut cnt = vec![0u32; n + 1];
    for b in batches {
        for &(i, _, _) in b {
            cnt[i as usize + 1] += 1;
        }
    }
    for i in 0..n {
        // room for a diagonal a row may lack (unused nodes)
        cnt[i + 1] += cnt[i] + 1;
    }
    let mut fill = cnt.clone();
    let total = cnt[n] as usize;
    let mut buf = vec![(0u32, 0.0f64); total];
    for (i, slot) in fill.iter_mut().take(n).enumerate() {
        buf[*slot as usize] = (i as u32, 0.0);
        *slot += 1;
    }
    for b in batches {
        for &(i, j, v) in b {
            let s = &mut fill[i as usize];
            buf[*s as usize] = (j, v);
            *s += 1;
        }
    }
    // sort and reduce each row in parallel
    let mut rows: Vec<&mut [(u32, f64)]> = Vec::with_capacity(n);
    let mut rest = &mut buf[..];
    for i in 0..n {
        let (head, tail) = rest.split_at_mut((cnt[i + 1] - cnt[i]) as usize);
        rows.push(head);
        rest = tail;
    }
    let lens: Vec<u32> = rows
        .par_iter_mut()
        .map(|r| {
            // stable: duplicates stay in element order, as serial sums them
            r.sort_by_key(|e| e.0);
            let mut w = 0;
            for k in 0..r.len() {
                if k > 0 && r[k].0 == r[w - 1].0 {
                    r[w - 1].1 += r[k].1;
                } else {
                    r[w] = r[k];
                    w += 1;
                }
            }
            w as u32
        })
        .collect();
    let mut col = Vec::with_capacity(total);
    let mut val = Vec::with_capacity(total);
    for (r, &l) in rows.iter().zip(&lens) {
        for &(c, v) in &r[..l as usize] {
            col.push(c);
            val.push(v);
        }
    }
    let mut k = SymCsr::from_row_lengths(n, &lens, col)?;
    k.val = val;
    Ok(k)
}

/// Batched COO assembly: batches of elements fill their own triplet
/// buffers in parallel; the buffers are merged into CSR.
pub fn assemble_coo(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    physics: Res<Physics>,
    q: Query<(&Nodes, &ElementCoords, &Quadrature)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::batched_coo").entered();
    let AssemblyStrategy::BatchedCoo { batch } = rt.settings.strategy else {
        unreachable!("assemble_coo runs only with the batched-coo strategy")
    };
    let items: Vec<_> = q.iter().collect();
    let n = mesh.0.nodes();
    let source = &physics.source;
    type Batches = (Vec<Vec<(u32, u32, f64)>>, Vec<Vec<(u32, f64)>>);
    let (batches, loads): Batches = rt.pool.install(|| {
        let _s = tracing::info_span!("parallel::batch_kernels").entered();
        items
            .par_chunks(batch)
            .map(|chunk| {
                let mut trip = Vec::with_capacity(chunk.len() * SYM_ENTRIES);
                let mut load = Vec::new();
                for (nodes, c, qd) in chunk {
                    let ke = element::stiffness_sym(&qd.0);
                    for (kk, &(a, b)) in SYM_PAIRS.iter().enumerate() {
                        let (i, j) = (nodes.0[a as usize], nodes.0[b as usize]);
                        trip.push((i.min(j), i.max(j), ke[kk]));
                    }
                    if let Some(fe) = common::element_load(source, &c.0, &qd.0) {
                        load.extend(nodes.0.iter().zip(fe).map(|(&i, v)| (i, v)));
                    }
                }
                (trip, load)
            })
            .unzip()
    });
    let k = {
        let _s = tracing::info_span!("parallel::coo_to_csr").entered();
        match rt.pool.install(|| coo_to_csr(n, &batches)) {
            Ok(k) => k,
            Err(e) => return fail(&mut failure, e),
        }
    };
    let mut f = vec![0.0; n];
    for l in &loads {
        for &(i, v) in l {
            f[i as usize] += v;
        }
    }
    sys.nnz = k.full_nnz();
    sys.f = f;
    sys.k = k;
}

/// Boundary: selection resolved with a parallel edge scan, contributions
/// added (they touch a few hundred entries).
pub fn apply_boundary(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    bc: Res<Boundaries>,
    mut sys: ResMut<LinearSystem>,
    mut report: ResMut<BoundaryReport>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::boundary").entered();
    let resolved = match rt
        .pool
        .install(|| boundary::resolve_parallel(&mesh.0, &bc.0))
    {
        Ok(r) => r,
        Err(e) => return fail(&mut failure, e),
    };
    let LinearSystem { k, f, .. } = &mut *sys;
    *report = common::apply_boundary(&mesh.0, &bc.0, &resolved, k, f);
}

/// Solve with the multi-threaded fused CG kernels.
pub fn solve(
    rt: Res<ParallelRuntime>,
    sys: Res<LinearSystem>,
    settings: Res<SolverSettings>,
    mut hook: ResMut<ProgressHook>,
    mut solution: ResMut<Solution>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::solve").entered();
    let mut kernels = ParallelKernels::new(rt.pool.clone());
    rt.pool.install(|| {
        common::solve_into(
            &sys,
            &settings,
            &mut kernels,
            Exec::Parallel,
            &mut hook,
            &mut solution,
            &mut failure,
        )
    });
}

/// Post-processing in parallel over elements.
pub fn post(
    rt: Res<ParallelRuntime>,
    solution: Res<Solution>,
    physics: Res<Physics>,
    mut q: Query<(&Nodes, &ElementCoords, &mut Fields)>,
) {
    let _s = tracing::info_span!("parallel::post").entered();
    let u = &solution.u;
    let (p0, half_rho) = (physics.p0, physics.rho / 2.0);
    let mut items: Vec<_> = q.iter_mut().collect();
    rt.pool.install(|| {
        items
            .par_iter_mut()
            .with_min_len(512)
            .for_each(|(nodes, c, out)| {
                let ue = nodes.0.map(|v| u[v as usize]);
                out.0 = element::post(&c.0, &ue, p0, half_rho);
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(nx: usize) -> Vec<[u32; NODES]> {
        // a strip of nx unit squares on a 9-node lattice of width 2nx+1
        let w = 2 * nx as u32 + 1;
        (0..nx as u32)
            .map(|e| {
                let i = 2 * e;
                [
                    i,
                    i + 2,
                    2 * w + i + 2,
                    2 * w + i,
                    i + 1,
                    w + i + 2,
                    2 * w + i + 1,
                    w + i,
                ]
            })
            .collect()
    }

    #[test]
    fn coo_merge_equals_pattern_and_sums() {
        let els = strip(7);
        let n = 3 * 15 + 2; // two unused nodes at the end
        let pat = SymCsr::pattern(n, &els).unwrap();
        let mut trip = Vec::new();
        for el in &els {
            for &(a, b) in SYM_PAIRS.iter() {
                let (i, j) = (el[a as usize], el[b as usize]);
                trip.push((i.min(j), i.max(j), 1.0));
            }
        }
        let k = coo_to_csr(n, &[trip[..100].to_vec(), trip[100..].to_vec()]).unwrap();
        assert_eq!(k.rowptr, pat.rowptr);
        assert_eq!(k.col, pat.col);
        // shared-node diagonal entries are summed twice
        let shared = els[0][1] as usize;
        assert_eq!(k.val[k.diag_slot(shared)], 2.0);
        assert_eq!(k.val[k.diag_slot(n - 1)], 0.0);
        assert_eq!(pattern_parallel(n, &els).unwrap(), pat);
    }
}
