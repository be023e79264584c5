//! Reading the large numeric datasets of a mesh file on all cores, and
//! encoding them for writing (see [`encode`]).
//!
//! hdf5-pure reads a dataset a window of rows at a time and inflates its
//! chunks one after another, converting through byte buffers. For the layouts
//! quadflow and h5py write (contiguous, or chunked by whole rows with deflate,
//! optionally after shuffle) this module reads the file's bytes with
//! positional reads in blocks of about 512 KiB, each decoded (inflated,
//! unshuffled, converted) straight into its place in the output, the blocks
//! in parallel on the current rayon pool. It finds where the bytes are
//! through hdf5-pure's public layout and chunk-index API
//! ([`Dataset::layout`], [`Dataset::chunks`], [`Dataset::filters`]), so it
//! parses no HDF5 structure itself.
//!
//! It is only a fast path: [`read_into`] returns `false` for anything else (big-
//! endian or unusual types, other filters, chunks skipping a filter, missing
//! chunks, chunks not spanning whole rows, a chunk that does not inflate to its
//! size) and the caller then reads the dataset with hdf5-pure, which handles
//! every layout and reports a damaged file properly.

use std::fs;

use flate2::{Decompress, FlushDecompress, Status};
use hdf5_pure::{Dataset, Datatype, DatatypeByteOrder, Layout};
use rayon::prelude::*;

/// HDF5 filter identifiers (`H5Zpublic.h`).
const FILTER_DEFLATE: u16 = 1;
const FILTER_SHUFFLE: u16 = 2;

/// Elements converted per parallel task of a contiguous dataset.
const BLOCK: usize = 1 << 16;

/// The largest chunk this module inflates when the chunk is larger than the
/// whole dataset (possible for a dataset that can grow).
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// A stored element type this module decodes: little-endian IEEE f64, and
/// little-endian signed 32- and 64-bit integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stored {
    /// IEEE 754 binary64, little-endian.
    F64,
    /// Signed 32-bit integer, little-endian.
    I32,
    /// Signed 64-bit integer, little-endian.
    I64,
}

impl Stored {
    /// The stored type of a dataset of datatype `dt`, when it is one of these
    /// with its standard bit layout.
    pub(super) fn of(dt: &Datatype) -> Option<Stored> {
        match dt {
            Datatype::FloatingPoint {
                size: 8,
                byte_order: DatatypeByteOrder::LittleEndian,
                layout,
            } if layout.bit_offset == 0 && layout.bit_precision == 64 => Some(Stored::F64),
            Datatype::FixedPoint {
                size,
                byte_order: DatatypeByteOrder::LittleEndian,
                layout,
            } if layout.signed
                && layout.bit_offset == 0
                && u32::from(layout.bit_precision) == size * 8 =>
            {
                match size {
                    4 => Some(Stored::I32),
                    8 => Some(Stored::I64),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Bytes per element.
    fn size(self) -> usize {
        match self {
            Stored::F64 | Stored::I64 => 8,
            Stored::I32 => 4,
        }
    }
}

/// An output element type: what it can be decoded from, and how.
pub(super) trait Target: Copy + Send + Sync {
    /// Whether values stored as `kind` convert to this type exactly.
    fn accepts(kind: Stored) -> bool;
    /// The value of the element whose little-endian bytes are `b` (exactly
    /// `kind.size()` of them), for a `kind` this type accepts.
    fn decode(kind: Stored, b: &[u8]) -> Self;
}

impl Target for f64 {
    fn accepts(kind: Stored) -> bool {
        kind == Stored::F64
    }

    #[inline(always)]
    fn decode(_kind: Stored, b: &[u8]) -> f64 {
        f64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}

impl Target for i64 {
    fn accepts(kind: Stored) -> bool {
        matches!(kind, Stored::I32 | Stored::I64)
    }

    #[inline(always)]
    fn decode(kind: Stored, b: &[u8]) -> i64 {
        match kind {
            Stored::I32 => i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))),
            _ => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }
}

/// Converts the elements stored in `src` into `dst`, element by element.
/// `src` holds at least `dst.len()` elements.
fn convert<T: Target>(kind: Stored, src: &[u8], dst: &mut [T]) {
    // One loop per kind, so that the conversion inside is a plain load.
    match kind {
        Stored::F64 => convert_as::<T, 8>(kind, src, dst),
        Stored::I32 => convert_as::<T, 4>(kind, src, dst),
        Stored::I64 => convert_as::<T, 8>(kind, src, dst),
    }
}

fn convert_as<T: Target, const N: usize>(kind: Stored, src: &[u8], dst: &mut [T]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(N)) {
        *d = T::decode(kind, s);
    }
}

/// Converts the elements `skip..skip + dst.len()` of a chunk that went
/// through HDF5's shuffle filter: byte `b` of element `j` is at
/// `src[b * n + j]`, with `n` elements in the whole chunk.
fn convert_unshuffled_from<T: Target>(
    kind: Stored,
    src: &[u8],
    n: usize,
    skip: usize,
    dst: &mut [T],
) {
    match kind {
        Stored::F64 | Stored::I64 => unshuffle_from::<T, 8>(kind, src, n, skip, dst),
        Stored::I32 => unshuffle_from::<T, 4>(kind, src, n, skip, dst),
    }
}

fn unshuffle_from<T: Target, const N: usize>(
    kind: Stored,
    src: &[u8],
    n: usize,
    skip: usize,
    dst: &mut [T],
) {
    let planes: [&[u8]; N] = std::array::from_fn(|b| &src[b * n + skip..b * n + skip + dst.len()]);
    for (j, d) in dst.iter_mut().enumerate() {
        let bytes: [u8; N] = std::array::from_fn(|b| planes[b][j]);
        *d = T::decode(kind, &bytes);
    }
}

/// Reads all of dataset `ds` of shape `shape` (rank 1 or 2), stored as
/// `kind`, into `out` (one element per value, row-major), reading the bytes
/// from `file`, the file `ds` belongs to.
///
/// Returns `true` when `out` holds the dataset, `false` when the dataset is
/// outside this fast path; `out` is then unspecified and the caller reads the
/// dataset another way.
pub(super) fn read_into<T: Target>(
    file: &fs::File,
    ds: &Dataset,
    shape: &[u64],
    kind: Stored,
    out: &mut [T],
) -> bool {
    if !T::accepts(kind) || !(1..=2).contains(&shape.len()) {
        return false;
    }
    let Some(count) = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    else {
        return false;
    };
    if count != out.len() {
        return false;
    }
    if count == 0 {
        return true;
    }
    read_rows_into(file, ds, shape, kind, 0, out).is_some()
}

/// Reads rows `first..first + out.len() / row` of dataset `ds` (shape
/// `shape`, rank 1 or 2, `row` values a row), stored as `kind`, into `out`,
/// as [`read_into`] reads the whole: one positional read of the rows for a
/// contiguous dataset, only the chunks that hold them for a chunked one.
/// Returns the bytes read from the file, or `None` when the dataset is
/// outside this fast path (the caller reads it another way).
pub(super) fn read_rows_into<T: Target>(
    file: &fs::File,
    ds: &Dataset,
    shape: &[u64],
    kind: Stored,
    first: usize,
    out: &mut [T],
) -> Option<u64> {
    if !T::accepts(kind) || !(1..=2).contains(&shape.len()) {
        return None;
    }
    let rows = usize::try_from(shape[0]).ok()?;
    let row = shape[1..]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))?;
    if row == 0 || !out.len().is_multiple_of(row) || first.checked_add(out.len() / row)? > rows {
        return None;
    }
    if out.is_empty() {
        return Some(0);
    }
    let esz = kind.size();
    match ds.layout() {
        Ok(Layout::Contiguous {
            address: Some(address),
            size,
        }) => {
            let total = (rows * row * esz) as u64;
            let at = address.checked_add((first * row * esz) as u64)?;
            (size == total && read_contiguous(file, at, (out.len() * esz) as u64, kind, out))
                .then_some((out.len() * esz) as u64)
        }
        Ok(Layout::Chunked { chunk_shape, .. }) => {
            read_chunked(file, ds, shape, &chunk_shape, kind, first, out)
        }
        _ => None,
    }
}

/// Reads the values `ids` (increasing, no repeats) of the 1-D dataset
/// `ds` of `len` values, stored as `kind`, into `out` (one per id): for a
/// contiguous dataset one positional read per run of ids less than
/// [`GAP`] values apart, for a chunked one the chunks that hold them.
/// Returns the bytes read, or `None` outside this fast path.
pub(super) fn read_scattered<T: Target + Default>(
    file: &fs::File,
    ds: &Dataset,
    len: usize,
    kind: Stored,
    ids: &[u32],
    out: &mut [T],
) -> Option<u64> {
    if !T::accepts(kind) || ids.len() != out.len() || ids.last().is_some_and(|&v| v as usize >= len)
    {
        return None;
    }
    if ids.is_empty() {
        return Some(0);
    }
    let esz = kind.size();
    // runs of ids: (first index into ids, end index into ids)
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for k in 1..=ids.len() {
        if k == ids.len() || ids[k] - ids[k - 1] > GAP {
            runs.push((start, k));
            start = k;
        }
    }
    match ds.layout() {
        Ok(Layout::Contiguous {
            address: Some(address),
            size,
        }) => {
            if size != (len * esz) as u64 {
                return None;
            }
            let outs = split_by_runs(out, &runs);
            let read: Option<Vec<u64>> = runs
                .par_iter()
                .zip(outs)
                .map_init(Vec::new, |buf, (&(a, b), dst)| {
                    let (lo, hi) = (ids[a] as usize, ids[b - 1] as usize + 1);
                    let bytes = (hi - lo) * esz;
                    let at = address.checked_add((lo * esz) as u64)?;
                    (fit(buf, bytes as u64, usize::MAX) && read_at(file, buf, at)).then_some(())?;
                    for (d, &v) in dst.iter_mut().zip(&ids[a..b]) {
                        let o = (v as usize - lo) * esz;
                        convert(kind, &buf[o..o + esz], std::slice::from_mut(d));
                    }
                    Some(bytes as u64)
                })
                .collect();
            read.map(|v| v.iter().sum())
        }
        Ok(Layout::Chunked { chunk_shape, .. }) => {
            // the chunks holding the ids, each read once
            let band = usize::try_from(*chunk_shape.first()?).ok()?.max(1);
            let mut total = 0;
            let mut k = 0;
            let mut tmp: Vec<T> = Vec::new();
            while k < ids.len() {
                let c = ids[k] as usize / band;
                let end = k + ids[k..].partition_point(|&v| v as usize / band == c);
                let (lo, hi) = (c * band, ((c + 1) * band).min(len));
                tmp.clear();
                tmp.resize(hi - lo, T::default());
                total += read_chunked(file, ds, &[len as u64], &chunk_shape, kind, lo, &mut tmp)?;
                for (d, &v) in out[k..end].iter_mut().zip(&ids[k..end]) {
                    *d = tmp[v as usize - lo];
                }
                k = end;
            }
            Some(total)
        }
        _ => None,
    }
}

/// Ids less than this many values apart are read in one positional read
/// (the values between them are read and dropped: 4 KiB of f64).
pub(super) const GAP: u32 = 512;

/// `out` split into the consecutive pieces `runs` say.
fn split_by_runs<'a, T>(mut out: &'a mut [T], runs: &[(usize, usize)]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(runs.len());
    for &(a, b) in runs {
        let (head, tail) = std::mem::take(&mut out).split_at_mut(b - a);
        pieces.push(head);
        out = tail;
    }
    pieces
}

/// Fills `buf` with the bytes of `file` from `offset` on; `false` when the
/// file ends first or cannot be read.
#[cfg(unix)]
fn read_at(file: &fs::File, buf: &mut [u8], offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).is_ok()
}

/// Positional reads need a Unix `pread`; elsewhere the fast path declines.
#[cfg(not(unix))]
fn read_at(_file: &fs::File, _buf: &mut [u8], _offset: u64) -> bool {
    false
}

/// Resizes `buf` to `len` bytes (keeping its allocation) unless `len` is
/// more than a chunk can be; `false` then.
fn fit(buf: &mut Vec<u8>, len: u64, limit: usize) -> bool {
    match usize::try_from(len) {
        Ok(n) if n <= limit => {
            buf.resize(n, 0);
            true
        }
        _ => false,
    }
}

fn read_contiguous<T: Target>(
    file: &fs::File,
    address: u64,
    size: u64,
    kind: Stored,
    out: &mut [T],
) -> bool {
    let esz = kind.size();
    if size != (out.len() * esz) as u64 {
        return false;
    }
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .map_init(Vec::new, |buf, (i, dst)| {
            let Some(offset) = address.checked_add((i * BLOCK * esz) as u64) else {
                return false;
            };
            fit(buf, (dst.len() * esz) as u64, BLOCK * esz) && read_at(file, buf, offset) && {
                convert(kind, buf, dst);
                true
            }
        })
        .all(|ok| ok)
}

/// Reads rows `first..first + out.len() / row` of a chunked dataset: the
/// chunks (bands of whole rows) that hold them, inflated in parallel, each
/// converted straight into its part of `out`. The bytes read, or `None`.
fn read_chunked<T: Target>(
    file: &fs::File,
    ds: &Dataset,
    shape: &[u64],
    chunk_shape: &[u64],
    kind: Stored,
    first: usize,
    out: &mut [T],
) -> Option<u64> {
    // Chunks of whole rows only: then each chunk is one run of the output.
    if chunk_shape.len() != shape.len() || chunk_shape[1..] != shape[1..] || chunk_shape[0] == 0 {
        return None;
    }
    let shuffled = match ds.filters().as_slice() {
        [FILTER_DEFLATE] => false,
        [FILTER_SHUFFLE, FILTER_DEFLATE] => true,
        _ => return None,
    };
    let mut chunks = ds.chunks().ok()?;
    let band = usize::try_from(chunk_shape[0]).ok()?;
    let rows = usize::try_from(shape[0]).ok()?;
    let row_len = shape[1..]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))?;
    let esz = kind.size();
    let chunk_len = band.checked_mul(row_len)?;
    // A chunk may reach past the dataset's end, but one far larger than the
    // dataset is left to hdf5-pure rather than allocated here.
    let chunk_bytes = chunk_len.saturating_mul(esz);
    if chunk_bytes > (rows * row_len * esz).max(MAX_CHUNK_BYTES) {
        return None;
    }
    // Exactly one chunk per band of rows, each whole and unmasked.
    chunks.sort_unstable_by_key(|c| c.offset.first().copied());
    let complete = chunks.len() == rows.div_ceil(band)
        && chunks.iter().enumerate().all(|(i, c)| {
            c.filter_mask == 0
                && c.offset.first() == Some(&((i * band) as u64))
                && c.offset[1..].iter().all(|&o| o == 0)
        });
    if !complete {
        return None;
    }
    // the chunks holding the rows, and each one's piece of `out`
    let last = first + out.len() / row_len;
    let (c0, c1) = (first / band, last.div_ceil(band));
    let mut pieces: Vec<(usize, &mut [T])> = Vec::with_capacity(c1 - c0);
    let mut rest = out;
    for c in c0..c1 {
        let (lo, hi) = ((c * band).max(first), ((c + 1) * band).min(last));
        let (head, tail) = std::mem::take(&mut rest).split_at_mut((hi - lo) * row_len);
        // the piece starts this many values into the chunk
        pieces.push(((lo - c * band) * row_len, head));
        rest = tail;
    }
    // A stored chunk larger than this is not deflate output of this chunk.
    let stored_limit = chunk_bytes + chunk_bytes / 8 + 1024;
    pieces
        .into_par_iter()
        .zip(chunks[c0..c1].par_iter())
        .map_init(
            || (Decompress::new(true), Vec::new(), Vec::new()),
            |(inflater, src, buf), ((skip, dst), c)| {
                if !fit(src, c.storage_size, stored_limit) || !read_at(file, src, c.address) {
                    return None;
                }
                // One byte of room past the chunk tells an overlong stream.
                buf.resize(chunk_bytes + 1, 0);
                inflater.reset(true);
                match inflater.decompress(src, buf, FlushDecompress::Finish) {
                    Ok(Status::StreamEnd) if inflater.total_out() == chunk_bytes as u64 => {}
                    _ => return None,
                }
                if shuffled {
                    convert_unshuffled_from(kind, buf, chunk_len, skip, dst);
                } else {
                    convert(kind, &buf[skip * esz..], dst);
                }
                Some(c.storage_size)
            },
        )
        .collect::<Option<Vec<u64>>>()
        .map(|v| v.iter().sum())
}

/// `n` zeroed values, for an output this module fills. The allocation is
/// fresh zero pages from the kernel, and on Linux they are marked for
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`; it changes nothing where
/// THP is off or always on): a 10M-node mesh then faults in some 200 huge
/// pages instead of 100,000 small ones, which dominated reading it. NumPy
/// does the same for its large arrays.
pub(super) fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    advise_huge_pages(v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    v
}

/// Advises the kernel to back the whole 2 MiB pages inside `len` bytes at
/// `ptr` with transparent huge pages. Advice only: failure changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *const u8, len: usize) {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    /// `MADV_HUGEPAGE` of `<sys/mman.h>` (the same on every Linux target).
    const MADV_HUGEPAGE: c_int = 14;
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize).saturating_add(len) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the live allocation of `len` bytes
        // at `ptr`, and MADV_HUGEPAGE only changes how its pages are backed,
        // never their contents.
        unsafe {
            madvise(start as *mut c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *const u8, _len: usize) {}

/// A value written as a little-endian element of `N` bytes.
pub(super) trait Encode<const N: usize>: Copy + Send + Sync {
    /// The element's bytes, or `None` when the value does not fit.
    fn encode(self) -> Option<[u8; N]>;
}

impl Encode<8> for f64 {
    #[inline(always)]
    fn encode(self) -> Option<[u8; 8]> {
        Some(self.to_le_bytes())
    }
}

impl Encode<8> for i64 {
    #[inline(always)]
    fn encode(self) -> Option<[u8; 8]> {
        Some(self.to_le_bytes())
    }
}

impl Encode<4> for i64 {
    #[inline(always)]
    fn encode(self) -> Option<[u8; 4]> {
        i32::try_from(self).ok().map(i32::to_le_bytes)
    }
}

/// The little-endian bytes of `values` as elements of `N` bytes, encoded on
/// all cores: what hdf5-pure's `with_raw_data` stores, built in one pass
/// (its typed `with_*_data` copy element by element on one core, and
/// narrowing first would be a second copy). `None` when a value does not
/// fit.
pub(super) fn encode<T: Encode<N>, const N: usize>(values: &[T]) -> Option<Vec<u8>> {
    let mut bytes = zeroed::<u8>(values.len() * N);
    let fits = bytes
        .par_chunks_mut(BLOCK * N)
        .zip(values.par_chunks(BLOCK))
        .all(|(out, vals)| {
            out.chunks_exact_mut(N)
                .zip(vals)
                .all(|(o, &v)| match v.encode() {
                    Some(b) => {
                        o.copy_from_slice(&b);
                        true
                    }
                    None => false,
                })
        });
    fits.then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let src: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut d = [0.0f64; 2];
        convert(Stored::F64, &src, &mut d);
        assert_eq!(d, [1.5, -2.0]);

        let src: Vec<u8> = [7i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut d = [0i64; 2];
        convert(Stored::I32, &src, &mut d);
        assert_eq!(d, [7, -3]);
        assert!(!f64::accepts(Stored::I32) && !i64::accepts(Stored::F64));
    }

    #[test]
    fn zeroed_buffers() {
        // large enough to hold whole huge pages, and tiny
        for n in [0, 1, 3 << 20] {
            let v = zeroed::<[i64; 8]>(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|e| *e == [0; 8]));
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(
            encode::<f64, 8>(&[1.5, -2.0]).unwrap(),
            [1.5f64.to_le_bytes(), (-2.0f64).to_le_bytes()].concat()
        );
        let big = i64::from(i32::MAX) + 1;
        assert_eq!(
            encode::<i64, 4>(&[7, -3]).unwrap(),
            [7i32.to_le_bytes(), (-3i32).to_le_bytes()].concat()
        );
        assert_eq!(encode::<i64, 4>(&[0, big]), None);
        assert_eq!(encode::<i64, 8>(&[big]).unwrap(), big.to_le_bytes());
        // more values than one parallel block
        let many: Vec<i64> = (0..3 * BLOCK as i64 + 5).collect();
        let bytes = encode::<i64, 4>(&many).unwrap();
        let back: Vec<i64> = bytes
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes(b.try_into().unwrap())))
            .collect();
        assert_eq!(back, many);
    }

    #[test]
    fn unshuffle_takes_one_byte_plane_per_byte() {
        // Three int32 elements shuffled as a chunk of four (the fourth is
        // padding past the dataset's end).
        let values = [0x0403_0201i32, -2, 0x7fff_0000, 99];
        let plain: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut shuffled = vec![0u8; plain.len()];
        for (j, e) in plain.chunks(4).enumerate() {
            for (b, &byte) in e.iter().enumerate() {
                shuffled[b * 4 + j] = byte;
            }
        }
        let mut d = [0i64; 3];
        convert_unshuffled_from(Stored::I32, &shuffled, 4, 0, &mut d);
        assert_eq!(d, [0x0403_0201, -2, 0x7fff_0000]);
        let mut e = [0i64; 2];
        convert_unshuffled_from(Stored::I32, &shuffled, 4, 1, &mut e);
        assert_eq!(e, [-2, 0x7fff_0000]);
    }
}
