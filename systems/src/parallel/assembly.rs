//! Element matrices into the CSR values: the pipelined direct scatter
//! (execution model 4) and the batched COO merge (model 2; see
//! `docs/execution-models.md`).

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
