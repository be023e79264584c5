//! Named node sets in mesh files: one dataset per set in the group
//! `node_sets`, holding the set's 0-based node indices (1-D, sorted, without
//! repeats, int32 or int64).

use std::path::Path;

use hdf5_pure::{Dataset, FileBuilder};

use super::{H5Error, MeshLayout, NodeSets, Opened, check_shape, is_float, is_int, narrow};

/// The group holding the node sets.
pub(super) const GROUP: &str = "node_sets";

/// Adds `sets` to `b` as datasets `node_sets/NAME`, int64 when `int64` else
/// int32, stored as `layout` says; nothing when there are none.
pub(super) fn write(
    b: &mut FileBuilder,
    path: &Path,
    sets: &NodeSets,
    int64: bool,
    layout: MeshLayout,
) -> Result<(), H5Error> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut group = b.create_group(GROUP);
    for (name, members) in sets {
        if name.is_empty() || name == "." || name.contains('/') {
            return Err(H5Error::new(
                path,
                format!(
                    "node set {name:?} cannot be stored in HDF5: a dataset name must not be \
                     empty or \".\" nor contain \"/\"; rename the set"
                ),
            ));
        }
        let mut indices: Vec<i64> = members.iter().map(|&i| i64::from(i)).collect();
        indices.sort_unstable();
        indices.dedup();
        let len = indices.len() as u64;
        let ds = group.create_dataset(name);
        if int64 {
            ds.with_i64_data(&indices);
        } else {
            let what = format!("a node index of node set \"{name}\"");
            ds.with_i32_data(&narrow(path, &indices, &what)?);
        }
        ds.with_shape(&[len]);
        layout.apply(ds, &[len], if int64 { 8 } else { 4 });
    }
    b.add_group(group.finish());
    Ok(())
}

/// Reads the node sets of the open file (none without a `node_sets` group)
/// for a mesh of `nodes` nodes, checking every index.
pub(super) fn read(f: &Opened, nodes: usize) -> Result<NodeSets, H5Error> {
    let root = f.file.root();
    let groups = root
        .groups()
        .map_err(|e| f.corrupt("cannot list the groups at the root", e))?;
    if !groups.iter().any(|g| g == GROUP) {
        let datasets = root
            .datasets()
            .map_err(|e| f.corrupt("cannot list the datasets at the root", e))?;
        if datasets.iter().any(|d| d == GROUP) {
            return Err(f.err(format!(
                "\"{GROUP}\" is a dataset; node sets must be a group \"{GROUP}\" holding one \
                 1-D dataset of node indices per set"
            )));
        }
        return Ok(NodeSets::new());
    }
    let group = f
        .file
        .group(GROUP)
        .map_err(|e| f.corrupt(&format!("cannot open group \"{GROUP}\""), e))?;
    let sub = group
        .groups()
        .map_err(|e| f.corrupt(&format!("cannot list group \"{GROUP}\""), e))?;
    if let Some(g) = sub.first() {
        return Err(f.err(format!(
            "\"{GROUP}/{g}\" is a group; \"{GROUP}\" must hold only datasets, one 1-D dataset \
             of node indices per set"
        )));
    }
    let names = group
        .datasets()
        .map_err(|e| f.corrupt(&format!("cannot list group \"{GROUP}\""), e))?;
    let mut sets = NodeSets::new();
    for name in names {
        let ds = group
            .dataset(&name)
            .map_err(|e| f.corrupt(&format!("cannot open dataset \"{GROUP}/{name}\""), e))?;
        let indices = read_set(f, &ds, &name, nodes)?;
        sets.insert(name, indices);
    }
    Ok(sets)
}

/// Reads and checks one set, returning its indices sorted, without repeats.
fn read_set(f: &Opened, ds: &Dataset, name: &str, nodes: usize) -> Result<Vec<u32>, H5Error> {
    let what = format!("node set \"{name}\" (dataset \"{GROUP}/{name}\")");
    let shape = f.shape(ds, &format!("{GROUP}/{name}"))?;
    check_shape(&shape, None).map_err(|_| {
        f.err(format!(
            "{what} has shape {shape:?}; it must be 1-D, a list of node indices"
        ))
    })?;
    let dtype = f.dtype(ds, &format!("{GROUP}/{name}"))?;
    if !is_int(&dtype) {
        let hint = if is_float(&dtype) {
            "; convert it, e.g. s.astype(\"int32\") in NumPy"
        } else {
            ""
        };
        return Err(f.err(format!(
            "{what} has datatype {dtype}; it must hold integer node indices (int32 or \
             int64){hint}"
        )));
    }
    let out_of_range = |v: String| {
        f.err(format!(
            "{what} holds node index {v}, outside 0..{nodes}: the mesh has {nodes} nodes and \
             indices are 0-based"
        ))
    };
    let read_err = |e: hdf5_pure::Error| f.corrupt(&format!("cannot read {what}"), e);
    let mut indices: Vec<u32> = if matches!(dtype, hdf5_pure::DType::U64) {
        let raw = ds.read_u64().map_err(read_err)?;
        f.check_len(&format!("{GROUP}/{name}"), raw.len(), &shape)?;
        raw.into_iter()
            .map(|v| to_index(v, nodes).ok_or_else(|| out_of_range(v.to_string())))
            .collect::<Result<_, _>>()?
    } else {
        let raw = ds.read_i64().map_err(read_err)?;
        f.check_len(&format!("{GROUP}/{name}"), raw.len(), &shape)?;
        raw.into_iter()
            .map(|v| {
                u64::try_from(v)
                    .ok()
                    .and_then(|u| to_index(u, nodes))
                    .ok_or_else(|| out_of_range(v.to_string()))
            })
            .collect::<Result<_, _>>()?
    };
    indices.sort_unstable();
    indices.dedup();
    Ok(indices)
}

/// `v` as a node index of a mesh of `nodes` nodes, if it is one.
fn to_index(v: u64, nodes: usize) -> Option<u32> {
    u32::try_from(v).ok().filter(|&i| (i as usize) < nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_in_range_only() {
        assert_eq!(to_index(0, 3), Some(0));
        assert_eq!(to_index(2, 3), Some(2));
        assert_eq!(to_index(3, 3), None);
        assert_eq!(to_index(u64::from(u32::MAX) + 1, usize::MAX), None);
    }
}
