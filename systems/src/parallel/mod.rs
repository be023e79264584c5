//! The multi-threaded CPU executor (rayon): execution models 2
//! ("threaded") and 4 ("Numba") of `docs/execution-models.md`. Every phase runs on a dedicated rayon pool of the
//! configured size; results equal the serial executor's bit for bit.
//!
//! Assembly has two strategies:
//! - [`AssemblyStrategy::BatchedCoo`] (model 2): element batches write
//!   upper-triangle triplets into their own buffers; the buffers are merged
//!   into CSR by a counting sort on rows and a per-row sort that sums
//!   duplicates. No precomputed pattern.
//! - [`AssemblyStrategy::DirectCsr`] (model 4, the default): the pattern
//!   and the element slot maps are built once, together and in parallel
//!   ([`pattern_parallel`]: a parallel node-to-element adjacency, then
//!   blocks of rows, each row gathered, sorted and deduplicated from the
//!   elements around its node, its pairs' slots written into the elements'
//!   maps as the row is built). Element matrices are then computed in
//!   parallel into a small ring of chunks and added straight into the CSR
//!   values by one stream in element order that runs alongside
//!   ([`assemble_direct`]), so the matrix equals the serial one bit for
//!   bit. No triplets, no global sort, no atomics on values.
//! - [`AssemblyStrategy::DirectCsrOwner`] (model 4, owner-computes): the
//!   nodes (rows) are split among the threads once per pattern
//!   ([`OwnerSplit`]: recursive coordinate bisection, so a part is a
//!   compact patch of the mesh whatever its numbering); the pattern and the
//!   slot maps are built over that split, each thread building the rows it
//!   owns ([`pattern_owner`]); each thread then computes the element
//!   matrices of every element touching its rows, in element order, and
//!   adds only the entries of its rows ([`assemble_owner`]). Elements on
//!   the border between parts are computed by both. No ordering between
//!   threads, no atomics, and every entry sums its contributions in element
//!   order: bit for bit the serial matrix, for any thread count.

mod assembly;
mod cg;
mod owner;
mod pattern;

pub use assembly::{assemble_coo, assemble_direct, assemble_owner, coo_to_csr};
pub use cg::{ParallelKernels, split_by_bytes};
pub use owner::{ALL_OWNED, MAX_PARTS, OwnedElement, OwnerSplit, pattern_owner};
pub use pattern::{
    BlockOffsets, build_pattern, build_pattern_owner, node_elements_parallel, pattern_parallel,
};

use crate::boundary;
use crate::common;
use crate::components::*;
use crate::config::{self, BackendKind, Flag, FlagValue, SettingError, Table};
use crate::element;
use crate::exec::Team;
use crate::mesh::MeshError;
use crate::pipeline::{Backend, Phase, PhaseSystems, Registry};
use crate::solver::Exec;
use bevy_ecs::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How the parallel backend assembles the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssemblyStrategy {
    /// Per-batch triplet buffers merged into CSR (model 2).
    BatchedCoo {
        /// Elements per batch.
        batch: usize,
    },
    /// Direct scatter into a precomputed CSR through slot maps (model 4),
    /// the element matrices added by one stream in element order.
    DirectCsr,
    /// Direct scatter into a precomputed CSR through slot maps (model 4),
    /// owner-computes: each thread adds the rows it owns.
    DirectCsrOwner,
}

impl AssemblyStrategy {
    /// Scene / CLI names.
    pub const NAMES: &'static [&'static str] = &["direct-csr", "direct-csr-owner", "batched-coo"];

    /// Parses a name; `batch` is used by `batched-coo`.
    pub fn parse(s: &str, batch: usize) -> Option<Self> {
        match s {
            "direct-csr" => Some(Self::DirectCsr),
            "direct-csr-owner" => Some(Self::DirectCsrOwner),
            "batched-coo" => Some(Self::BatchedCoo { batch }),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Self::DirectCsr => "direct-csr",
            Self::DirectCsrOwner => "direct-csr-owner",
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

/// `[parallel]`: the scene section of the parallel backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParallelSection {
    /// Threads (0 = one per core).
    pub threads: usize,
    /// `direct-csr` (scatter into a precomputed CSR, model 4),
    /// `direct-csr-owner` (the same, owner-computes) or `batched-coo`
    /// (per-batch triplets merged, model 2).
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

impl ParallelSection {
    /// The configured backend, every value checked.
    pub fn backend(&self) -> Result<Parallel, SettingError> {
        if self.batch_size == 0 {
            return Err(SettingError::key("batch_size", "must be at least 1"));
        }
        if self.threads > 1024 {
            return Err(SettingError::key(
                "threads",
                format!(
                    "{} threads is unreasonable (0 = one per core)",
                    self.threads
                ),
            ));
        }
        let strategy =
            AssemblyStrategy::parse(&self.assembly, self.batch_size).ok_or_else(|| {
                SettingError::key(
                    "assembly",
                    format!(
                        "unknown strategy \"{}\" (available: {})",
                        self.assembly,
                        AssemblyStrategy::NAMES.join(", ")
                    ),
                )
            })?;
        Ok(Parallel {
            threads: self.threads,
            strategy,
        })
    }
}

/// The flags of `quadflow run` that set keys of `[parallel]`.
const FLAGS: &[Flag] = &[
    Flag {
        long: "threads",
        key: "threads",
        value_name: "N",
        help: "Threads of the parallel backend (0 = one per core)",
        value: FlagValue::Integer,
    },
    Flag {
        long: "assembly",
        key: "assembly",
        value_name: "STRATEGY",
        help: "Assembly strategy of the parallel backend (direct-csr, direct-csr-owner, batched-coo)",
        value: FlagValue::Text,
    },
];

impl BackendKind for Parallel {
    fn name(&self) -> &'static str {
        "parallel"
    }

    fn about(&self) -> &'static str {
        "every phase on a rayon pool, bit for bit the serial results"
    }

    fn defaults(&self) -> Table {
        config::section_of(&ParallelSection::default())
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn configure(
        &self,
        section: &Table,
        _configured: &Registry,
    ) -> Result<Arc<dyn Backend>, SettingError> {
        let s: ParallelSection = config::read_section(section)?;
        Ok(Arc::new(s.backend()?))
    }
}

/// The pool, team and settings the parallel systems use.
#[derive(Resource, Clone)]
pub struct ParallelRuntime {
    /// The rayon pool of the configured size (quadrature, assembly,
    /// boundary, post).
    pub pool: Arc<rayon::ThreadPool>,
    /// A persistent team of as many threads (the solve's row loops: one
    /// fixed row block per thread, see [`crate::exec::Team`]).
    pub team: Arc<Team>,
    /// Settings.
    pub settings: Parallel,
}

impl Backend for Parallel {
    fn name(&self) -> &'static str {
        "parallel"
    }

    fn report(&self, world: &World) -> BackendReport {
        let threads = world
            .get_resource::<ParallelRuntime>()
            .map_or(0, |rt| rt.pool.current_num_threads());
        BackendReport {
            attributes: vec![
                ("parallel_threads".into(), Attr::Int(threads as i64)),
                (
                    "parallel_assembly".into(),
                    Attr::Str(self.strategy.name().into()),
                ),
            ],
            summary: std::iter::once(format!(
                "{threads} threads, {} assembly",
                self.strategy.name()
            ))
            .chain(oversubscribed(
                threads,
                std::thread::available_parallelism().ok(),
            ))
            .collect(),
        }
    }

    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => quadrature.into_configs(),
            Phase::Assembly => match self.strategy {
                AssemblyStrategy::DirectCsr => {
                    (build_pattern, assemble_direct).chain().into_configs()
                }
                AssemblyStrategy::DirectCsrOwner => {
                    (build_pattern_owner, assemble_owner).chain().into_configs()
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
        let team = Team::new(pool.current_num_threads(), "quadflow-team").map_err(|e| {
            PipelineError::Backend {
                backend: "parallel".into(),
                message: format!("cannot start {} threads: {e}", self.threads),
            }
        })?;
        if let Some(w) = oversubscribed(self.threads, std::thread::available_parallelism().ok()) {
            world
                .get_resource_or_insert_with(Warnings::default)
                .0
                .push(w);
        }
        world.insert_resource(ParallelRuntime {
            pool: Arc::new(pool),
            team: Arc::new(team),
            settings: *self,
        });
        Ok(())
    }
}

/// The warning for `threads` threads in a process that may run on fewer
/// cores (`cores`: [`std::thread::available_parallelism`], which follows
/// the process's CPU affinity), if they are fewer.
fn oversubscribed(threads: usize, cores: Option<std::num::NonZeroUsize>) -> Option<String> {
    let cores = cores?.get();
    (threads > cores).then(|| {
        format!(
            "{threads} threads asked for, but this process may run on {cores} core(s) only (its CPU affinity; under mpirun each rank is bound to one core by default: give it {threads} with --map-by slot:PE={threads} or --bind-to none); the threads share the cores and the run is slower"
        )
    })
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
    let mut kernels = ParallelKernels::new(rt.team.clone());
    // the pool for what the solvers leave to rayon (faer's Cholesky), the
    // team for every row loop
    rt.pool.install(|| {
        rt.team.install(|| {
            common::solve_into(
                &sys,
                &settings,
                &mut kernels,
                Exec::Parallel,
                &mut hook,
                &mut solution,
                &mut failure,
            )
        })
    });
}

/// Post-processing in parallel over elements, into [`ElementOutputs`].
pub fn post(
    rt: Res<ParallelRuntime>,
    solution: Res<Solution>,
    physics: Res<Physics>,
    mesh: Res<MeshRes>,
    mut outputs: ResMut<ElementOutputs>,
    q: Query<(&ElementIndex, &Nodes, &ElementCoords)>,
) {
    let _s = tracing::info_span!("parallel::post").entered();
    let u = &solution.u;
    let (p0, half_rho) = (physics.p0, physics.rho / 2.0);
    let items: Vec<_> = q.iter().collect();
    let places = common::output_places(&mut outputs, mesh.0.elements.len());
    rt.pool.install(|| {
        items
            .par_iter()
            .with_min_len(512)
            .for_each(|(idx, nodes, c)| {
                let ue = nodes.0.map(|v| u[v as usize]);
                let f = element::post(&c.0, &ue, p0, half_rho);
                // SAFETY: element indices are distinct, one entity each.
                unsafe { common::put_fields(&places, idx.0 as usize, &f) };
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_threads_than_the_process_may_use_is_said() {
        let n = |c| std::num::NonZeroUsize::new(c);
        assert_eq!(oversubscribed(2, n(2)), None);
        assert_eq!(oversubscribed(2, None), None);
        let w = oversubscribed(4, n(1)).unwrap();
        assert!(w.contains("4 threads") && w.contains("1 core(s)") && w.contains("--bind-to none"));
    }
    use crate::element::{NODES, SYM_ENTRIES, SYM_PAIRS};
    use crate::sparse::{self, SymCsr};

    fn strip(nx: usize) -> Vec<[u32; NODES]> {
        // a strip of nx unit squares on the lattice of width 2nx+1
        crate::mesh::lattice_grid(nx, 1, |x, y| (x, y)).2
    }

    #[test]
    fn parallel_adjacency_equals_serial() {
        // enough elements for the chunked path, nodes numbered backwards
        let els = strip(5000);
        let n = 3 * 10001;
        let els: Vec<_> = els.iter().map(|el| el.map(|v| n as u32 - 1 - v)).collect();
        let serial = sparse::node_elements(n, &els);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(pool.install(|| node_elements_parallel(n, &els)), serial);
            // element maps given in reverse order
            let mut maps = vec![[0u32; SYM_ENTRIES]; els.len()];
            let w = sparse::SlotWriter::scattered(els.len(), maps.iter_mut().enumerate().rev());
            let (k, off) = pool.install(|| pattern_parallel(n, &els, &w)).unwrap();
            drop(w);
            let (k1, maps1) = SymCsr::pattern_with_slots(n, &els).unwrap();
            assert_eq!(k, k1);
            for ((el, m), m1) in els.iter().zip(&mut maps).zip(&maps1) {
                off.fix(m, el);
                assert_eq!(m, m1);
            }
        }
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
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut maps = vec![[0u32; SYM_ENTRIES]; els.len()];
            let w = sparse::SlotWriter::scattered(els.len(), maps.iter_mut().enumerate());
            let (k, off) = pool.install(|| pattern_parallel(n, &els, &w)).unwrap();
            drop(w);
            assert_eq!(k, pat);
            for (el, m) in els.iter().zip(&mut maps) {
                off.fix(m, el);
                assert_eq!(*m, sparse::slot_map(&pat, el));
            }
        }
    }
}
