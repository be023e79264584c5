//! How row loops run: on the calling thread, or in blocks of rows over
//! several threads, whose results (and partial sums) are combined in block
//! order, so that both give the same bits.
//!
//! Under [`Exec::Parallel`] the blocks go to the [`Team`] installed on the
//! calling thread ([`Team::install`]: the parallel backend installs its
//! team around the solve), each member taking a fixed contiguous run of
//! blocks (a static schedule: the same rows on the same thread from one
//! loop to the next); without an installed team, to the current rayon
//! pool, one block per task. Inside a team job the loops run on the
//! calling thread.

mod team;

pub use team::{SPIN, Team, YIELD};

use rayon::prelude::*;
use std::ops::Range;

/// How a solver runs its row loops: on the calling thread, or split into
/// row blocks over several threads (the installed [`Team`], else the
/// current rayon pool). Both give the same bits: the blocks and the order
/// of every reduction are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// Single-threaded.
    #[default]
    Serial,
    /// Row blocks on the installed [`Team`] ([`Team::install`]), else on
    /// the current rayon pool (call inside `pool.install`).
    Parallel,
}

impl Exec {
    /// The executor of the calling thread: [`Exec::Parallel`] while a
    /// [`Team`] is installed on it ([`Team::install`]: the parallel
    /// backend's solve), else [`Exec::Serial`]. For steps whose callers
    /// take no executor (the equilibration every solver shares); both give
    /// the same bits.
    pub fn current() -> Exec {
        team::with_current(|t| {
            if t.is_some() {
                Exec::Parallel
            } else {
                Exec::Serial
            }
        })
    }
}

/// Rows per block of every row loop (and per partial sum of reductions).
pub const BLOCK: usize = 2048;

pub(crate) fn block_range(b: usize, n: usize, size: usize) -> Range<usize> {
    b * size..((b + 1) * size).min(n)
}

/// `t` contiguous blocks `(start, end)` of `0..n`, in order, even in
/// `chunk`-row chunks (every block starts on a chunk boundary; with fewer
/// chunks than blocks, the empty blocks are the last).
pub fn team_blocks(n: usize, t: usize, chunk: usize) -> Vec<(usize, usize)> {
    let t = t.max(1);
    let nc = n.div_ceil(chunk);
    (0..t)
        .map(|b| {
            let (c0, c1) = ((nc * b).div_ceil(t), (nc * (b + 1)).div_ceil(t));
            ((c0 * chunk).min(n), (c1 * chunk).min(n))
        })
        .collect()
}

/// Where an [`Exec::Parallel`] loop runs.
enum Par<'a> {
    Team(&'a Team),
    Rayon,
    /// Inside a team job: the calling thread alone.
    Inline,
}

fn par<R>(f: impl FnOnce(Par<'_>) -> R) -> R {
    team::with_current(|t| match t {
        Some(t) => f(Par::Team(t)),
        None if team::in_job() => f(Par::Inline),
        None => f(Par::Rayon),
    })
}

/// `f(b)` for every block `b` of `0..nb`, its result stored at `b`.
fn team_map<R: Send>(team: &Team, nb: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = Vec::with_capacity(nb);
    out.resize_with(nb, || None);
    {
        let places = Disjoint::slice(&mut out);
        let parts = team.size().min(nb);
        team.run(parts, |t| {
            for b in Team::part(t, parts, nb) {
                // SAFETY: the members' parts are disjoint.
                unsafe { *places.get_mut(b) = Some(f(b)) };
            }
        });
    }
    out.into_iter()
        .map(|r| r.expect("every block ran"))
        .collect()
}

/// `f(rows)` for each block of `0..n`, results in block order.
pub(crate) fn map_blocks<R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    f: impl Fn(Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    let serial =
        |f: &dyn Fn(Range<usize>) -> R| (0..nb).map(|b| f(block_range(b, n, size))).collect();
    match exec {
        Exec::Serial => serial(&f),
        Exec::Parallel => par(|p| match p {
            Par::Team(t) if nb > 1 => team_map(t, nb, |b| f(block_range(b, n, size))),
            Par::Team(_) | Par::Inline => serial(&f),
            Par::Rayon => (0..nb)
                .into_par_iter()
                .map(|b| f(block_range(b, n, size)))
                .collect(),
        }),
    }
}

/// [`map_blocks`] with a scratch value per worker (`init()` once per
/// rayon job or team member, not per block): `f(scratch, rows)`. `f` must
/// leave the scratch as it found it (the sparse products reset their
/// marks).
pub(crate) fn map_blocks_with<S, R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    let serial = || {
        let mut s = init();
        (0..nb)
            .map(|b| f(&mut s, block_range(b, n, size)))
            .collect()
    };
    match exec {
        Exec::Serial => serial(),
        Exec::Parallel => par(|p| match p {
            Par::Team(team) if nb > 1 => {
                let mut out: Vec<Option<R>> = Vec::with_capacity(nb);
                out.resize_with(nb, || None);
                {
                    let places = Disjoint::slice(&mut out);
                    let parts = team.size().min(nb);
                    team.run(parts, |t| {
                        let part = Team::part(t, parts, nb);
                        if part.is_empty() {
                            return;
                        }
                        let mut s = init();
                        for b in part {
                            // SAFETY: the members' parts are disjoint.
                            unsafe {
                                *places.get_mut(b) = Some(f(&mut s, block_range(b, n, size)))
                            };
                        }
                    });
                }
                out.into_iter()
                    .map(|r| r.expect("every block ran"))
                    .collect()
            }
            Par::Team(_) | Par::Inline => serial(),
            Par::Rayon => (0..nb)
                .into_par_iter()
                .map_init(&init, |s, b| f(s, block_range(b, n, size)))
                .collect(),
        }),
    }
}

/// `f(b)` for every index `b` of `0..n` (a few coarse jobs, such as the
/// copies of blocks); under [`Exec::Parallel`] spread over the threads.
pub(crate) fn for_each_index(exec: Exec, n: usize, f: impl Fn(usize) + Sync + Send) {
    match exec {
        Exec::Serial => (0..n).for_each(f),
        Exec::Parallel => par(|p| match p {
            Par::Team(t) if n > 1 => {
                let parts = t.size().min(n);
                t.run(parts, |m| Team::part(m, parts, n).for_each(&f))
            }
            Par::Team(_) | Par::Inline => (0..n).for_each(&f),
            Par::Rayon => (0..n).into_par_iter().for_each(f),
        }),
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

/// `f(start, [y_block, ...])` for the [`BLOCK`]-row blocks of the
/// row-aligned vectors `ys`, results in block order.
fn blocks_n<const N: usize, R: Send>(
    exec: Exec,
    ys: [&mut [f64]; N],
    f: impl Fn(usize, [&mut [f64]; N]) -> R + Sync + Send,
) -> Vec<R> {
    let n = ys.first().map_or(0, |y| y.len());
    assert!(ys.iter().all(|y| y.len() == n), "row-aligned vectors");
    let nb = n.div_ceil(BLOCK);
    let places: [Disjoint<'_, f64>; N] = ys.map(Disjoint::slice);
    let block = |b: usize| {
        let r = block_range(b, n, BLOCK);
        // SAFETY: every caller below runs each block once, and blocks
        // are disjoint.
        f(
            r.start,
            std::array::from_fn(|k| unsafe { places[k].range_mut(r.clone()) }),
        )
    };
    match exec {
        Exec::Serial => (0..nb).map(block).collect(),
        Exec::Parallel => par(|p| match p {
            Par::Team(t) if nb > 1 => team_map(t, nb, block),
            Par::Team(_) | Par::Inline => (0..nb).map(block).collect(),
            Par::Rayon => (0..nb).into_par_iter().map(block).collect(),
        }),
    }
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; returns the
/// sum of the results in block order.
pub fn blocks1(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> f64 + Sync + Send,
) -> f64 {
    blocks_n(exec, [y], |s, [v]| f(s, v)).iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; the results in
/// block order.
pub fn map_blocks_mut<R: Send>(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    blocks_n(exec, [y], |s, [v]| f(s, v))
}

/// `f(start, y_block, z_block)` for the [`BLOCK`]-row blocks of two
/// row-aligned vectors; the results in block order.
pub fn blocks2<R: Send>(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    blocks_n(exec, [y, z], |s, [a, b]| f(s, a, b))
}

/// As [`blocks1`] with three row-aligned vectors.
pub(crate) fn blocks3(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    w: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64], &mut [f64]) + Sync + Send,
) {
    blocks_n(exec, [y, z, w], |s, [a, b, c]| f(s, a, b, c));
}

/// `v` in single precision (rounded to nearest).
pub fn to_f32(exec: Exec, v: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0f32; v.len()];
    {
        let places = Disjoint::slice(&mut out);
        let nb = v.len().div_ceil(BLOCK);
        for_each_index(exec, nb, |b| {
            let r = block_range(b, v.len(), BLOCK);
            // SAFETY: blocks are disjoint, each run once.
            let o = unsafe { places.range_mut(r.clone()) };
            for (o, &x) in o.iter_mut().zip(&v[r]) {
                *o = x as f32;
            }
        });
    }
    out
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

    /// The places `r` of a [`Disjoint::slice`], to write (panics for
    /// scattered places or a range out of bounds).
    ///
    /// # Safety
    /// No other thread reads or writes these places while the slice lives.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, r: Range<usize>) -> &mut [T] {
        match &self.places {
            Places::Slice(p, n) => {
                assert!(r.start <= r.end && r.end <= *n, "places {r:?} of {n}");
                // SAFETY: within the exclusively borrowed slice (asserted),
                // exclusive per the caller.
                unsafe { std::slice::from_raw_parts_mut(p.add(r.start), r.len()) }
            }
            Places::Scattered(_) => panic!("range_mut of scattered places"),
        }
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
    fn team_blocks_split_on_chunks_with_empty_blocks_last() {
        for (n, t, chunk) in [(0, 2, 8), (5, 2, 8), (17, 2, 8), (100, 3, 8), (64, 4, 8)] {
            let b = team_blocks(n, t, chunk);
            assert_eq!(b.len(), t);
            assert_eq!((b[0].0, b[t - 1].1), (0, n));
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
            assert!(b.iter().all(|&(s, _)| s % chunk == 0 || s == n));
            let first_empty = b.iter().position(|x| x.0 == x.1).unwrap_or(t);
            assert!(b[first_empty..].iter().all(|x| x.0 == x.1), "{b:?}");
        }
    }

    #[test]
    fn loops_give_the_same_results_on_every_executor() {
        let n = 5 * BLOCK + 17;
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let serial = dot(Exec::Serial, &x, &x);
        let team = Team::new(3, "test").unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let on_team = team.install(|| dot(Exec::Parallel, &x, &x));
        let on_pool = pool.install(|| dot(Exec::Parallel, &x, &x));
        assert_eq!(serial.to_bits(), on_team.to_bits());
        assert_eq!(serial.to_bits(), on_pool.to_bits());
        assert_eq!(Exec::current(), Exec::Serial);
        team.install(|| assert_eq!(Exec::current(), Exec::Parallel));
        let (mut y, mut z, mut w) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        team.install(|| {
            blocks3(Exec::Parallel, &mut y, &mut z, &mut w, |s, a, b, c| {
                for l in 0..a.len() {
                    (a[l], b[l], c[l]) = (x[s + l], 2.0 * x[s + l], 3.0 * x[s + l]);
                }
            })
        });
        assert!((0..n).all(|i| y[i] == x[i] && z[i] == 2.0 * x[i] && w[i] == 3.0 * x[i]));
        assert_eq!(to_f32(Exec::Parallel, &x), to_f32(Exec::Serial, &x));
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn a_place_given_twice_is_refused() {
        let mut a = 1;
        let mut b = 2;
        let _ = Disjoint::scattered(2, [(0, &mut a), (0, &mut b)]);
    }
}
