//! HDF5 input and output without any system library (`hdf5-pure`).
//!
//! - Mesh files ([`read_mesh_with_sets`], [`write_mesh_with_sets`],
//!   [`read_mesh`], [`write_mesh`]): datasets `x`, `y` (f64, N) and `quad8`
//!   (int32 or int64, `[E, 8]`, 0-based node indices) at the root, and named
//!   node sets as datasets `node_sets/NAME` (int32 or int64, 1-D, sorted
//!   0-based node indices), stored as [`MeshLayout`] says. Large datasets are
//!   read on all cores (the `fast` submodule) and written with their chunks
//!   compressed on all cores (hdf5-pure's `rayon` feature).
//! - Results files ([`write_results`], [`read_results`],
//!   [`read_results_attrs`]): datasets `u` (N), `vel` (`[E, 2]`), `abs_vel`
//!   and `pressure` (E), all f64, plus scalar root attributes.
//! - Reference results files of the published Python implementation
//!   ([`read_reference`]).
//!
//! Every reader turns whatever goes wrong (a missing file, a file that is not
//! HDF5, a truncated or corrupt one, a missing dataset, a wrong shape or type)
//! into an [`H5Error`] naming the file; none of them panics, since reading runs
//! under [`std::panic::catch_unwind`] in case the parser does. Every writer is
//! all-or-nothing: it writes a temporary file beside the target and renames it
//! over the target only once the whole file is on disk.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, DType, Dataset, DatasetBuilder, File, FileBuilder, FormatError};

pub use super::raw::RawMesh;

mod blocks;
mod fast;
pub mod par;
mod results;
mod sets;

pub use blocks::H5Blocks;
pub(crate) use results::{ResultsDataset, check_attrs, results_datasets, set_attrs};
pub use results::{ResultsMesh, read_results_mesh, write_results, write_results_with};

use fast::Stored;

/// Named node sets: name to 0-based node indices (sorted, without repeats,
/// as the readers return them).
pub type NodeSets = BTreeMap<String, Vec<u32>>;

/// How the arrays of a mesh file are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeshLayout {
    /// Chunks of about 512 KiB, byte-shuffled and deflated at level 4: what
    /// h5py writes with `compression="gzip", shuffle=True`. About a fifth of
    /// the contiguous size for generated meshes; the chunks are compressed
    /// (and read back) on all cores.
    #[default]
    Gzip,
    /// One contiguous block per dataset, unfiltered: the fastest to write and
    /// to read, and the largest file.
    Contiguous,
}

impl MeshLayout {
    /// The names [`MeshLayout::parse`] accepts, for messages.
    pub const NAMES: &'static str = "gzip or contiguous";

    /// The layout named `name` (`gzip` or `contiguous`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(MeshLayout::Gzip),
            "contiguous" => Some(MeshLayout::Contiguous),
            _ => None,
        }
    }

    /// The name of this layout, as [`MeshLayout::parse`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            MeshLayout::Gzip => "gzip",
            MeshLayout::Contiguous => "contiguous",
        }
    }

    /// Sets the storage of `ds`, a dataset of `rows` rows of `row_bytes`
    /// bytes. An empty dataset stays contiguous (HDF5 has no zero-sized
    /// chunks).
    fn apply(self, ds: &mut DatasetBuilder, shape: &[u64], row_bytes: u64) {
        let rows = shape[0];
        if self == MeshLayout::Contiguous || rows == 0 || row_bytes == 0 {
            return;
        }
        let band = (CHUNK_BYTES / row_bytes).clamp(1, rows);
        let mut chunk = shape.to_vec();
        chunk[0] = band;
        ds.with_chunks(&chunk)
            .with_shuffle()
            .with_deflate(DEFLATE_LEVEL);
    }
}

/// Target size of one chunk of a [`MeshLayout::Gzip`] dataset: 65,536 f64
/// coordinates, 16,384 int32 elements. Large enough to compress well and to
/// keep per-chunk costs small, small enough to give every core several
/// chunks of a 1M-node mesh.
const CHUNK_BYTES: u64 = 512 * 1024;

/// Deflate level of [`MeshLayout::Gzip`]: h5py's default for gzip. With the
/// shuffle filter, level 6 saves about 1% more and takes 20% longer.
const DEFLATE_LEVEL: u32 = 4;

/// An HDF5 problem, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct H5Error {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl H5Error {
    /// An error about the file at `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// A scalar root attribute of a results file (the engine's report type).
pub use quadflow_systems::components::Attr;

/// What [`write_results`] writes: per-node potential `u`, per-element
/// velocity, speed and pressure, and the root attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsData<'a> {
    /// Potential per node (dataset `u`, shape `[N]`).
    pub u: &'a [f64],
    /// Velocity per element (dataset `vel`, shape `[E, 2]`).
    pub vel: &'a [[f64; 2]],
    /// Speed per element (dataset `abs_vel`, shape `[E]`).
    pub abs_vel: &'a [f64],
    /// Pressure per element (dataset `pressure`, shape `[E]`).
    pub pressure: &'a [f64],
    /// Scalar root attributes, in the order given; names must be distinct.
    pub attrs: Vec<(String, Attr)>,
}

/// A results file read back by [`read_results`]: the owned counterpart of
/// [`ResultsData`].
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// Potential per node (`u`).
    pub u: Vec<f64>,
    /// Velocity per element (`vel`).
    pub vel: Vec<[f64; 2]>,
    /// Speed per element (`abs_vel`).
    pub abs_vel: Vec<f64>,
    /// Pressure per element (`pressure`).
    pub pressure: Vec<f64>,
    /// Root attributes this module can represent, sorted by name (see
    /// [`read_results_attrs`]).
    pub attrs: Vec<(String, Attr)>,
}

/// A reference results file (`shared/reference/NAME.h5`) of the published
/// Python implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Potential per node.
    pub u: Vec<f64>,
    /// Velocity per element.
    pub vel: Vec<[f64; 2]>,
    /// Speed per element.
    pub abs_vel: Vec<f64>,
    /// Pressure per element.
    pub pressure: Vec<f64>,
    /// CG iterations (attribute `iterations`).
    pub iterations: i64,
    /// Whether CG converged (attribute `converged`, an h5py boolean).
    pub converged: bool,
    /// `||f - K u|| / ||f||` (attribute `true_relative_residual`).
    pub true_relative_residual: f64,
    /// Non-zeros of the assembled matrix (attribute `matrix_nnz`).
    pub matrix_nnz: i64,
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// How much decoded data one dataset may claim per byte of file: deflate
/// cannot do better than about 1032:1, so a dataset claiming more than this
/// is corrupt, and refusing it keeps a garbage shape from asking for an
/// allocation that would abort the process.
const MAX_EXPANSION: u64 = 1100;

/// An open file together with its path and size, for error messages and
/// sanity checks.
struct Opened {
    /// The file as hdf5-pure reads it (streaming: metadata is read as it is
    /// needed, not the whole file).
    file: File,
    /// The same file, for the positional reads of the [`fast`] path.
    raw: fs::File,
    path: PathBuf,
    len: u64,
}

impl Opened {
    fn err(&self, message: impl Into<String>) -> H5Error {
        H5Error::new(&self.path, message)
    }

    /// A failure of the parser on a file that opened: the file is damaged.
    fn corrupt(&self, what: &str, e: impl std::fmt::Display) -> H5Error {
        self.err(format!(
            "not a readable HDF5 file (truncated or corrupt?): {what}: {e}"
        ))
    }

    /// Opens dataset `name` at the root, telling a missing one (with `hint`
    /// on what the file should hold) from an unreadable one.
    fn dataset(&self, name: &str, hint: &str) -> Result<Dataset, H5Error> {
        match self.file.dataset(name) {
            Ok(ds) => Ok(ds),
            Err(hdf5_pure::Error::Format(FormatError::PathNotFound(_))) => {
                Err(self.err(format!("missing dataset \"{name}\"; {hint}")))
            }
            Err(e) => {
                // Some failures to resolve a name are not `PathNotFound`;
                // ask the root for its members to tell them apart.
                let listed = self.file.root().datasets().ok();
                match listed {
                    Some(names) if !names.iter().any(|n| n == name) => {
                        Err(self.err(format!("missing dataset \"{name}\"; {hint}")))
                    }
                    _ => Err(self.corrupt(&format!("cannot open dataset \"{name}\""), e)),
                }
            }
        }
    }

    fn shape(&self, ds: &Dataset, name: &str) -> Result<Vec<u64>, H5Error> {
        let shape = ds.shape().map_err(|e| {
            self.corrupt(&format!("cannot read the shape of dataset \"{name}\""), e)
        })?;
        // Refuse a shape the file cannot hold before anything allocates it.
        let count = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(8));
        let limit = self
            .len
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(1 << 20);
        match count {
            Some(bytes) if bytes <= limit => Ok(shape),
            _ => Err(self.err(format!(
                "dataset \"{name}\" declares shape {shape:?}, more data than the file \
                 can hold; the file is corrupt"
            ))),
        }
    }

    fn dtype(&self, ds: &Dataset, name: &str) -> Result<DType, H5Error> {
        ds.dtype().map_err(|e| {
            self.corrupt(
                &format!("cannot read the datatype of dataset \"{name}\""),
                e,
            )
        })
    }

    /// Reads a numeric dataset of rank 1 (`cols == None`, shape `[n]`) or
    /// rank 2 (`cols == Some(c)`, shape `[n, c]`) as f64, returning the
    /// values and `n`.
    fn read_f64(
        &self,
        name: &str,
        cols: Option<u64>,
        hint: &str,
    ) -> Result<(Vec<f64>, usize), H5Error> {
        let ds = self.dataset(name, hint)?;
        let shape = self.shape(&ds, name)?;
        let rows = check_shape(&shape, cols).map_err(|want| {
            self.err(format!(
                "dataset \"{name}\" has shape {shape:?}; it must be {want}"
            ))
        })?;
        let dtype = self.dtype(&ds, name)?;
        if !is_float(&dtype) && !is_int(&dtype) {
            return Err(self.err(format!(
                "dataset \"{name}\" has datatype {dtype}; it must be floating point (f64)"
            )));
        }
        if let Some(values) = self.read_fast::<f64>(&ds, &shape) {
            return Ok((values, rows));
        }
        let values = ds
            .read_f64()
            .map_err(|e| self.corrupt(&format!("cannot read dataset \"{name}\""), e))?;
        self.check_len(name, values.len(), &shape)?;
        Ok((values, rows))
    }

    /// Reads dataset `ds` of shape `shape` on all cores when its layout and
    /// type allow (see [`fast`]), else `None`.
    fn read_fast<T: fast::Target + Default>(&self, ds: &Dataset, shape: &[u64]) -> Option<Vec<T>> {
        let kind = Stored::of(&ds.datatype().ok()?)?;
        let count = usize::try_from(shape.iter().product::<u64>()).ok()?;
        let mut values = fast::zeroed::<T>(count);
        fast::read_into(&self.raw, ds, shape, kind, &mut values).then_some(values)
    }

    fn check_len(&self, name: &str, got: usize, shape: &[u64]) -> Result<(), H5Error> {
        let want: u64 = shape.iter().product();
        if got as u64 != want {
            return Err(self.err(format!(
                "dataset \"{name}\" has shape {shape:?} but {got} values could be read; \
                 the file is corrupt"
            )));
        }
        Ok(())
    }

    /// The root attributes, as a map from name to value.
    fn root_attrs(&self) -> Result<std::collections::HashMap<String, AttrValue>, H5Error> {
        self.file
            .root()
            .attrs()
            .map_err(|e| self.corrupt("cannot read the root attributes", e))
    }
}

/// `Ok(rows)` when `shape` is `[rows]` (for `cols == None`) or
/// `[rows, cols]`, else `Err` with what the shape must be.
fn check_shape(shape: &[u64], cols: Option<u64>) -> Result<usize, String> {
    let rows = match (shape, cols) {
        (&[n], None) => n,
        (&[n, c], Some(want)) if c == want => n,
        (_, None) => return Err("1-D".into()),
        (_, Some(c)) => return Err(format!("[n, {c}] (2-D with {c} columns)")),
    };
    usize::try_from(rows).map_err(|_| "addressable (too many rows)".to_string())
}

fn is_float(dt: &DType) -> bool {
    matches!(dt, DType::F32 | DType::F64)
}

fn is_int(dt: &DType) -> bool {
    matches!(
        dt,
        DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    )
}

/// Opens `path` and runs `read` on it, turning every failure, a panic in the
/// parser included, into an [`H5Error`] naming the file.
fn with_file<T>(
    path: &Path,
    read: impl FnOnce(&Opened) -> Result<T, H5Error>,
) -> Result<T, H5Error> {
    let opened = open(path)?;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| read(&opened)));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the HDF5 parser failed".into());
            Err(H5Error::new(
                path,
                format!("not a readable HDF5 file (truncated or corrupt?): {why}"),
            ))
        }
    }
}

/// Opens `path` as an HDF5 file (its metadata read as needed), every
/// failure, a panic in the parser included, an [`H5Error`] naming it.
fn open(path: &Path) -> Result<Opened, H5Error> {
    let cannot = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            H5Error::new(path, "file not found; check the path")
        } else {
            H5Error::new(path, format!("cannot read the file: {e}"))
        }
    };
    // The file is not read whole: hdf5-pure reads the metadata it needs, and
    // the data goes straight from the file into the arrays returned.
    let raw = fs::File::open(path).map_err(cannot)?;
    let len = raw.metadata().map_err(cannot)?.len();
    if !hdf5_pure::is_hdf5(path).map_err(cannot)? {
        return Err(H5Error::new(
            path,
            "not an HDF5 file (no HDF5 signature); a mesh or results file must be HDF5",
        ));
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        File::open_streaming(path).map_err(|e| {
            H5Error::new(
                path,
                format!("not a readable HDF5 file (truncated or corrupt?): {e}"),
            )
        })
    }));
    let file = outcome.unwrap_or_else(|_| {
        Err(H5Error::new(
            path,
            "not a readable HDF5 file (truncated or corrupt?): the HDF5 parser failed",
        ))
    })?;
    Ok(Opened {
        file,
        raw,
        path: path.to_path_buf(),
        len,
    })
}

const MESH_HINT: &str = "a mesh file needs x, y and quad8 at the root";

/// Reads a mesh file: datasets `x` and `y` (1-D, same length N, numeric,
/// f64 in practice, read as f64) and `quad8` (`[E, 8]`, any integer type, int32 or int64 in
/// practice) at the root, contiguous or chunked and compressed; node sets,
/// if any, are read and checked but not returned (see
/// [`read_mesh_with_sets`]).
///
/// Node indices of `quad8` are returned as they are stored; their range is
/// not checked here (the engine validates the mesh).
///
/// # Errors
///
/// An [`H5Error`] naming the file, and the dataset where one is at fault, when
/// the file is missing, is not HDF5 or cannot be parsed (truncated, corrupt),
/// a dataset is missing, `x` or `y` is not 1-D, they differ in length,
/// `quad8` is not `[E, 8]`, `quad8` is not of an integer type, or a node set
/// is bad (see [`read_mesh_with_sets`]).
pub fn read_mesh(path: &Path) -> Result<RawMesh, H5Error> {
    read_mesh_with_sets(path).map(|(raw, _)| raw)
}

/// Reads a mesh file as [`read_mesh`] does, together with its node sets:
/// every dataset of the group `node_sets`, named by its dataset name (none
/// when the file has no such group). A set is a 1-D dataset of any integer
/// type holding 0-based node indices; they are returned sorted, without
/// repeats.
///
/// # Errors
///
/// As [`read_mesh`], and an [`H5Error`] naming the set when `node_sets` is
/// not a group of datasets, a set is not 1-D, is not of an integer type, or
/// holds an index outside `0..N`.
pub fn read_mesh_with_sets(path: &Path) -> Result<(RawMesh, NodeSets), H5Error> {
    with_file(path, |f| {
        // Open all three first, so a missing one is reported as missing
        // before anything else is checked.
        f.dataset("x", MESH_HINT)?;
        f.dataset("y", MESH_HINT)?;
        let ds_q = f.dataset("quad8", MESH_HINT)?;

        let q_shape = f.shape(&ds_q, "quad8")?;
        let elements = check_shape(&q_shape, Some(8)).map_err(|_| {
            f.err(format!(
                "dataset \"quad8\" has shape {q_shape:?}; it must be [E, 8] \
                 (one row of 8 node indices per Quad-8 element)"
            ))
        })?;
        let quad8 = read_quad8(f, &ds_q, &q_shape, elements)?;

        let (x, _) = f.read_f64("x", None, MESH_HINT)?;
        let (y, _) = f.read_f64("y", None, MESH_HINT)?;
        if x.len() != y.len() {
            return Err(f.err(format!(
                "datasets \"x\" ({} values) and \"y\" ({} values) differ in length; \
                 they must hold one coordinate per node each",
                x.len(),
                y.len()
            )));
        }
        let node_sets = sets::read(f, x.len())?;
        Ok((RawMesh { x, y, quad8 }, node_sets))
    })
}

/// `quad8`'s datatype checked: integer node indices (int32 or int64), with
/// how to convert floating-point ones.
fn check_quad8_type(f: &Opened, q_type: &DType) -> Result<(), H5Error> {
    if is_float(q_type) {
        return Err(f.err(format!(
            "dataset \"quad8\" has floating-point datatype {q_type}; it must hold \
             integer node indices (int32 or int64); convert it, e.g. \
             quad8.astype(\"int32\") in NumPy"
        )));
    }
    if !is_int(q_type) {
        return Err(f.err(format!(
            "dataset \"quad8\" has datatype {q_type}; it must hold integer node \
             indices (int32 or int64)"
        )));
    }
    Ok(())
}

/// Reads `quad8` (shape `[elements, 8]`, already checked) as node indices.
fn read_quad8(
    f: &Opened,
    ds: &Dataset,
    shape: &[u64],
    elements: usize,
) -> Result<Vec<[i64; 8]>, H5Error> {
    let q_type = f.dtype(ds, "quad8")?;
    check_quad8_type(f, &q_type)?;
    // The usual int32 and int64: decoded on all cores straight into rows.
    if let Some(kind) = ds.datatype().ok().as_ref().and_then(Stored::of) {
        let mut quad8 = fast::zeroed::<[i64; 8]>(elements);
        if fast::read_into(&f.raw, ds, shape, kind, quad8.as_flattened_mut()) {
            return Ok(quad8);
        }
    }
    let flat: Vec<i64> = if matches!(q_type, DType::U64) {
        let raw = ds
            .read_u64()
            .map_err(|e| f.corrupt("cannot read dataset \"quad8\"", e))?;
        raw.into_iter()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            .collect()
    } else {
        ds.read_i64()
            .map_err(|e| f.corrupt("cannot read dataset \"quad8\"", e))?
    };
    f.check_len("quad8", flat.len(), shape)?;
    debug_assert_eq!(flat.len(), elements * 8);
    Ok(flat
        .chunks_exact(8)
        .map(|c| <[i64; 8]>::try_from(c).expect("chunks of 8"))
        .collect())
}

const RESULTS_HINT: &str = "a results file needs u, vel, abs_vel and pressure at the root";

fn read_results_in(f: &Opened) -> Result<Results, H5Error> {
    let (u, _) = f.read_f64("u", None, RESULTS_HINT)?;
    let (vel_flat, elements) = f.read_f64("vel", Some(2), RESULTS_HINT)?;
    let vel: Vec<[f64; 2]> = vel_flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let (abs_vel, _) = f.read_f64("abs_vel", None, RESULTS_HINT)?;
    let (pressure, _) = f.read_f64("pressure", None, RESULTS_HINT)?;
    for (name, len) in [("abs_vel", abs_vel.len()), ("pressure", pressure.len())] {
        if len != elements {
            return Err(f.err(format!(
                "dataset \"{name}\" has {len} values but \"vel\" has {elements} rows; \
                 both are per element"
            )));
        }
    }
    let attrs = convert_attrs(f.root_attrs()?);
    Ok(Results {
        u,
        vel,
        abs_vel,
        pressure,
        attrs,
    })
}

/// Maps the attributes this module represents to [`Attr`], sorted by name;
/// arrays and other kinds are left out.
fn convert_attrs(map: std::collections::HashMap<String, AttrValue>) -> Vec<(String, Attr)> {
    let mut out: Vec<(String, Attr)> = map
        .into_iter()
        .filter_map(|(name, value)| attr_from_value(&value).map(|a| (name, a)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn attr_from_value(value: &AttrValue) -> Option<Attr> {
    match value {
        AttrValue::I8(_)
        | AttrValue::I16(_)
        | AttrValue::I32(_)
        | AttrValue::I64(_)
        | AttrValue::U8(_)
        | AttrValue::U16(_)
        | AttrValue::U32(_)
        | AttrValue::U64(_) => value.as_i64().map(Attr::Int),
        AttrValue::F32(_) | AttrValue::F64(_) => value.as_f64().map(Attr::Float),
        _ => match value.as_strings() {
            Some([one]) if !matches!(value, AttrValue::VarLenAsciiCharArray(_)) => {
                Some(Attr::Str(one.clone()))
            }
            _ => None,
        },
    }
}

/// Reads a results file written by [`write_results`] (or by the Python
/// reference): datasets `u` (`[N]`), `vel` (`[E, 2]`), `abs_vel` and
/// `pressure` (`[E]`), and the root attributes as [`read_results_attrs`]
/// returns them.
///
/// # Errors
///
/// An [`H5Error`] naming the file and dataset when the file cannot be read,
/// a dataset is missing or has the wrong rank or shape, or the per-element
/// datasets differ in length.
pub fn read_results(path: &Path) -> Result<Results, H5Error> {
    with_file(path, read_results_in)
}

/// Reads the scalar root attributes of a results file, sorted by name.
///
/// Integers (any width, h5py booleans included, as 0 or 1) become
/// [`Attr::Int`], f32 and f64 [`Attr::Float`], fixed- and variable-length
/// strings [`Attr::Str`]; array-valued and other attributes are left out.
///
/// # Errors
///
/// An [`H5Error`] naming the file when it cannot be read.
pub fn read_results_attrs(path: &Path) -> Result<Vec<(String, Attr)>, H5Error> {
    with_file(path, |f| Ok(convert_attrs(f.root_attrs()?)))
}

/// Reads a reference results file (`shared/reference/NAME.h5`): the datasets
/// of [`read_results`] and the attributes `iterations`, `converged`,
/// `true_relative_residual` and `matrix_nnz`.
///
/// # Errors
///
/// As [`read_results`], and when one of those attributes is missing or of
/// the wrong kind.
pub fn read_reference(path: &Path) -> Result<Reference, H5Error> {
    with_file(path, |f| {
        let results = read_results_in(f)?;
        let attrs = f.root_attrs()?;
        let get = |name: &str| {
            attrs.get(name).ok_or_else(|| {
                f.err(format!(
                    "missing root attribute \"{name}\"; a reference file needs iterations, \
                     converged, true_relative_residual and matrix_nnz"
                ))
            })
        };
        let int = |name: &str| {
            let v = get(name)?;
            v.as_i64().ok_or_else(|| {
                f.err(format!(
                    "root attribute \"{name}\" is {v:?}; expected an integer"
                ))
            })
        };
        let iterations = int("iterations")?;
        let matrix_nnz = int("matrix_nnz")?;
        let converged = int("converged")? != 0;
        let trr = get("true_relative_residual")?;
        let true_relative_residual = trr.as_f64().ok_or_else(|| {
            f.err(format!(
                "root attribute \"true_relative_residual\" is {trr:?}; expected a float"
            ))
        })?;
        Ok(Reference {
            u: results.u,
            vel: results.vel,
            abs_vel: results.abs_vel,
            pressure: results.pressure,
            iterations,
            converged,
            true_relative_residual,
            matrix_nnz,
        })
    })
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Writes `builder`'s file whole or not at all (see
/// [`super::atomic::write_atomic`]).
fn write_atomic(path: &Path, builder: FileBuilder) -> Result<(), H5Error> {
    super::atomic::write_atomic(path, |w| {
        builder
            .finish_to(w)
            .map_err(|e| std::io::Error::other(format!("HDF5 data: {e}")))
    })
    .map_err(|m| H5Error::new(path, m))
}

/// Writes a mesh file without node sets: [`write_mesh_with_sets`] with no
/// sets, int64 connectivity when `int64`, and [`MeshLayout::Gzip`] when
/// `gzip`, else [`MeshLayout::Contiguous`].
///
/// # Errors
///
/// As [`write_mesh_with_sets`].
pub fn write_mesh(path: &Path, mesh: &RawMesh, int64: bool, gzip: bool) -> Result<(), H5Error> {
    let layout = if gzip {
        MeshLayout::Gzip
    } else {
        MeshLayout::Contiguous
    };
    write_mesh_with_sets(path, mesh, &NodeSets::new(), int64, layout)
}

/// Writes a mesh file: `x` and `y` (f64, `[N]`) and `quad8` (`[E, 8]`,
/// int32 unless `int64` is set) at the root, and each node set as dataset
/// `node_sets/NAME` (1-D, sorted, without repeats, int32 unless `int64`), all
/// stored as `layout` says, with the same all-or-nothing write as
/// [`write_results`]. With no sets there is no `node_sets` group.
///
/// Indices (of `quad8` and of the sets) are written as given, without range
/// checks, so tests can craft invalid meshes.
///
/// # Errors
///
/// An [`H5Error`] naming `path` when `x` and `y` differ in length, a node
/// index does not fit int32 (unless `int64`), a set's name cannot name an
/// HDF5 dataset (empty, `.`, or holding `/`), or writing fails (see
/// [`write_results`]).
pub fn write_mesh_with_sets(
    path: &Path,
    mesh: &RawMesh,
    node_sets: &NodeSets,
    int64: bool,
    layout: MeshLayout,
) -> Result<(), H5Error> {
    if mesh.x.len() != mesh.y.len() {
        return Err(H5Error::new(
            path,
            format!(
                "x has {} values and y {}; they must have one per node each",
                mesh.x.len(),
                mesh.y.len()
            ),
        ));
    }
    let nodes = mesh.x.len() as u64;
    let elements = mesh.quad8.len() as u64;

    let mut b = FileBuilder::new();
    for (name, values) in [("x", &mesh.x), ("y", &mesh.y)] {
        let bytes = fast::encode::<f64, 8>(values).expect("every f64 encodes");
        let ds = b.create_dataset(name);
        ds.with_raw_data(hdf5_pure::make_f64_type(), bytes, nodes)
            .with_shape(&[nodes]);
        layout.apply(ds, &[nodes], 8);
    }
    let flat = mesh.quad8.as_flattened();
    let (dtype, bytes, width) = if int64 {
        let bytes = fast::encode::<i64, 8>(flat).expect("every i64 encodes");
        (hdf5_pure::make_i64_type(), bytes, 8)
    } else {
        let bytes = fast::encode::<i64, 4>(flat).ok_or_else(|| {
            H5Error::new(
                path,
                "a quad8 node index does not fit int32; write the mesh with int64",
            )
        })?;
        (hdf5_pure::make_i32_type(), bytes, 4)
    };
    let ds = b.create_dataset("quad8");
    ds.with_raw_data(dtype, bytes, elements * 8)
        .with_shape(&[elements, 8]);
    layout.apply(ds, &[elements, 8], 8 * width);
    sets::write(&mut b, path, node_sets, int64, layout)?;
    write_atomic(path, b)
}

/// `values` as int32, or an error naming `what` when one does not fit.
fn narrow(path: &Path, values: &[i64], what: &str) -> Result<Vec<i32>, H5Error> {
    values
        .iter()
        .map(|&v| i32::try_from(v))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            H5Error::new(
                path,
                format!("{what} does not fit int32; write the mesh with int64"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(check_shape(&[5], None), Ok(5));
        assert_eq!(check_shape(&[0], None), Ok(0));
        assert_eq!(check_shape(&[3, 8], Some(8)), Ok(3));
        assert!(check_shape(&[3, 7], Some(8)).is_err());
        assert!(check_shape(&[24], Some(8)).is_err());
        assert!(check_shape(&[3, 8], None).is_err());
        assert!(check_shape(&[], None).is_err());
    }

    #[test]
    fn attribute_kinds() {
        assert_eq!(attr_from_value(&AttrValue::I8(1)), Some(Attr::Int(1)));
        assert_eq!(attr_from_value(&AttrValue::U32(7)), Some(Attr::Int(7)));
        assert_eq!(attr_from_value(&AttrValue::U64(u64::MAX)), None);
        assert_eq!(
            attr_from_value(&AttrValue::F32(0.5)),
            Some(Attr::Float(0.5))
        );
        assert_eq!(
            attr_from_value(&AttrValue::AsciiString("a".into())),
            Some(Attr::Str("a".into()))
        );
        assert_eq!(
            attr_from_value(&AttrValue::VarLenString("b".into())),
            Some(Attr::Str("b".into()))
        );
        assert_eq!(attr_from_value(&AttrValue::F64Array(vec![1.0, 2.0])), None);
        assert_eq!(
            attr_from_value(&AttrValue::StringArray(vec!["a".into(), "b".into()])),
            None
        );
    }
}
