//! Element matrices into the CSR values: the pipelined direct scatter and
//! the owner-computes one (execution model 4), and the batched COO merge
//! (model 2; see
//! `docs/execution-models.md`).

use super::owner::{ALL_OWNED, MAX_PARTS, OwnedElement, OwnerSplit, prefetch};
use super::{AssemblyStrategy, ParallelRuntime};
use crate::common;
use crate::components::*;
use crate::element::{self, NODES, SYM_ENTRIES, SYM_PAIRS};
use crate::exec::Disjoint;
use crate::pipeline::fail;
use crate::sparse::{self, SymCsr};
use bevy_ecs::prelude::*;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
    let (kp, fp) = (Disjoint::slice(&mut ke), Disjoint::slice(&mut fe));
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
                *kp.get_mut(r + x) = element::stiffness_sym(&qd.0);
                *fp.get_mut(r + x) = common::element_load(source, &co.0, &qd.0);
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
                    let (ke, fe) = unsafe { (kp.get(r + x), fp.get(r + x)) };
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

/// Owner-computes direct CSR, step 2: the rows are split among the
/// threads by [`OwnerSplit`] (one part per thread of the pool); each thread
/// computes the element matrices (and loads) of its part's elements, in
/// element order, and adds the entries of the rows it owns through the
/// slot maps. No thread writes another's rows, so no atomics and no
/// ordering between threads; every entry sums its contributions in element
/// order, so `K` and `f` are the serial executor's bit for bit, for any
/// thread count. The elements on the borders between parts (0.3% of
/// `y_tube_195k`'s on two threads) are computed by each part they touch.
pub fn assemble_owner(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    physics: Res<Physics>,
    split: Option<Res<OwnerSplit>>,
    q: Query<(&ElementIndex, &Nodes, &ElementCoords, &Quadrature, &Slots)>,
) {
    let _s = tracing::info_span!("parallel::owner_scatter").entered();
    // the split numbers elements as the mesh does; serial adds them in
    // query order: the two agree (entities are spawned in element order)
    let items: Vec<_> = q
        .iter()
        .enumerate()
        .map(|(p, (idx, nodes, co, qd, slots))| {
            assert_eq!(idx.0 as usize, p, "element entities out of element order");
            (nodes, co, qd, slots)
        })
        .collect();
    let source = &physics.source;
    let loaded = !matches!(source, Source::Constant(v) if *v == 0.0);
    let threads = rt.pool.current_num_threads();
    // the pattern's split, else one made here
    let made;
    let split = match &split {
        Some(s) if s.parts() == threads.min(MAX_PARTS) => &**s,
        _ => {
            let _s = tracing::info_span!("parallel::owner_split").entered();
            let m = &mesh.0;
            made = rt
                .pool
                .install(|| OwnerSplit::new(&m.x, &m.y, &m.elements, threads));
            &made
        }
    };
    let LinearSystem { k, f, .. } = &mut *sys;
    let (val, fv) = (Disjoint::slice(&mut k.val), Disjoint::slice(f));
    let add_part = |part: &[OwnedElement]| {
        let _s = tracing::info_span!("parallel::owner_part").entered();
        let mut ke = [[0.0; SYM_ENTRIES]; BATCH];
        let mut fe = [None; BATCH];
        for run in part.chunks(BATCH) {
            // the batch's targets asked for while its matrices are computed
            // (the rows of a mesh numbered without locality are far apart)
            for oe in run {
                let (nodes, _, _, slots) = items[oe.element as usize];
                for &s in &slots.0 {
                    prefetch(val.ptr(s as usize));
                }
                if loaded {
                    for &i in &nodes.0 {
                        prefetch(fv.ptr(i as usize));
                    }
                }
            }
            for (x, oe) in run.iter().enumerate() {
                let (_, co, qd, _) = items[oe.element as usize];
                ke[x] = element::stiffness_sym(&qd.0);
                fe[x] = common::element_load(source, &co.0, &qd.0);
            }
            for (x, oe) in run.iter().enumerate() {
                let (nodes, _, _, slots) = items[oe.element as usize];
                // SAFETY: the part owns the nodes of `oe.mask`, and no
                // other part writes their rows or their entries of `f`.
                unsafe {
                    add_owned(
                        &val,
                        &fv,
                        &nodes.0,
                        &slots.0,
                        &ke[x],
                        fe[x].as_ref(),
                        oe.mask,
                    )
                };
            }
        }
    };
    if split.parts() == 1 {
        add_part(split.elements(0));
    } else {
        rt.pool.install(|| {
            (0..split.parts())
                .into_par_iter()
                .with_max_len(1)
                .for_each(|p| add_part(split.elements(p)))
        });
    }
}

/// Elements whose matrices the owner-computes assembly computes before
/// adding them, their targets prefetched meanwhile.
const BATCH: usize = 16;

/// Adds the entries of element matrix `ke` (and load `fe`) whose row is a
/// node of `mask` (bit `a`: node `a`) into `val` through the slot map and
/// into `f`.
///
/// # Safety
/// No other thread accesses the rows of the nodes of `mask` (their stored
/// entries and their entries of `f`) meanwhile.
#[inline]
unsafe fn add_owned(
    val: &Disjoint<f64>,
    f: &Disjoint<f64>,
    nodes: &[u32; NODES],
    slots: &[u32; SYM_ENTRIES],
    ke: &[f64; SYM_ENTRIES],
    fe: Option<&[f64; NODES]>,
    mask: u8,
) {
    // SAFETY (all blocks): the entries written lie in rows of `mask`'s
    // nodes, exclusive to the caller.
    if mask == ALL_OWNED {
        for (s, v) in slots.iter().zip(ke) {
            unsafe { *val.get_mut(*s as usize) += *v };
        }
        if let Some(fe) = fe {
            for (&i, v) in nodes.iter().zip(fe) {
                unsafe { *f.get_mut(i as usize) += *v };
            }
        }
        return;
    }
    for (kk, &(a, b)) in SYM_PAIRS.iter().enumerate() {
        let (a, b) = (a as usize, b as usize);
        // the pair's row is its smaller node
        let row = if nodes[a] <= nodes[b] { a } else { b };
        if mask >> row & 1 != 0 {
            unsafe { *val.get_mut(slots[kk] as usize) += ke[kk] };
        }
    }
    if let Some(fe) = fe {
        for (a, (&i, v)) in nodes.iter().zip(fe).enumerate() {
            if mask >> a & 1 != 0 {
                unsafe { *f.get_mut(i as usize) += *v };
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
