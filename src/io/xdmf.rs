//! XDMF index over a results file ([`write_xdmf`]): a small XML file by
//! which ParaView (and VisIt, meshio) open the HDF5 results of any size,
//! reading the arrays straight from the HDF5 file.
//!
//! One uniform grid: topology `Quadrilateral_8` (VTK's quadratic quad,
//! whose node order, corners then mid-sides from the first edge on, is
//! quadflow's), geometry `XY` from the results file's `xy`, point data
//! `u`, cell data `abs_vel` (the speed) and `pressure`. The results file
//! must carry its mesh ([`super::h5::ResultsMesh`]). The HDF5 file is
//! named relative to the XDMF file when they share a directory (the two
//! move together), else by its absolute path.

use std::path::{Path, PathBuf};

/// What the index describes: the results file and its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct XdmfIndex {
    /// The results file (HDF5) the index points at.
    pub results: PathBuf,
    /// Nodes.
    pub nodes: usize,
    /// Elements.
    pub elements: usize,
    /// Whether `quad8` is stored as int64 (else int32).
    pub int64: bool,
}

/// The XML of the index, the HDF5 file named `h5` in it.
pub fn xdmf_text(index: &XdmfIndex, h5: &str) -> String {
    let (n, e) = (index.nodes, index.elements);
    let q = if index.int64 { 8 } else { 4 };
    let item = |dims: String, kind: &str, precision: usize, name: &str| {
        format!(
            "<DataItem Dimensions=\"{dims}\" NumberType=\"{kind}\" Precision=\"{precision}\" Format=\"HDF\">{h5}:/{name}</DataItem>"
        )
    };
    let attr = |name: &str, center: &str, dims: usize| {
        format!(
            "      <Attribute Name=\"{name}\" AttributeType=\"Scalar\" Center=\"{center}\">\n        {}\n      </Attribute>\n",
            item(dims.to_string(), "Float", 8, name)
        )
    };
    format!(
        "<?xml version=\"1.0\" ?>\n\
         <!-- quadflow results: open in ParaView (Xdmf3 reader), VisIt or meshio -->\n\
         <Xdmf Version=\"3.0\">\n\
         \x20 <Domain>\n\
         \x20   <Grid Name=\"quadflow\" GridType=\"Uniform\">\n\
         \x20     <Topology TopologyType=\"Quadrilateral_8\" NumberOfElements=\"{e}\">\n\
         \x20       {}\n\
         \x20     </Topology>\n\
         \x20     <Geometry GeometryType=\"XY\">\n\
         \x20       {}\n\
         \x20     </Geometry>\n\
         {}{}{}\
         \x20   </Grid>\n\
         \x20 </Domain>\n\
         </Xdmf>\n",
        item(format!("{e} 8"), "Int", q, "quad8"),
        item(format!("{n} 2"), "Float", 8, "xy"),
        attr("u", "Node", n),
        attr("abs_vel", "Cell", e),
        attr("pressure", "Cell", e),
    )
}

/// How the index at `xmf` names `results`: its file name when both are
/// in one directory, else its absolute path.
fn name_from(xmf: &Path, results: &Path) -> String {
    let dir = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .and_then(|a| a.parent().map(Path::to_path_buf))
    };
    match (dir(xmf), dir(results), results.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => name.to_string_lossy().into_owned(),
        _ => std::path::absolute(results)
            .unwrap_or_else(|_| results.to_path_buf())
            .display()
            .to_string(),
    }
}

/// Writes the XDMF index `xmf` over `index.results` (whole or not at all).
///
/// # Errors
///
/// A message naming `xmf` when the results file's name holds a `:` (XDMF
/// separates the file from the dataset with one) or the file cannot be
/// written.
pub fn write_xdmf(xmf: &Path, index: &XdmfIndex) -> Result<(), String> {
    let h5 = name_from(xmf, &index.results);
    if h5.contains(':') || h5.contains('<') || h5.contains('&') {
        return Err(format!(
            "{}: the results file's path {h5} holds a character XDMF cannot name it with (':', '<' or '&'); write the results under another name",
            xmf.display()
        ));
    }
    let text = xdmf_text(index, &h5);
    super::atomic::write_atomic(xmf, |w| {
        use std::io::Write;
        w.write_all(text.as_bytes())
    })
    .map_err(|m| format!("{}: {m}", xmf.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_every_array_with_its_shape() {
        let t = xdmf_text(
            &XdmfIndex {
                results: "r.h5".into(),
                nodes: 21,
                elements: 4,
                int64: false,
            },
            "r.h5",
        );
        for want in [
            "TopologyType=\"Quadrilateral_8\" NumberOfElements=\"4\"",
            "Dimensions=\"4 8\" NumberType=\"Int\" Precision=\"4\" Format=\"HDF\">r.h5:/quad8<",
            "GeometryType=\"XY\"",
            "Dimensions=\"21 2\" NumberType=\"Float\" Precision=\"8\" Format=\"HDF\">r.h5:/xy<",
            "Name=\"u\" AttributeType=\"Scalar\" Center=\"Node\"",
            "Dimensions=\"21\" NumberType=\"Float\" Precision=\"8\" Format=\"HDF\">r.h5:/u<",
            "Name=\"abs_vel\" AttributeType=\"Scalar\" Center=\"Cell\"",
            "Name=\"pressure\" AttributeType=\"Scalar\" Center=\"Cell\"",
        ] {
            assert!(t.contains(want), "{want} in\n{t}");
        }
    }

    #[test]
    fn the_results_are_named_beside_the_index_or_absolutely() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(name_from(&d.join("a.xmf"), &d.join("r.h5")), "r.h5");
        let other = name_from(&d.join("sub/a.xmf"), &d.join("r.h5"));
        assert!(
            Path::new(&other).is_absolute() && other.ends_with("r.h5"),
            "{other}"
        );
    }
}
