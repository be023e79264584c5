//! The multi-threaded CPU executor (rayon): the seed's "threaded" and
//! "Numba" rows. Every phase runs on a dedicated rayon pool of the
//! configured size; results equal the serial executor's bit for bit.
//!
//! Assembly has two strategies:
//! - [`AssemblyStrategy::BatchedCoo`] (seed 2): element batches write
//!   upper-triangle triplets into their own buffers; the buffers are merged
//!   into CSR by a counting sort on rows and a per-row sort that sums
//!   duplicates. No precomputed pattern.
//! - [`AssemblyStrategy::DirectCsr`] (seed 4): the pattern and the
//!   element slot maps are built once, together and in parallel
//!   ([`pattern_parallel`]: a parallel node-to-element adjacency, then
//!   blocks of rows, each row gathered, sorted and deduplicated from the
//!   elements around its node, its pairs' slots written into the elements'
//!   maps as the row is built). Element matrices are then computed in
//!   parallel into a small ring of chunks and added straight into the CSR
//!   values by one stream in element order that runs alongside
//!   ([`assemble_direct`]), so the matrix equals the serial one bit for
//!   bit. No triplets, no global sort, no atomics on values.

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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How the parallel backend assembles the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssemblyStrategy {
    /// Per-batch triplet buffers merged into CSR (seed 2).
    BatchedCoo {
        /// Elements per batch.
        batch: usize,
    },
    /// Direct scatter into a precomputed CSR through slot maps (seed 4).
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

/// A raw pointer shared by threads that write disjoint parts of its
/// buffer.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: users write disjoint indices (stated at each use).
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not
    /// its field).
    #[inline]
    fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

/// Node-to-element adjacency (as [`sparse::node_elements`]) built in
/// parallel: each of `t` contiguous element chunks counts its nodes into its
/// own array, a prefix sum over (node, chunk) gives every chunk its write
/// position per node, and the chunks fill in parallel. Each node's elements
/// come out in increasing order, as from the serial version.
pub fn node_elements_parallel(n: usize, elements: &[[u32; NODES]]) -> (Vec<u32>, Vec<u32>) {
    let t = rayon::current_num_threads();
    if t <= 1 || elements.len() < 4096 {
        return sparse::node_elements(n, elements);
    }
    let chunk = elements.len().div_ceil(t);
    let mut fill: Vec<Vec<u32>> = elements
        .par_chunks(chunk)
        .map(|ch| {
            let mut c = vec![0u32; n];
            for el in ch {
                for &v in el {
                    c[v as usize] += 1;
                }
            }
            c
        })
        .collect();
    // prefix sum over (node, chunk), itself in parallel over node ranges:
    // range totals, then each range from its offset
    let mut ptr = vec![0u32; n + 1];
    let step = n.div_ceil(t).max(1);
    let totals: Vec<u32> = (0..n.div_ceil(step))
        .into_par_iter()
        .map(|r| {
            let vs = r * step..((r + 1) * step).min(n);
            fill.iter().map(|c| c[vs.clone()].iter().sum::<u32>()).sum()
        })
        .collect();
    let mut starts = Vec::with_capacity(totals.len());
    let mut acc = 0u32;
    for &x in &totals {
        starts.push(acc);
        acc += x;
    }
    ptr[n] = acc;
    let fills: Vec<Shared<u32>> = fill.iter_mut().map(|c| Shared(c.as_mut_ptr())).collect();
    ptr[..n]
        .par_chunks_mut(step)
        .zip(starts)
        .enumerate()
        .for_each(|(r, (p, mut acc))| {
            for (x, pv) in p.iter_mut().enumerate() {
                let v = r * step + x;
                *pv = acc;
                for c in &fills {
                    // SAFETY: v < n lies in this range only; no other
                    // access to the count arrays meanwhile.
                    unsafe {
                        let k = *c.at(v);
                        *c.at(v) = acc;
                        acc += k;
                    }
                }
            }
        });
    let mut adj = vec![0u32; acc as usize];
    let out = Shared(adj.as_mut_ptr());
    elements
        .par_chunks(chunk)
        .zip(fill.par_iter_mut())
        .enumerate()
        .for_each(|(c, (ch, at))| {
            for (e, el) in ch.iter().enumerate() {
                for &v in el {
                    let k = &mut at[v as usize];
                    // SAFETY: position k lies in node v's range and in this
                    // chunk's part of it; each is written once.
                    unsafe { *out.at(*k as usize) = (c * chunk + e) as u32 };
                    *k += 1;
                }
            }
        });
    (ptr, adj)
}

/// What turns the slot maps [`pattern_parallel`] writes (each pair's slot
/// counted from the start of its row block) into slots of the matrix:
/// [`BlockOffsets::fix`].
#[derive(Debug, Clone)]
pub struct BlockOffsets {
    /// First stored entry of each row block (and the total at the end).
    pub base: Vec<u32>,
    /// Row `i` lies in block `i >> shift`.
    pub shift: u32,
}

impl BlockOffsets {
    /// Whether there is a single block (nothing to add).
    pub fn is_single(&self) -> bool {
        self.base.len() <= 2
    }

    /// Adds the block offsets to the slot map `m` of an element with nodes
    /// `el`.
    #[inline]
    pub fn fix(&self, m: &mut sparse::SlotMap, el: &[u32; NODES]) {
        let off = el.map(|v| self.base[v as usize >> self.shift]);
        for (s, &(a, b)) in m.iter_mut().zip(SYM_PAIRS.iter()) {
            let (a, b) = (a as usize, b as usize);
            // the pair's row is its smaller node
            *s += if el[a] <= el[b] { off[a] } else { off[b] };
        }
    }
}

/// The sparsity pattern and every element's slot map, built in parallel:
/// the adjacency by [`node_elements_parallel`], then blocks of rows (a
/// power-of-two number of rows each) by [`sparse::pattern_rows`], each into
/// its own column buffer and writing slots counted from its block's start;
/// then the columns are copied into place (per block, in parallel). The
/// pattern equals [`SymCsr::pattern`], and the slot maps written through
/// `slots`, once fixed by the returned [`BlockOffsets`], equal
/// [`SymCsr::pattern_with_slots`]'s, for any thread count.
pub fn pattern_parallel(
    n: usize,
    elements: &[[u32; NODES]],
    slots: &sparse::SlotWriter,
) -> Result<(SymCsr, BlockOffsets), sparse::PatternTooLarge> {
    if rayon::current_num_threads() <= 1 {
        // one block: the serial build, slots final as written
        let k = SymCsr::pattern_into_slots(n, elements, slots)?;
        let base = vec![0, k.stored() as u32];
        return Ok((
            k,
            BlockOffsets {
                base,
                shift: usize::BITS - 1,
            },
        ));
    }
    let (ptr, adj) = {
        let _s = tracing::info_span!("parallel::adjacency").entered();
        node_elements_parallel(n, elements)
    };
    // a few blocks per thread, for balance (y_tube's unused nodes cluster
    // at the end of the numbering); 4 measured best on 2 threads, against
    // 2 (imbalance) and 8 or 16
    let blocks = rayon::current_num_threads() * 4;
    let shift = n
        .div_ceil(blocks)
        .max(1)
        .next_power_of_two()
        .trailing_zeros();
    let nblocks = n.div_ceil(1 << shift);
    // one rank scratch per thread (not per block: each is n-sized, and
    // fresh pages cost more than the work here)
    let scratch: Vec<std::sync::Mutex<Vec<u32>>> = (0..rayon::current_num_threads())
        .map(|_| Default::default())
        .collect();
    let parts: Vec<(Vec<u32>, Vec<u32>)> = {
        let _s = tracing::info_span!("parallel::pattern_rows").entered();
        (0..nblocks)
            .into_par_iter()
            .map(|b| {
                let rows = b << shift..((b + 1) << shift).min(n);
                // generous: untouched capacity costs no pages
                let mut col = Vec::with_capacity(rows.len() * 12);
                let mut ends = Vec::with_capacity(rows.len());
                let me = rayon::current_thread_index().unwrap_or(0) % scratch.len();
                let mut rank = scratch[me].lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: the blocks' row ranges are disjoint.
                unsafe {
                    sparse::pattern_rows(
                        rows,
                        elements,
                        (&ptr, &adj),
                        &mut col,
                        &mut ends,
                        Some(slots),
                        &mut rank,
                    )
                };
                (col, ends)
            })
            .collect()
    };
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    if total >= u32::MAX as usize {
        return Err(sparse::PatternTooLarge(total));
    }
    let _s = tracing::info_span!("parallel::pattern_place").entered();
    let mut base = Vec::with_capacity(nblocks + 1);
    base.push(0u32);
    for p in &parts {
        base.push(base.last().unwrap() + p.0.len() as u32);
    }
    let mut col = vec![0u32; total];
    let mut rowptr = vec![0u32; n + 1];
    {
        let mut col_rest = &mut col[..];
        let mut ptr_rest = &mut rowptr[1..];
        let mut jobs = Vec::with_capacity(nblocks);
        for (p, &b0) in parts.iter().zip(&base) {
            let (c, cr) = col_rest.split_at_mut(p.0.len());
            let (r, rr) = ptr_rest.split_at_mut(p.1.len());
            jobs.push((p, b0, c, r));
            col_rest = cr;
            ptr_rest = rr;
        }
        jobs.into_par_iter().for_each(|(p, b0, c, r)| {
            c.copy_from_slice(&p.0);
            for (d, &e) in r.iter_mut().zip(&p.1) {
                *d = b0 + e;
            }
        });
    }
    let mut val = vec![0.0; total];
    // first touch of the value pages here, in parallel, not in the scatter
    val.par_chunks_mut(1 << 14).for_each(|c| c.fill(0.0));
    Ok((
        SymCsr {
            n,
            rowptr,
            col,
            val,
        },
        BlockOffsets { base, shift },
    ))
}

/// Direct CSR, step 1: pattern and slot maps (parallel).
pub fn build_pattern(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    mut q: Query<(&ElementIndex, &Nodes, &mut Slots)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::pattern").entered();
    let elements = &mesh.0.elements;
    let mut items: Vec<_> = q.iter_mut().collect();
    let built = {
        let slots = sparse::SlotWriter::new(
            elements.len(),
            items
                .iter_mut()
                .map(|(idx, _, s)| (idx.0 as usize, &mut s.0)),
        );
        rt.pool
            .install(|| pattern_parallel(mesh.0.nodes(), elements, &slots))
    };
    let (k, offsets) = match built {
        Ok(k) => k,
        Err(e) => return fail(&mut failure, e),
    };
    if !offsets.is_single() {
        let _s = tracing::info_span!("parallel::slot_offsets").entered();
        rt.pool.install(|| {
            items
                .par_iter_mut()
                .with_min_len(1024)
                .for_each(|(_, nodes, slots)| offsets.fix(&mut slots.0, &nodes.0))
        });
    }
    sys.nnz = k.full_nnz();
    sys.f = vec![0.0; k.n];
    sys.k = k;
}

/// Elements per unit of work of the pipelined direct-CSR assembly.
const CHUNK: usize = 256;
/// Chunks of element matrices the pipeline holds at once (a ring of
/// `RING * CHUNK` matrices, ~0.6 MB: cache-resident, and no fresh pages).
const RING: usize = 8;

/// What a thread of the assembly pipeline may do next.
enum Claim {
    /// Compute this chunk.
    Chunk(usize),
    /// Every chunk is claimed.
    Finished,
    /// The ring is full: wait for the stream to consume a chunk.
    Full,
}

/// Direct CSR, step 2: element matrices (and loads) computed in parallel
/// and added into the CSR values through the slot maps in one stream in
/// element order, pipelined: chunks of elements are claimed in order from a
/// shared counter and computed into a ring of `RING` chunks; the calling
/// thread adds chunk after chunk in order and, while the next one is not
/// ready, computes unclaimed chunks itself. No races, no atomics on values,
/// and every entry receives its contributions in the serial executor's
/// order, so the matrix is bit-for-bit the serial one for any thread count.
/// The ring (`RING` chunks of `CHUNK` elements) stays in cache and needs
/// no fresh pages, which a buffer of all element matrices (14 MB on
/// `y_tube_195k`) did. (Two race-free parallel scatters were tried before
/// and measured slower on 2 cores: row owners each streaming all elements,
/// 30 ms, and a per-row gather through the node-to-element adjacency,
/// 45 ms, against 8 ms for the sequential stream on `y_tube_195k`.)
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
    let ne = items.len();
    let chunks = ne.div_ceil(CHUNK);
    let mut ke = vec![[0.0; SYM_ENTRIES]; RING * CHUNK];
    let mut fe: Vec<Option<[f64; NODES]>> = vec![None; RING * CHUNK];
    let (kp, fp) = (Shared(ke.as_mut_ptr()), Shared(fe.as_mut_ptr()));
    let ready: Vec<AtomicBool> = (0..chunks).map(|_| AtomicBool::new(false)).collect();
    let next = AtomicUsize::new(0);
    // chunks added so far; chunk c may be computed once c < done + RING
    let done = AtomicUsize::new(0);
    let items = &items;
    let claim = || loop {
        let c = next.load(Ordering::Relaxed);
        if c >= chunks {
            return Claim::Finished;
        }
        if c >= done.load(Ordering::Acquire) + RING {
            return Claim::Full;
        }
        if next
            .compare_exchange_weak(c, c + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Claim::Chunk(c);
        }
    };
    let compute = |c: usize| {
        let r = (c % RING) * CHUNK;
        for (x, e) in (c * CHUNK..((c + 1) * CHUNK).min(ne)).enumerate() {
            let (_, co, qd, _) = items[e];
            // SAFETY: ring slot c % RING is free (chunk c - RING has been
            // added: `done`, acquired) and written by chunk c's claimer
            // only; it is read only after `ready[c]` is set.
            unsafe {
                *kp.at(r + x) = element::stiffness_sym(&qd.0);
                *fp.at(r + x) = common::element_load(source, &co.0, &qd.0);
            }
        }
        ready[c].store(true, Ordering::Release);
    };
    let backoff = |spins: &mut u32| {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    };
    let LinearSystem { k, f, .. } = &mut *sys;
    let val = &mut k.val;
    rt.pool.install(|| {
        rayon::scope(|s| {
            for _ in 1..rayon::current_num_threads() {
                s.spawn(|_| {
                    let mut spins = 0;
                    loop {
                        match claim() {
                            Claim::Chunk(c) => compute(c),
                            Claim::Finished => break,
                            Claim::Full => backoff(&mut spins),
                        }
                    }
                });
            }
            for c in 0..chunks {
                let mut spins = 0;
                while !ready[c].load(Ordering::Acquire) {
                    // chunk c is claimed (claims go in order); compute a
                    // later one meanwhile if the ring has room
                    match claim() {
                        Claim::Chunk(c2) => compute(c2),
                        _ => backoff(&mut spins),
                    }
                }
                let r = (c % RING) * CHUNK;
                for (x, e) in (c * CHUNK..((c + 1) * CHUNK).min(ne)).enumerate() {
                    // SAFETY: chunk c is complete (`ready[c]`, acquired)
                    // and its slot is not rewritten before `done` passes c.
                    let (ke, fe) = unsafe { (&*kp.at(r + x), &*fp.at(r + x)) };
                    for (s, v) in items[e].3.0.iter().zip(ke) {
                        val[*s as usize] += v;
                    }
                    if let Some(fe) = fe {
                        for (a, v) in fe.iter().enumerate() {
                            f[items[e].0.0[a] as usize] += v;
                        }
                    }
                }
                done.store(c + 1, Ordering::Release);
            }
        })
    });
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
            let w = sparse::SlotWriter::new(els.len(), maps.iter_mut().enumerate().rev());
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
            let w = sparse::SlotWriter::new(els.len(), maps.iter_mut().enumerate());
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
