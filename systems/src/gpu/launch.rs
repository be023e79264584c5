//! Launch shapes: grid and block sizes for element, row and reduction
//! kernels, and the SpMV thread-group size. Pure functions, tested on the
//! CPU.

/// Threads per block of every kernel (a multiple of 32, at most 1024: the
/// block reductions of `common.cuh` rely on both).
pub const BLOCK: u32 = 256;

// The block reductions of `common.cuh` need whole warps and at most 32.
const _: () = assert!(BLOCK.is_multiple_of(32) && BLOCK <= 1024);

/// Resident blocks per multiprocessor assumed when sizing reduction grids.
pub const BLOCKS_PER_SM: u32 = 8;

/// A grid and block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Blocks.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
}

impl Shape {
    /// As cudarc's launch configuration (no dynamic shared memory).
    pub fn config(self) -> cudarc::driver::LaunchConfig {
        cudarc::driver::LaunchConfig {
            grid_dim: (self.grid, 1, 1),
            block_dim: (self.block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Total threads.
    pub fn threads(self) -> u64 {
        self.grid as u64 * self.block as u64
    }
}

/// Blocks needed for `items` at `per_block` items per block, at least 1
/// and at most `max_blocks` (kernels loop grid-stride over the rest).
pub fn blocks_for(items: usize, per_block: u32, max_blocks: u32) -> u32 {
    let per_block = per_block.max(1) as usize;
    let need = items.div_ceil(per_block).max(1);
    need.min(max_blocks.max(1) as usize) as u32
}

/// One thread per item (elements, edges, nodes): as many blocks as the
/// items need (capped at 2^31 - 1 blocks).
pub fn per_item(items: usize) -> Shape {
    Shape {
        grid: blocks_for(items, BLOCK, i32::MAX as u32),
        block: BLOCK,
    }
}

/// Most blocks a reduction kernel is launched with on a device of `sms`
/// multiprocessors: one full wave. The partial-sum buffer holds
/// `max_reduction_blocks(sms) * 3` doubles.
pub fn max_reduction_blocks(sms: u32) -> u32 {
    sms.max(1) * BLOCKS_PER_SM
}

/// One thread per row with a grid-wide sum: at most one wave of blocks,
/// each thread looping over several rows when there are more.
pub fn per_row_reduce(rows: usize, sms: u32) -> Shape {
    Shape {
        grid: blocks_for(rows, BLOCK, max_reduction_blocks(sms)),
        block: BLOCK,
    }
}

/// `group` threads per row with a grid-wide sum (the SpMV kernels).
pub fn per_row_group_reduce(rows: usize, group: u32, sms: u32) -> Shape {
    let rows_per_block = BLOCK / group.clamp(1, 32);
    Shape {
        grid: blocks_for(rows, rows_per_block, max_reduction_blocks(sms)),
        block: BLOCK,
    }
}

/// Threads per row of the SpMV: the power of two in 2..=32 closest to half
/// the mean row length, so that each thread handles about two entries
/// (Quad-8 rows of 9-21 entries, mean ~12-16, give 8: on an H100 the
/// 481k-row channel ran its CG 4% faster with 8 than with 4, and 10% faster
/// than with 2).
pub fn spmv_group(mean_row_len: f64) -> u32 {
    if !mean_row_len.is_finite() || mean_row_len <= 0.0 {
        return 8;
    }
    let target = (mean_row_len / 2.0).max(1.0);
    let mut best = 2u32;
    for g in [2u32, 4, 8, 16, 32] {
        if (g as f64 / target).ln().abs() < (best as f64 / target).ln().abs() {
            best = g;
        }
    }
    best
}

/// Slots of the CG history ring for a host check every `check_every`
/// iterations: the host reads the residuals of iterations `it0..=it0 +
/// check_every` after a chunk, so the ring must hold that many plus one
/// slot being written.
pub fn history_ring(check_every: usize) -> usize {
    check_every.max(1) + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_and_row_shapes() {
        assert_eq!(per_item(0).grid, 1);
        assert_eq!(per_item(1).grid, 1);
        assert_eq!(per_item(256).grid, 1);
        assert_eq!(per_item(257).grid, 2);
        assert_eq!(per_item(1_000_000).grid, 3907);
        assert!(per_item(1_000_000).threads() >= 1_000_000);
        assert_eq!(per_item(10).config().block_dim, (256, 1, 1));
    }

    #[test]
    fn reduction_grids_are_capped_at_one_wave() {
        // H100: 132 SMs
        assert_eq!(max_reduction_blocks(132), 1056);
        assert_eq!(per_row_reduce(100, 132).grid, 1);
        assert_eq!(per_row_reduce(1_300_000, 132).grid, 1056);
        assert_eq!(per_row_reduce(5000, 132).grid, 20);
        assert_eq!(per_row_reduce(5000, 0).grid, 8);
        // group kernels: 256 / G rows per block
        assert_eq!(per_row_group_reduce(64, 4, 132).grid, 1);
        assert_eq!(per_row_group_reduce(65, 4, 132).grid, 2);
        assert_eq!(per_row_group_reduce(1000, 32, 132).grid, 125);
        assert_eq!(per_row_group_reduce(10_000_000, 8, 132).grid, 1056);
        assert_eq!(blocks_for(10, 0, 0), 1);
    }

    #[test]
    fn spmv_group_for_row_lengths() {
        assert_eq!(spmv_group(16.0), 8);
        assert_eq!(spmv_group(15.7), 8);
        assert_eq!(spmv_group(12.2), 8);
        assert_eq!(spmv_group(9.0), 4);
        assert_eq!(spmv_group(5.0), 2);
        assert_eq!(spmv_group(1.0), 2);
        assert_eq!(spmv_group(30.0), 16);
        assert_eq!(spmv_group(64.0), 32);
        assert_eq!(spmv_group(1000.0), 32);
        assert_eq!(spmv_group(f64::NAN), 8);
        assert_eq!(spmv_group(0.0), 8);
        for m in [1.0, 7.0, 19.0, 100.0] {
            assert!(crate::gpu::kernels::SPMV_GROUPS.contains(&spmv_group(m)));
        }
    }

    #[test]
    fn ring_holds_a_chunk() {
        assert_eq!(history_ring(32), 34);
        assert_eq!(history_ring(0), 3);
    }
}
