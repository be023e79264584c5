//! The sparsity pattern and the element slot maps, built in parallel (the
//! first step of the direct-CSR assembly).

use super::ParallelRuntime;
use super::owner::{OwnerSplit, pattern_owner};
use crate::components::*;
use crate::element::{NODES, SYM_PAIRS};
use crate::exec::Disjoint;
use crate::pipeline::fail;
use crate::sparse::{self, SymCsr};
use bevy_ecs::prelude::*;
use rayon::prelude::*;

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
    let fills: Vec<Disjoint<u32>> = fill.iter_mut().map(|c| Disjoint::slice(c)).collect();
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
                    let c = unsafe { c.get_mut(v) };
                    let k = *c;
                    *c = acc;
                    acc += k;
                }
            }
        });
    let mut adj = vec![0u32; acc as usize];
    let out = Disjoint::slice(&mut adj);
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
                    unsafe { *out.get_mut(*k as usize) = (c * chunk + e) as u32 };
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

/// Direct CSR, step 1: pattern and slot maps (parallel, by blocks of
/// rows: [`pattern_parallel`]).
pub fn build_pattern(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    mut q: Query<(&ElementIndex, &Nodes, &mut Slots)>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("parallel::pattern").entered();
    by_blocks(&rt, &mesh, &mut sys, q.iter_mut().collect(), &mut failure);
}

/// Owner-computes direct CSR, step 1: the owner-computes split of the
/// nodes among the pool's threads ([`OwnerSplit`]), and the pattern and
/// slot maps built over it ([`pattern_owner`]); the split is left as a
/// resource for the scatter. With one thread, [`build_pattern`]'s build.
pub fn build_pattern_owner(
    rt: Res<ParallelRuntime>,
    mesh: Res<MeshRes>,
    mut sys: ResMut<LinearSystem>,
    mut q: Query<(&ElementIndex, &Nodes, &mut Slots)>,
    mut failure: ResMut<Failure>,
    mut commands: Commands,
) {
    let _s = tracing::info_span!("parallel::pattern").entered();
    let elements = &mesh.0.elements;
    let mut items: Vec<_> = q.iter_mut().collect();
    let threads = rt.pool.current_num_threads();
    if threads == 1 {
        return by_blocks(&rt, &mesh, &mut sys, items, &mut failure);
    }
    let m = &mesh.0;
    let split = {
        let _s = tracing::info_span!("parallel::owner_split").entered();
        rt.pool
            .install(|| OwnerSplit::new(&m.x, &m.y, &m.elements, threads))
    };
    let built = {
        let slots = sparse::SlotWriter::scattered(
            elements.len(),
            items
                .iter_mut()
                .map(|(idx, _, s)| (idx.0 as usize, &mut s.0)),
        );
        rt.pool.install(|| pattern_owner(elements, &split, &slots))
    };
    match built {
        Ok(k) => {
            sys.nnz = k.full_nnz();
            sys.f = vec![0.0; k.n];
            sys.k = k;
            commands.insert_resource(split);
        }
        Err(e) => fail(&mut failure, e),
    }
}

/// The pattern and slot maps of `items` (the element entities' indices,
/// nodes and slot maps) by blocks of rows, into `sys`.
fn by_blocks(
    rt: &ParallelRuntime,
    mesh: &MeshRes,
    sys: &mut LinearSystem,
    mut items: Vec<(&ElementIndex, &Nodes, Mut<Slots>)>,
    failure: &mut Failure,
) {
    let elements = &mesh.0.elements;
    let built = {
        let slots = sparse::SlotWriter::scattered(
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
        Err(e) => return fail(failure, e),
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
