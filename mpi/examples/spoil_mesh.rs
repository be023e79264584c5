//! Writes a copy of a mesh file with one element made invalid, for the
//! MPI tests of a bad element in one rank's block (`mpi/run-tests.sh`).
//!
//! ```text
//! spoil_mesh IN.h5 OUT.h5 ELEMENT [contiguous|gzip]
//! ```
//! Element `ELEMENT` lists its third corner again in place of its third
//! mid-side node, which a run must refuse with "element ELEMENT lists
//! node N twice".

use quadflow::io::h5::{self, MeshLayout};
use std::path::PathBuf;

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [input, out, element, rest @ ..] = a.as_slice() else {
        return Err("usage: spoil_mesh IN.h5 OUT.h5 ELEMENT [contiguous|gzip]".into());
    };
    let e: usize = element
        .parse()
        .map_err(|_| format!("ELEMENT {element}: not a number"))?;
    let layout = match rest.first().map(String::as_str) {
        None | Some("contiguous") => MeshLayout::Contiguous,
        Some("gzip") => MeshLayout::Gzip,
        Some(o) => return Err(format!("layout {o}: contiguous or gzip")),
    };
    let (mut raw, sets) =
        h5::read_mesh_with_sets(&PathBuf::from(input)).map_err(|e| e.to_string())?;
    let el = raw
        .quad8
        .get_mut(e)
        .ok_or_else(|| format!("the mesh has no element {e}"))?;
    el[6] = el[2];
    h5::write_mesh_with_sets(&PathBuf::from(out), &raw, &sets, false, layout)
        .map_err(|e| e.to_string())?;
    println!(
        "element {e} of {} now lists node {} twice",
        raw.quad8.len(),
        raw.quad8[e][2]
    );
    Ok(())
}
