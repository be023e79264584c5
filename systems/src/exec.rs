//! How row loops run: on the calling thread or over the current rayon
//! pool, in blocks of rows whose results (and partial sums) are combined in
//! block order, so that both give the same bits.

use rayon::prelude::*;
use std::ops::Range;

/// How a solver runs its row loops: on the calling thread, or split into
/// row blocks over the current rayon pool. Both give the same bits: the
/// blocks and the order of every reduction are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// Single-threaded.
    #[default]
    Serial,
    /// Row blocks on the current rayon pool (call inside `pool.install`).
    Parallel,
}

/// Rows per block of every row loop (and per partial sum of reductions).
pub const BLOCK: usize = 2048;

pub(crate) fn block_range(b: usize, n: usize, size: usize) -> Range<usize> {
    b * size..((b + 1) * size).min(n)
}

/// `f(rows)` for each block of `0..n`, results in block order.
pub(crate) fn map_blocks<R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    f: impl Fn(Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    match exec {
        Exec::Serial => (0..nb).map(|b| f(block_range(b, n, size))).collect(),
        Exec::Parallel => (0..nb)
            .into_par_iter()
            .map(|b| f(block_range(b, n, size)))
            .collect(),
    }
}

/// [`map_blocks`] with a scratch value per worker (`init()` once per
/// rayon job, not per block): `f(scratch, rows)`. `f` must leave the
/// scratch as it found it (the sparse products reset their marks).
pub(crate) fn map_blocks_with<S, R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    match exec {
        Exec::Serial => {
            let mut s = init();
            (0..nb)
                .map(|b| f(&mut s, block_range(b, n, size)))
                .collect()
        }
        Exec::Parallel => (0..nb)
            .into_par_iter()
            .map_init(init, |s, b| f(s, block_range(b, n, size)))
            .collect(),
    }
}

/// Sum of `f(rows)` over blocks, in block order.
pub(crate) fn sum_blocks(
    exec: Exec,
    n: usize,
    f: impl Fn(Range<usize>) -> f64 + Sync + Send,
) -> f64 {
    map_blocks(exec, n, BLOCK, f).iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; returns the
/// sum of the results in block order.
pub fn blocks1(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> f64 + Sync + Send,
) -> f64 {
    let parts: Vec<f64> = match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
    };
    parts.iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; the results in
/// block order.
pub fn map_blocks_mut<R: Send>(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
    }
}

/// `f(start, y_block, z_block)` for the [`BLOCK`]-row blocks of two
/// row-aligned vectors; the results in block order.
pub fn blocks2<R: Send>(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    assert_eq!(y.len(), z.len());
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .zip(z.chunks_mut(BLOCK))
            .enumerate()
            .map(|(c, (a, b))| f(c * BLOCK, a, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .zip(z.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(c, (a, b))| f(c * BLOCK, a, b))
            .collect(),
    }
}

/// As [`blocks1`] with three row-aligned vectors.
pub(crate) fn blocks3(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    w: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64], &mut [f64]) + Sync + Send,
) {
    assert!(y.len() == z.len() && y.len() == w.len());
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .zip(z.chunks_mut(BLOCK))
            .zip(w.chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(c, ((a, b), d))| f(c * BLOCK, a, b, d)),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .zip(z.par_chunks_mut(BLOCK))
            .zip(w.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(c, ((a, b), d))| f(c * BLOCK, a, b, d)),
    }
}

/// `v` in single precision (rounded to nearest).
pub fn to_f32(exec: Exec, v: &[f64]) -> Vec<f32> {
    match exec {
        Exec::Serial => v.iter().map(|&x| x as f32).collect(),
        Exec::Parallel => v.par_iter().map(|&x| x as f32).collect(),
    }
}

/// `a.b`, summed per block in block order.
pub fn dot(exec: Exec, a: &[f64], b: &[f64]) -> f64 {
    sum_blocks(exec, a.len(), |r| {
        a[r.clone()].iter().zip(&b[r]).map(|(x, y)| x * y).sum()
    })
}

/// Places that several threads may write at once, one per index, as long
/// as no two of them touch the same index at the same time: the places of
/// a buffer ([`Disjoint::slice`]), or values scattered in memory such as
/// the ECS components of element entities ([`Disjoint::scattered`]). The
/// engine's one device for shared mutation in parallel loops; every use
/// states why its indices are disjoint.
pub struct Disjoint<'a, T> {
    places: Places<T>,
    _borrow: std::marker::PhantomData<&'a mut T>,
}

enum Places<T> {
    Slice(*mut T, usize),
    Scattered(Vec<*mut T>),
}

// SAFETY: the places are exclusively borrowed for `'a`; the unsafe
// accessors make the callers promise disjoint access, so sending or
// sharing the handle is as safe as sending `&mut T` pieces.
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// The elements of `s`, by position.
    pub fn slice(s: &'a mut [T]) -> Self {
        Self {
            places: Places::Slice(s.as_mut_ptr(), s.len()),
            _borrow: std::marker::PhantomData,
        }
    }

    /// Places given with their index, in any order. Panics unless each
    /// index in `0..len` comes exactly once.
    pub fn scattered(len: usize, places: impl IntoIterator<Item = (usize, &'a mut T)>) -> Self {
        let mut ptrs: Vec<*mut T> = vec![std::ptr::null_mut(); len];
        for (i, p) in places {
            assert!(ptrs[i].is_null(), "place {i} given twice");
            ptrs[i] = p as *mut T;
        }
        assert!(ptrs.iter().all(|p| !p.is_null()), "a place is missing");
        Self {
            places: Places::Scattered(ptrs),
            _borrow: std::marker::PhantomData,
        }
    }

    /// Number of places.
    pub fn len(&self) -> usize {
        match &self.places {
            Places::Slice(_, n) => *n,
            Places::Scattered(v) => v.len(),
        }
    }

    /// Whether there are no places.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address of place `i` (for prefetching; panics if out of range).
    #[inline]
    pub fn ptr(&self, i: usize) -> *mut T {
        match &self.places {
            Places::Slice(p, n) => {
                assert!(i < *n, "place {i} of {n}");
                p.wrapping_add(i)
            }
            Places::Scattered(v) => v[i],
        }
    }

    /// Place `i`, to write.
    ///
    /// # Safety
    /// No other thread reads or writes place `i` while the reference
    /// lives.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, i: usize) -> &mut T {
        // SAFETY: a live exclusive borrow (the constructors), exclusive per
        // the caller.
        unsafe { &mut *self.ptr(i) }
    }

    /// Place `i`, to read.
    ///
    /// # Safety
    /// No other thread writes place `i` while the reference lives.
    #[inline]
    pub unsafe fn get(&self, i: usize) -> &T {
        // SAFETY: as `get_mut`, for reading.
        unsafe { &*self.ptr(i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_places_fill_in_parallel() {
        let mut v = vec![0usize; 10_000];
        let d = Disjoint::slice(&mut v);
        (0..10_000).into_par_iter().for_each(|i| {
            // SAFETY: each index is written by one iteration.
            unsafe { *d.get_mut(i) = 2 * i };
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == 2 * i));
        let mut a = [1, 2, 3];
        let mut b = [4, 5, 6];
        let d = Disjoint::scattered(2, [(1, &mut a), (0, &mut b)]);
        // SAFETY: one thread.
        unsafe { d.get_mut(0)[0] = 40 };
        assert_eq!(d.len(), 2);
        assert_eq!(b[0], 40);
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn a_place_given_twice_is_refused() {
        let mut a = 1;
        let mut b = 2;
        let _ = Disjoint::scattered(2, [(0, &mut a), (0, &mut b)]);
    }
}
