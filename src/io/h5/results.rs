//! Results files: the one-process writer ([`write_results`],
//! [`write_results_with`]), the datasets it shares with the parallel
//! writer ([`super::par`]), and the mesh a results file may carry
//! ([`ResultsMesh`], [`read_results_mesh`]).

use std::collections::HashSet;
use std::path::Path;

use hdf5_pure::{AttrValue, FileBuilder};

use super::{Attr, H5Error, ResultsData, check_shape, fast, read_quad8, with_file, write_atomic};

/// Writes a results file: datasets `u` (`[N]`), `vel` (`[E, 2]`), `abs_vel`
/// and `pressure` (`[E]`), all f64 and contiguous, and `data.attrs` as scalar
/// root attributes ([`Attr::Int`] as int64, [`Attr::Float`] as f64,
/// [`Attr::Str`] as a variable-length UTF-8 string, which h5py reads as a
/// `str`).
///
/// The file is written whole or not at all: into a temporary file beside
/// `path` (`.<name>.tmp-<pid>-<n>`), then renamed over `path`. On failure
/// the temporary is removed and an existing `path` is left untouched.
///
/// # Errors
///
/// An [`H5Error`] naming `path` when `abs_vel`, `pressure` and `vel` differ
/// in length, an attribute name is empty or repeated, the directory does not
/// exist or is not writable, or writing fails.
pub fn write_results(path: &Path, data: &ResultsData) -> Result<(), H5Error> {
    write_results_with(path, data, None)
}

/// The mesh a results file carries when it stands alone (an XDMF index
/// reads it; `quadflow plot` uses it): datasets `xy` (`[N, 2]`, f64, the
/// node coordinates interleaved, as XDMF's `XY` geometry wants them) and
/// `quad8` (`[E, 8]`, int32, or int64 above 2^31 - 1 nodes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResultsMesh<'a> {
    /// Node x coordinates.
    pub x: &'a [f64],
    /// Node y coordinates.
    pub y: &'a [f64],
    /// Elements (0-based node indices).
    pub quad8: &'a [[u32; 8]],
}

/// A dataset of a results file: name, stored type, shape.
pub(crate) struct ResultsDataset {
    pub(crate) name: &'static str,
    pub(crate) int: Option<bool>,
    pub(crate) shape: Vec<u64>,
}

impl ResultsDataset {
    /// The stored datatype: f64, or int32 / int64 (`int == Some(true)`).
    pub(crate) fn dtype(&self) -> hdf5_pure::Datatype {
        match self.int {
            None => hdf5_pure::make_f64_type(),
            Some(false) => hdf5_pure::make_i32_type(),
            Some(true) => hdf5_pure::make_i64_type(),
        }
    }
}

/// The datasets of a results file of `nodes` nodes and `elements`
/// elements, in file order (the mesh's last, when it carries one): the
/// layout [`write_results_with`] and the parallel writer share.
pub(crate) fn results_datasets(nodes: usize, elements: usize, mesh: bool) -> Vec<ResultsDataset> {
    let (n, e) = (nodes as u64, elements as u64);
    let f = |name, shape: &[u64]| ResultsDataset {
        name,
        int: None,
        shape: shape.to_vec(),
    };
    let mut v = vec![
        f("u", &[n]),
        f("vel", &[e, 2]),
        f("abs_vel", &[e]),
        f("pressure", &[e]),
    ];
    if mesh {
        v.push(f("xy", &[n, 2]));
        v.push(ResultsDataset {
            name: "quad8",
            int: Some(nodes > i32::MAX as usize),
            shape: vec![e, 8],
        });
    }
    v
}

/// Refuses an empty or repeated attribute name.
pub(crate) fn check_attrs(path: &Path, attrs: &[(String, Attr)]) -> Result<(), H5Error> {
    let mut seen = HashSet::new();
    for (name, _) in attrs {
        if name.is_empty() {
            return Err(H5Error::new(path, "an attribute name is empty"));
        }
        if !seen.insert(name.as_str()) {
            return Err(H5Error::new(
                path,
                format!("attribute \"{name}\" is given twice"),
            ));
        }
    }
    Ok(())
}

/// Sets `attrs` as the root attributes of `b`.
pub(crate) fn set_attrs(b: &mut FileBuilder, attrs: &[(String, Attr)]) {
    for (name, attr) in attrs {
        let value = match attr {
            Attr::Int(v) => AttrValue::I64(*v),
            Attr::Float(v) => AttrValue::F64(*v),
            Attr::Str(s) => AttrValue::VarLenString(s.clone()),
        };
        b.set_attr(name, value);
    }
}

/// [`write_results`], with the mesh too when `mesh` is given
/// ([`ResultsMesh`]).
///
/// # Errors
///
/// As [`write_results`], and when the mesh's arrays do not match the
/// fields' lengths.
pub fn write_results_with(
    path: &Path,
    data: &ResultsData,
    mesh: Option<&ResultsMesh>,
) -> Result<(), H5Error> {
    let elements = data.vel.len();
    for (name, len) in [
        ("abs_vel", data.abs_vel.len()),
        ("pressure", data.pressure.len()),
    ] {
        if len != elements {
            return Err(H5Error::new(
                path,
                format!("{name} has {len} values but vel has {elements}; both are per element"),
            ));
        }
    }
    if let Some(m) = mesh
        && (m.x.len() != data.u.len() || m.y.len() != data.u.len() || m.quad8.len() != elements)
    {
        return Err(H5Error::new(
            path,
            format!(
                "the mesh has {} / {} coordinates and {} elements but the fields {} nodes and {elements} elements",
                m.x.len(),
                m.y.len(),
                m.quad8.len(),
                data.u.len()
            ),
        ));
    }
    check_attrs(path, &data.attrs)?;
    let mut b = FileBuilder::new();
    let f64s = |v: &[f64]| fast::encode::<f64, 8>(v).expect("every f64 encodes");
    for ds in results_datasets(data.u.len(), elements, mesh.is_some()) {
        let bytes = match ds.name {
            "u" => f64s(data.u),
            "vel" => f64s(data.vel.as_flattened()),
            "abs_vel" => f64s(data.abs_vel),
            "pressure" => f64s(data.pressure),
            "xy" => {
                let m = mesh.expect("a mesh");
                let xy: Vec<f64> = m.x.iter().zip(m.y).flat_map(|(&x, &y)| [x, y]).collect();
                f64s(&xy)
            }
            _ => {
                let q: Vec<i64> = mesh
                    .expect("a mesh")
                    .quad8
                    .as_flattened()
                    .iter()
                    .map(|&v| i64::from(v))
                    .collect();
                if ds.int == Some(true) {
                    fast::encode::<i64, 8>(&q).expect("every i64 encodes")
                } else {
                    fast::encode::<i64, 4>(&q).expect("node indices below 2^31")
                }
            }
        };
        let count = ds.shape.iter().product();
        b.create_dataset(ds.name)
            .with_raw_data(ds.dtype(), bytes, count)
            .with_shape(&ds.shape);
    }
    set_attrs(&mut b, &data.attrs);
    write_atomic(path, b)
}

/// The mesh a results file carries: `x`, `y` and the elements (`quad8`).
pub type CarriedMesh = (Vec<f64>, Vec<f64>, Vec<[i64; 8]>);

/// The mesh a results file carries ([`ResultsMesh`]: `xy` and `quad8`),
/// as node coordinates and connectivity; `None` when it carries none.
///
/// # Errors
///
/// An [`H5Error`] naming the file when it cannot be read, or `xy` or
/// `quad8` is there with the wrong shape or type, or one without the other.
pub fn read_results_mesh(path: &Path) -> Result<Option<CarriedMesh>, H5Error> {
    with_file(path, |f| {
        let names = f
            .file
            .root()
            .datasets()
            .map_err(|e| f.corrupt("cannot list the datasets at the root", e))?;
        let has = |n: &str| names.iter().any(|d| d == n);
        match (has("xy"), has("quad8")) {
            (false, false) => return Ok(None),
            (true, true) => {}
            _ => {
                return Err(f.err(
                    "a results file carries its mesh as both \"xy\" and \"quad8\"; it has one of them",
                ));
            }
        }
        const HINT: &str = "a results file's mesh is xy and quad8";
        let (xy, n) = f.read_f64("xy", Some(2), HINT)?;
        let ds_q = f.dataset("quad8", HINT)?;
        let q_shape = f.shape(&ds_q, "quad8")?;
        let elements = check_shape(&q_shape, Some(8)).map_err(|_| {
            f.err(format!(
                "dataset \"quad8\" has shape {q_shape:?}; it must be [E, 8]"
            ))
        })?;
        let quad8 = read_quad8(f, &ds_q, &q_shape, elements)?;
        let (x, y) = (0..n).map(|i| (xy[2 * i], xy[2 * i + 1])).unzip();
        Ok(Some((x, y, quad8)))
    })
}
