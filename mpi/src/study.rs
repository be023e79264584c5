//! The partition-only scaling model: what one distributed Jacobi-CG
//! iteration costs on `P` ranks, from a partition's [`Quality`], without
//! solving anything.
//!
//! Per rank `r` and iteration:
//! - **compute**: the bytes its kernels move, `12 nnz_r + 8 (n_r + 1) +
//!   13 * 8 n_r` (values and columns of its full owned rows, row
//!   pointers, and thirteen vector streams of its `n_r` rows: the
//!   direction update, the product, the `x`/`r` update with its dot
//!   products), over a memory bandwidth per rank `B_mem`: the CG
//!   iteration is memory-bound;
//! - **halo**: one exchange of `p`: `m_r` messages (its neighbours) and
//!   `8 s_r` bytes sent (`s_r` values; as many received), at a latency
//!   `L` per message and a link bandwidth `B_net`:
//!   `m_r L + 8 s_r / B_net`;
//! - **reductions**: two all-reduces of one or two numbers, each
//!   `ceil(log2 P)` latency terms: `2 ceil(log2 P) L`.
//!
//! The iteration takes the slowest rank's `compute + halo` (no overlap
//! assumed; the halo can hide behind the interior rows, so this is an
//! upper bound) plus the reductions. The defaults are a 100 Gb/s network
//! (`B_net = 12.5 GB/s`, `L = 2 us`) and `B_mem = 10 GB/s` per rank (a
//! server socket's ~200-400 GB/s shared by 32-64 cores, roughly).

use crate::partition::Quality;

/// Machine parameters of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// Latency per message (s).
    pub latency: f64,
    /// Network bandwidth per rank (bytes/s).
    pub net_bw: f64,
    /// Memory bandwidth per rank (bytes/s).
    pub mem_bw: f64,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            latency: 2e-6,
            net_bw: 12.5e9,
            mem_bw: 10e9,
        }
    }
}

/// The modelled cost of one CG iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IterationModel {
    /// Seconds of the slowest rank's compute.
    pub compute: f64,
    /// Seconds of the slowest rank's halo exchange.
    pub halo: f64,
    /// Seconds of the two all-reduces.
    pub reductions: f64,
    /// Seconds per iteration: max over ranks of compute + halo, plus the
    /// reductions.
    pub total: f64,
    /// Largest halo volume of a rank (bytes sent per iteration).
    pub max_halo_bytes: usize,
    /// Mean halo volume per rank (bytes sent per iteration).
    pub mean_halo_bytes: f64,
    /// Largest neighbour count.
    pub max_neighbours: usize,
}

/// Bytes rank `r`'s kernels move per iteration.
pub fn compute_bytes(rows: usize, row_entries: usize) -> usize {
    12 * row_entries + 8 * (rows + 1) + 13 * 8 * rows
}

/// Models one iteration on the partition measured by `q`.
pub fn model(q: &Quality, m: &Machine) -> IterationModel {
    let p = q.parts.max(1);
    let mut worst = 0.0f64;
    let (mut wc, mut wh) = (0.0f64, 0.0f64);
    let mut max_bytes = 0;
    let mut sum_bytes = 0usize;
    let mut max_nb = 0;
    for s in &q.per_part {
        let c = compute_bytes(s.owned_nodes, s.row_entries) as f64 / m.mem_bw;
        let bytes = 8 * s.send_values;
        let h = s.neighbours as f64 * m.latency + bytes as f64 / m.net_bw;
        worst = worst.max(c + h);
        wc = wc.max(c);
        wh = wh.max(h);
        max_bytes = max_bytes.max(bytes);
        sum_bytes += bytes;
        max_nb = max_nb.max(s.neighbours);
    }
    let steps = (p as f64).log2().ceil();
    let red = 2.0 * steps * m.latency;
    IterationModel {
        compute: wc,
        halo: wh,
        reductions: red,
        total: worst + red,
        max_halo_bytes: max_bytes,
        mean_halo_bytes: sum_bytes as f64 / p as f64,
        max_neighbours: max_nb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{Method, partition, quality, tests::lattice};

    #[test]
    fn one_part_has_no_communication_and_more_parts_compute_less() {
        let m = lattice(40, 10, false);
        let mach = Machine::default();
        let q1 = quality(&m, &partition(&m, 1, Method::Rcb).unwrap());
        let one = model(&q1, &mach);
        assert_eq!(one.halo, 0.0);
        assert_eq!(one.reductions, 0.0);
        assert_eq!(one.max_halo_bytes, 0);
        // every owned row's entries: the full matrix's non-zeros
        let nnz: usize = q1.per_part.iter().map(|s| s.row_entries).sum();
        assert_eq!(nnz, 2 * q1.edges + m.nodes());
        let q4 = quality(&m, &partition(&m, 4, Method::Rcb).unwrap());
        let four = model(&q4, &mach);
        assert!(four.compute < 0.3 * one.compute);
        assert!(four.halo > 0.0 && four.max_neighbours >= 1);
        assert_eq!(four.reductions, 2.0 * 2.0 * mach.latency);
        // strips of a 40 x 10 channel: 21 nodes of a cut, 8 bytes each
        assert!(four.max_halo_bytes >= 8 * 21 && four.max_halo_bytes <= 8 * 2 * 3 * 21);
    }
}
