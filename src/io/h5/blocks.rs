//! A mesh file read a block at a time ([`H5Blocks`], the engine's
//! [`MeshBlocks`]): what each rank of a distributed run reads of a mesh
//! file, and no more.
//!
//! Contiguous datasets are read with one positional read per block (the
//! rows at the offset the dataset's layout gives), chunked ones chunk by
//! chunk (only the chunks that hold the block, inflated in parallel), by
//! the fast path of the whole-file reader ([`super::fast`]); for any other
//! storage (other filters, big-endian types) hdf5-pure reads the rows. The
//! checks and messages are those of [`super::read_mesh_with_sets`] (a
//! missing dataset, a wrong shape or type, `x` and `y` of different
//! lengths), made when the file is opened; node indices and coordinates
//! are the caller's to check.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use hdf5_pure::{DType, Dataset};
use quadflow_systems::pipeline::MeshBlocks;

use super::fast::{self, Stored};
use super::{H5Error, MESH_HINT, Opened, check_quad8_type, check_shape, is_float, is_int};

/// A mesh file, open for reading in blocks.
pub struct H5Blocks {
    f: Opened,
    origin: String,
    x: Dataset,
    y: Dataset,
    quad8: Dataset,
    nodes: usize,
    elements: usize,
    bytes: Cell<u64>,
}

impl H5Blocks {
    /// Opens the mesh file `path` (named `origin` in messages) and checks
    /// its datasets' shapes and types, reading no data.
    ///
    /// # Errors
    ///
    /// As [`super::read_mesh_with_sets`] for what can be told without the
    /// data.
    pub fn open(path: &Path, origin: &str) -> Result<Self, H5Error> {
        let f = super::open(path)?;
        guard(&f, |f| {
            f.dataset("x", MESH_HINT)?;
            f.dataset("y", MESH_HINT)?;
            let quad8 = f.dataset("quad8", MESH_HINT)?;
            let q_shape = f.shape(&quad8, "quad8")?;
            let elements = check_shape(&q_shape, Some(8)).map_err(|_| {
                f.err(format!(
                    "dataset \"quad8\" has shape {q_shape:?}; it must be [E, 8] \
                     (one row of 8 node indices per Quad-8 element)"
                ))
            })?;
            let q_type = f.dtype(&quad8, "quad8")?;
            check_quad8_type(f, &q_type)?;
            let mut len = [0; 2];
            let mut sets = Vec::new();
            for (k, name) in ["x", "y"].into_iter().enumerate() {
                let ds = f.dataset(name, MESH_HINT)?;
                let shape = f.shape(&ds, name)?;
                len[k] = check_shape(&shape, None).map_err(|want| {
                    f.err(format!(
                        "dataset \"{name}\" has shape {shape:?}; it must be {want}"
                    ))
                })?;
                let dtype = f.dtype(&ds, name)?;
                if !is_float(&dtype) && !is_int(&dtype) {
                    return Err(f.err(format!(
                        "dataset \"{name}\" has datatype {dtype}; it must be floating point (f64)"
                    )));
                }
                sets.push(ds);
            }
            if len[0] != len[1] {
                return Err(f.err(format!(
                    "datasets \"x\" ({} values) and \"y\" ({} values) differ in length; \
                     they must hold one coordinate per node each",
                    len[0], len[1]
                )));
            }
            let y = sets.pop().expect("y");
            let x = sets.pop().expect("x");
            Ok((x, y, quad8, len[0], elements))
        })
        .map(|(x, y, quad8, nodes, elements)| Self {
            f,
            origin: origin.to_string(),
            x,
            y,
            quad8,
            nodes,
            elements,
            bytes: Cell::new(0),
        })
    }

    /// Values `first..first + count` of the 1-D dataset `ds` (`name`).
    fn column(
        &self,
        ds: &Dataset,
        name: &str,
        first: usize,
        count: usize,
    ) -> Result<Vec<f64>, H5Error> {
        let f = &self.f;
        guard(f, |f| {
            let shape = [self.nodes as u64];
            if let Some(kind) = ds.datatype().ok().as_ref().and_then(Stored::of) {
                let mut out = fast::zeroed::<f64>(count);
                if let Some(b) = fast::read_rows_into(&f.raw, ds, &shape, kind, first, &mut out) {
                    self.bytes.set(self.bytes.get() + b);
                    return Ok(out);
                }
            }
            let out = ds
                .read_f64_rows(first as u64, count as u64)
                .map_err(|e| f.corrupt(&format!("cannot read dataset \"{name}\""), e))?;
            f.check_len(name, out.len(), &[count as u64])?;
            self.bytes.set(self.bytes.get() + 8 * count as u64);
            Ok(out)
        })
    }

    /// The values `ids` of the 1-D dataset `ds` (`name`).
    fn picked(&self, ds: &Dataset, name: &str, ids: &[u32]) -> Result<Vec<f64>, H5Error> {
        guard(&self.f, |f| {
            if let Some(kind) = ds.datatype().ok().as_ref().and_then(Stored::of) {
                let mut out = vec![0.0; ids.len()];
                if let Some(b) = fast::read_scattered(&f.raw, ds, self.nodes, kind, ids, &mut out) {
                    self.bytes.set(self.bytes.get() + b);
                    return Ok(out);
                }
            }
            // another storage: hdf5-pure reads each run of ids
            let mut out = Vec::with_capacity(ids.len());
            let mut k = 0;
            while k < ids.len() {
                let mut end = k + 1;
                while end < ids.len() && ids[end] - ids[end - 1] <= fast::GAP {
                    end += 1;
                }
                let (lo, hi) = (ids[k] as u64, ids[end - 1] as u64 + 1);
                let run = ds
                    .read_f64_rows(lo, hi - lo)
                    .map_err(|e| f.corrupt(&format!("cannot read dataset \"{name}\""), e))?;
                f.check_len(name, run.len(), &[hi - lo])?;
                self.bytes.set(self.bytes.get() + 8 * (hi - lo));
                out.extend(ids[k..end].iter().map(|&v| run[(v as u64 - lo) as usize]));
                k = end;
            }
            Ok(out)
        })
    }
}

/// Runs `read` on the open file, a panic of the parser turned into an
/// error naming the file (as every reader of this module does).
fn guard<T>(f: &Opened, read: impl FnOnce(&Opened) -> Result<T, H5Error>) -> Result<T, H5Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(f))).unwrap_or_else(|_| {
        Err(f.err("not a readable HDF5 file (truncated or corrupt?): the HDF5 parser failed"))
    })
}

impl MeshBlocks for H5Blocks {
    fn size(&self) -> (usize, usize) {
        (self.nodes, self.elements)
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn elements(&self, first: usize, count: usize) -> Result<Vec<[i64; 8]>, String> {
        guard(&self.f, |f| {
            let ds = &self.quad8;
            let shape = [self.elements as u64, 8];
            if let Some(kind) = ds.datatype().ok().as_ref().and_then(Stored::of) {
                let mut out = fast::zeroed::<[i64; 8]>(count);
                if let Some(b) =
                    fast::read_rows_into(&f.raw, ds, &shape, kind, first, out.as_flattened_mut())
                {
                    self.bytes.set(self.bytes.get() + b);
                    return Ok(out);
                }
            }
            let dtype = f.dtype(ds, "quad8")?;
            let flat: Vec<i64> = if matches!(dtype, DType::U64) {
                ds.read_u64_rows(first as u64, count as u64)
                    .map_err(|e| f.corrupt("cannot read dataset \"quad8\"", e))?
                    .into_iter()
                    .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                    .collect()
            } else {
                ds.read_i64_rows(first as u64, count as u64)
                    .map_err(|e| f.corrupt("cannot read dataset \"quad8\"", e))?
            };
            f.check_len("quad8", flat.len(), &[count as u64, 8])?;
            self.bytes.set(self.bytes.get() + 8 * flat.len() as u64);
            Ok(flat
                .chunks_exact(8)
                .map(|c| <[i64; 8]>::try_from(c).expect("chunks of 8"))
                .collect())
        })
        .map_err(|e| e.to_string())
    }

    fn coordinates(&self, first: usize, count: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
        let x = self
            .column(&self.x, "x", first, count)
            .map_err(|e| e.to_string())?;
        let y = self
            .column(&self.y, "y", first, count)
            .map_err(|e| e.to_string())?;
        Ok((x, y))
    }

    fn scattered(&self, ids: &[u32]) -> Result<(Vec<f64>, Vec<f64>), String> {
        let x = self.picked(&self.x, "x", ids).map_err(|e| e.to_string())?;
        let y = self.picked(&self.y, "y", ids).map_err(|e| e.to_string())?;
        Ok((x, y))
    }

    fn node_sets(&self) -> Result<BTreeMap<String, Vec<u32>>, String> {
        guard(&self.f, |f| super::sets::read(f, self.nodes)).map_err(|e| e.to_string())
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.get()
    }
}
