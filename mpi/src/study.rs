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
//!
//! The I/O model ([`block_io`], [`io_model`]): what every rank reads of
//! the mesh file when all read their blocks (its elements, its nodes, and
//! the coordinates of its elements' nodes outside its node range) and
//! writes of the results (its rows), and the time on a parallel file
//! system of a bandwidth per node shared by the node's ranks
//! ([`FileSystem`]: 5 GB/s, 8 ranks per node), against the lead reading
//! and writing everything alone.

use crate::partition::{PartStats, Quality};

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
    let steps = (q.parts.max(1) as f64).log2().ceil();
    iteration(q, 2.0 * steps * m.latency, |s, bytes| {
        (
            compute_bytes(s.owned_nodes, s.row_entries) as f64 / m.mem_bw,
            s.neighbours as f64 * m.latency + bytes as f64 / m.net_bw,
        )
    })
}

/// The iteration of every model: per part its `(compute, halo)` seconds
/// from `cost(part, halo bytes sent)`; the slowest part's sum plus the
/// `reductions`, with the halo figures.
fn iteration(
    q: &Quality,
    reductions: f64,
    cost: impl Fn(&PartStats, usize) -> (f64, f64),
) -> IterationModel {
    let p = q.parts.max(1);
    let (mut worst, mut wc, mut wh) = (0.0f64, 0.0f64, 0.0f64);
    let (mut max_bytes, mut sum_bytes, mut max_nb) = (0, 0usize, 0);
    for s in &q.per_part {
        let bytes = 8 * s.send_values;
        let (c, h) = cost(s, bytes);
        worst = worst.max(c + h);
        wc = wc.max(c);
        wh = wh.max(h);
        max_bytes = max_bytes.max(bytes);
        sum_bytes += bytes;
        max_nb = max_nb.max(s.neighbours);
    }
    IterationModel {
        compute: wc,
        halo: wh,
        reductions,
        total: worst + reductions,
        max_halo_bytes: max_bytes,
        mean_halo_bytes: sum_bytes as f64 / p as f64,
        max_neighbours: max_nb,
    }
}

/// One GPU per rank, for the multi-GPU model ([`gpu_model`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpu {
    /// Name in the tables.
    pub name: &'static str,
    /// Device memory bandwidth (bytes/s, a measured copy's).
    pub hbm_bw: f64,
    /// Seconds of launches per iteration that the bytes do not hide (the
    /// kernels of a distributed iteration are launched one by one: a CUDA
    /// graph cannot hold the MPI calls between them).
    pub launches: f64,
    /// Seconds to bring a reduction's few scalars to the host (a copy and
    /// a stream synchronisation), twice per iteration.
    pub sync: f64,
}

impl Gpu {
    /// An H100 SXM (HBM3, 3.35 TB/s nominal; 3.0 TB/s taken as its copy).
    pub const H100: Gpu = Gpu {
        name: "H100",
        hbm_bw: 3.0e12,
        launches: 24e-6,
        sync: 10e-6,
    };
    /// An H200 (HBM3e, 4.8 TB/s nominal; 4.25 TB/s measured by copy on the
    /// device machine, `profiles/gpu_h200/`).
    pub const H200: Gpu = Gpu {
        name: "H200",
        hbm_bw: 4.25e12,
        launches: 24e-6,
        sync: 10e-6,
    };
}

/// How the halo travels between two GPU ranks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuLink {
    /// Name in the tables.
    pub name: &'static str,
    /// Latency per message (s).
    pub latency: f64,
    /// Bandwidth per rank (bytes/s).
    pub bw: f64,
    /// Staged through host memory: packed on the device, copied to a
    /// pinned host buffer, sent, copied back and unpacked (two more copies
    /// over PCIe, each with its latency); else handed to a CUDA-aware MPI
    /// as device pointers.
    pub staged: bool,
}

impl GpuLink {
    /// NVLink (NVSwitch) through a CUDA-aware MPI: 3 us, 200 GB/s.
    pub const NVLINK: GpuLink = GpuLink {
        name: "NVLink, CUDA-aware",
        latency: 3e-6,
        bw: 200e9,
        staged: false,
    };
    /// NVLink's node, staged through the host (shared memory between the
    /// ranks: 1 us, 10 GB/s).
    pub const NODE_STAGED: GpuLink = GpuLink {
        name: "one node, staged",
        latency: 1e-6,
        bw: 10e9,
        staged: true,
    };
    /// A 400 Gb/s network (InfiniBand NDR) with GPUDirect RDMA: 3 us,
    /// 50 GB/s.
    pub const NET400: GpuLink = GpuLink {
        name: "400 Gb/s, GPUDirect",
        latency: 3e-6,
        bw: 50e9,
        staged: false,
    };
    /// The same network, staged through the host.
    pub const NET400_STAGED: GpuLink = GpuLink {
        name: "400 Gb/s, staged",
        latency: 3e-6,
        bw: 50e9,
        staged: true,
    };
}

/// PCIe 5 x16 between a GPU and its host: what a staged halo pays twice.
const PCIE_BW: f64 = 50e9;
/// Latency of one host-device copy (s).
const PCIE_LATENCY: f64 = 8e-6;

/// Models one distributed Jacobi-CG iteration with one GPU per rank on the
/// partition measured by `q`: compute = the rank's bytes
/// ([`compute_bytes`]) over the device bandwidth plus the launches;
/// halo = its messages and bytes on `link` (staged: plus the two copies
/// over PCIe); reductions = two all-reduces, each a device-host
/// synchronisation plus `ceil(log2 P)` latencies. The iteration is the
/// slowest rank's compute + halo (no overlap: an upper bound) plus the
/// reductions. One GPU has no halo and no all-reduce but still its two
/// synchronisations (the host reads the residual).
pub fn gpu_model(q: &Quality, g: &Gpu, link: &GpuLink) -> IterationModel {
    let steps = (q.parts.max(1) as f64).log2().ceil();
    iteration(q, 2.0 * (g.sync + steps * link.latency), |s, bytes| {
        let c = compute_bytes(s.owned_nodes, s.row_entries) as f64 / g.hbm_bw + g.launches;
        let mut h = 0.0;
        if s.neighbours > 0 {
            h = s.neighbours as f64 * link.latency + bytes as f64 / link.bw;
            if link.staged {
                h += 2.0 * (PCIE_LATENCY + bytes as f64 / PCIE_BW);
            }
        }
        (c, h)
    })
}

/// The parallel file system of the I/O model: a bandwidth per node, shared
/// by the ranks of the node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileSystem {
    /// Bytes per second one node reads or writes (5 GB/s: a node's share
    /// of a Lustre or GPFS file system, or its NVMe).
    pub node_bw: f64,
    /// Ranks per node (8: one per GPU of an 8-GPU node, or 2-core ranks
    /// of a 16-core host).
    pub ranks_per_node: usize,
}

impl Default for FileSystem {
    fn default() -> Self {
        Self {
            node_bw: 5e9,
            ranks_per_node: 8,
        }
    }
}

/// What each rank reads and writes of a run in which every rank reads its
/// blocks ([`crate::slice`]) and writes its rows of the results: bytes
/// per rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RankIo {
    /// Its element block's connectivity.
    pub elements: u64,
    /// Its node block's coordinates.
    pub nodes: u64,
    /// The coordinates of its elements' nodes outside its node block.
    pub halo: u64,
    /// Its rows of the results file: `u` of its node block, the four
    /// element fields of its element block.
    pub write: u64,
}

impl RankIo {
    /// Bytes read.
    pub fn read(&self) -> u64 {
        self.elements + self.nodes + self.halo
    }
}

/// Every rank's [`RankIo`] for `p` ranks reading `mesh` in blocks
/// (`index_bytes` per stored node index: 4 for int32, 8 for int64).
pub fn block_io(mesh: &quadflow_systems::mesh::Mesh, p: usize, index_bytes: u64) -> Vec<RankIo> {
    let (n, ne) = (mesh.nodes(), mesh.elements.len());
    (0..p)
        .map(|r| {
            let nb = crate::slice::block(n, p, r);
            let eb = crate::slice::block(ne, p, r);
            let mut outside: Vec<u32> = mesh.elements[eb.clone()]
                .iter()
                .flatten()
                .copied()
                .filter(|&v| !nb.contains(&(v as usize)))
                .collect();
            outside.sort_unstable();
            outside.dedup();
            RankIo {
                elements: 8 * index_bytes * eb.len() as u64,
                nodes: 16 * nb.len() as u64,
                halo: 16 * outside.len() as u64,
                write: 8 * nb.len() as u64 + 32 * eb.len() as u64,
            }
        })
        .collect()
}

/// The modelled I/O of a run on a [`FileSystem`]: every rank its blocks,
/// against the lead alone reading the mesh and writing the results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IoModel {
    /// Bytes read by a rank: the most, and the mean.
    pub read_max: u64,
    /// Mean bytes read per rank.
    pub read_mean: f64,
    /// Bytes written by a rank, the most.
    pub write_max: u64,
    /// Seconds to read in blocks: the busiest node's bytes over its
    /// bandwidth.
    pub read: f64,
    /// Seconds to write in blocks.
    pub write: f64,
    /// Seconds for the lead alone to read the mesh (all of it, on one
    /// node).
    pub lead_read: f64,
    /// Seconds for the lead alone to write the results.
    pub lead_write: f64,
}

/// Models the I/O of `ranks` (one [`RankIo`] each, in rank order; ranks
/// fill the nodes in order) on `fs`.
pub fn io_model(ranks: &[RankIo], fs: &FileSystem) -> IoModel {
    let per_node = fs.ranks_per_node.max(1);
    let busiest = |f: &dyn Fn(&RankIo) -> u64| {
        ranks
            .chunks(per_node)
            .map(|node| node.iter().map(f).sum::<u64>())
            .max()
            .unwrap_or(0) as f64
    };
    let whole_read: u64 = ranks.iter().map(|r| r.elements + r.nodes).sum();
    let whole_write: u64 = ranks.iter().map(|r| r.write).sum();
    IoModel {
        read_max: ranks.iter().map(RankIo::read).max().unwrap_or(0),
        read_mean: ranks.iter().map(|r| r.read() as f64).sum::<f64>() / ranks.len().max(1) as f64,
        write_max: ranks.iter().map(|r| r.write).max().unwrap_or(0),
        read: busiest(&|r| r.read()) / fs.node_bw,
        write: busiest(&|r| r.write) / fs.node_bw,
        lead_read: whole_read as f64 / fs.node_bw,
        lead_write: whole_write as f64 / fs.node_bw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{Method, partition, quality, tests::lattice};

    #[test]
    fn blocks_read_their_share_and_a_halo() {
        let m = lattice(40, 10, false);
        let fs = FileSystem {
            node_bw: 1e9,
            ranks_per_node: 2,
        };
        let one = block_io(&m, 1, 4);
        assert_eq!(one[0].halo, 0);
        assert_eq!(
            one[0].read(),
            16 * m.nodes() as u64 + 32 * m.elements.len() as u64
        );
        let four = block_io(&m, 4, 4);
        let whole: u64 = four.iter().map(|r| r.elements + r.nodes).sum();
        assert_eq!(whole, one[0].read());
        // a lattice numbered row by row: a block's elements reach about a
        // row of nodes outside its node block
        assert!(four.iter().all(|r| r.halo > 0 && r.halo < 16 * 4 * 81));
        let io = io_model(&four, &fs);
        // two nodes of two ranks: each node about half the data
        assert!(io.read < 0.6 * io.lead_read && io.read > 0.45 * io.lead_read);
        assert_eq!(
            io.lead_write,
            four.iter().map(|r| r.write).sum::<u64>() as f64 / 1e9
        );
    }

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

    #[test]
    fn gpus_are_bound_by_launches_and_synchronisation_when_small() {
        let m = lattice(40, 10, false);
        let q1 = quality(&m, &partition(&m, 1, Method::Rcb).unwrap());
        let q4 = quality(&m, &partition(&m, 4, Method::Rcb).unwrap());
        let one = gpu_model(&q1, &Gpu::H200, &GpuLink::NVLINK);
        assert_eq!(one.halo, 0.0);
        // a tiny mesh: the launches and the two synchronisations are all
        assert!((one.total - (one.compute + 2.0 * Gpu::H200.sync)).abs() < 1e-15);
        assert!(one.compute > Gpu::H200.launches);
        let nv = gpu_model(&q4, &Gpu::H200, &GpuLink::NVLINK);
        let staged = gpu_model(&q4, &Gpu::H200, &GpuLink::NET400_STAGED);
        // four GPUs are slower than one here: the halo and all-reduces
        // cost more than the bytes saved
        assert!(nv.total > one.total);
        // staging adds two PCIe copies per message round
        assert!(staged.halo > nv.halo + 2.0 * PCIE_LATENCY);
        assert_eq!(nv.max_halo_bytes, staged.max_halo_bytes);
    }
}
