//! The results file written by every process of a group, each its own
//! rows ([`write_results_blocks`]): no process gathers the fields.
//!
//! The lead writes the file's structure under a temporary name: the
//! datasets of [`super::write_results_with`], in the same order, shapes
//! and types, contiguous, and the root attributes. Their data regions are
//! left as holes (the lead's writer seeks over the zero blocks
//! hdf5-pure's `with_zeros` produces, so it allocates and writes no data:
//! a sparse file). The lead reads the regions' addresses back from the
//! file's layout messages and shares them; every process then writes its
//! block of rows of every dataset at its offset with positioned writes,
//! and syncs. Once every process has written, the lead renames the file
//! into place: whole or absent, as every writer of quadflow. A failure
//! anywhere is agreed by all, and the temporary file removed.

use std::fs;
use std::io::Write;
use std::path::Path;

use hdf5_pure::{FileBuilder, Layout};
use quadflow_systems::pipeline::ProcessGroup;

use super::{Attr, H5Error, check_attrs, fast, results_datasets, set_attrs};
use crate::io::atomic::Staged;

/// One process's rows of a results file: `u` (and the mesh's
/// coordinates) on nodes `first_node..`, the element fields (and
/// elements) on elements `first_element..`.
#[derive(Debug, Clone, Copy)]
pub struct BlockRows<'a> {
    /// The first node of the block.
    pub first_node: usize,
    /// `u` on the block.
    pub u: &'a [f64],
    /// The first element of the block.
    pub first_element: usize,
    /// Velocity on the block.
    pub vel: &'a [[f64; 2]],
    /// Speed on the block.
    pub abs_vel: &'a [f64],
    /// Pressure on the block.
    pub pressure: &'a [f64],
    /// The mesh's rows (`x`, `y` of the node block, the element block),
    /// when the file carries the mesh (every process or none).
    pub mesh: Option<MeshRows<'a>>,
}

/// A block of the mesh's rows: `x`, `y` of the nodes, the elements.
pub type MeshRows<'a> = (&'a [f64], &'a [f64], &'a [[u32; 8]]);

/// A [`Write`] that turns writes of zero bytes only into holes (it seeks
/// over them), so that the data regions of a template cost neither
/// memory nor disk.
struct Sparse {
    file: fs::File,
    at: u64,
}

impl Write for Sparse {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.iter().any(|&b| b != 0) {
            write_at(&self.file, buf, self.at)?;
        }
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
fn write_at(file: &fs::File, buf: &[u8], at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)
}

#[cfg(not(unix))]
fn write_at(_file: &fs::File, _buf: &[u8], _at: u64) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "positioned writes need a Unix system",
    ))
}

/// Writes the results file at `path` collectively: every process of
/// `group` calls it with its rows (`rows`), the whole mesh's `nodes` and
/// `elements`, and (read on the lead only) the root attributes.
///
/// # Errors
///
/// The lead's or any process's failure (the directory not writable, a
/// write failing, an attribute name repeated), the same on every
/// process; nothing is left at `path` (an existing file there is left as
/// it was).
pub fn write_results_blocks(
    path: &Path,
    group: &dyn ProcessGroup,
    nodes: usize,
    elements: usize,
    rows: &BlockRows,
    attrs: &[(String, Attr)],
) -> Result<(), H5Error> {
    let err = |m: String| H5Error::new(path, m);
    let with_mesh = rows.mesh.is_some();
    let datasets = results_datasets(nodes, elements, with_mesh);
    // 1. the lead: the structure, under a temporary name
    let mut staged: Option<Staged> = None;
    let made = if group.is_lead() {
        template(path, nodes, elements, with_mesh, attrs).map(|(s, at)| {
            let mut bytes = s.tmp().to_string_lossy().into_owned().into_bytes();
            for a in at {
                bytes.extend_from_slice(&a.to_le_bytes());
            }
            staged = Some(s);
            bytes
        })
    } else {
        Ok(Vec::new())
    };
    let mine = made.as_ref().err().map(|e| e.to_string());
    group.agree(mine).map_err(err)?;
    let shared = group.share(0, made.unwrap_or_default());
    let k = datasets.len();
    if shared.len() < 8 * k {
        return Err(err("the lead shared no file layout".into()));
    }
    let (name, at) = shared.split_at(shared.len() - 8 * k);
    let tmp = String::from_utf8_lossy(name).into_owned();
    let address: Vec<u64> = at
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    // 2. every process: its rows, at their offsets
    let wrote = write_rows(Path::new(&tmp), &datasets, &address, rows)
        .map_err(|e| format!("cannot write {tmp}: {e}"));
    group.agree(wrote.err()).map_err(err)?;
    // 3. the lead: into place
    let committed = match staged {
        Some(s) => s.commit(),
        None => Ok(()),
    };
    group.agree(committed.err()).map_err(err)
}

/// The file's structure with holes for the data, under a temporary name
/// beside `path`; the address of every dataset's data region.
fn template(
    path: &Path,
    nodes: usize,
    elements: usize,
    with_mesh: bool,
    attrs: &[(String, Attr)],
) -> Result<(Staged, Vec<u64>), H5Error> {
    check_attrs(path, attrs)?;
    let datasets = results_datasets(nodes, elements, with_mesh);
    let mut b = FileBuilder::new();
    for ds in &datasets {
        b.create_dataset(ds.name).with_zeros(ds.dtype(), &ds.shape);
    }
    set_attrs(&mut b, attrs);
    let (staged, file) = Staged::create(path).map_err(|m| H5Error::new(path, m))?;
    let mut w = Sparse { file, at: 0 };
    b.finish_to(&mut w)
        .map_err(|e| H5Error::new(path, format!("cannot write: HDF5 data: {e}")))?;
    // the holes at the end too
    w.file
        .set_len(w.at)
        .and_then(|()| w.file.sync_all())
        .map_err(|e| H5Error::new(path, format!("cannot write: {e}")))?;
    drop(w);
    // the data regions' addresses, read back from the layout
    let at = super::with_file(staged.tmp(), |f| {
        datasets
            .iter()
            .map(|ds| {
                let d = f.dataset(ds.name, "a results file")?;
                let want: u64 = ds.shape.iter().product::<u64>() * if ds.int == Some(false) { 4 } else { 8 };
                match d.layout() {
                    Ok(Layout::Contiguous {
                        address: Some(a),
                        size,
                    }) if size == want => Ok(a),
                    other => Err(f.err(format!(
                        "dataset \"{}\" was not laid out as one contiguous region of {want} bytes ({other:?})",
                        ds.name
                    ))),
                }
            })
            .collect::<Result<Vec<u64>, H5Error>>()
    })?;
    Ok((staged, at))
}

/// Writes this process's rows of every dataset at `address`, then syncs.
fn write_rows(
    tmp: &Path,
    datasets: &[super::ResultsDataset],
    address: &[u64],
    rows: &BlockRows,
) -> std::io::Result<()> {
    let file = fs::OpenOptions::new().write(true).open(tmp)?;
    let f64s = |v: &[f64]| fast::encode::<f64, 8>(v).expect("every f64 encodes");
    for (ds, &a) in datasets.iter().zip(address) {
        let (first, bytes) = match ds.name {
            "u" => (rows.first_node * 8, f64s(rows.u)),
            "vel" => (rows.first_element * 16, f64s(rows.vel.as_flattened())),
            "abs_vel" => (rows.first_element * 8, f64s(rows.abs_vel)),
            "pressure" => (rows.first_element * 8, f64s(rows.pressure)),
            "xy" => {
                let (x, y, _) = rows.mesh.expect("the mesh's rows");
                let xy: Vec<f64> = x.iter().zip(y).flat_map(|(&x, &y)| [x, y]).collect();
                (rows.first_node * 16, f64s(&xy))
            }
            _ => {
                let (_, _, q) = rows.mesh.expect("the mesh's rows");
                let q: Vec<i64> = q.as_flattened().iter().map(|&v| i64::from(v)).collect();
                if ds.int == Some(true) {
                    (
                        rows.first_element * 64,
                        fast::encode::<i64, 8>(&q).expect("i64"),
                    )
                } else {
                    let b = fast::encode::<i64, 4>(&q)
                        .ok_or_else(|| std::io::Error::other("a node index above 2^31"))?;
                    (rows.first_element * 32, b)
                }
            }
        };
        if !bytes.is_empty() {
            write_at(&file, &bytes, a + first as u64)?;
        }
    }
    file.sync_data()
}
