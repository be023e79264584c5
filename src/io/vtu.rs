//! ParaView output: a VTK XML UnstructuredGrid file (`.vtu`) of the solved
//! mesh and its fields ([`write_vtu`]).
//!
//! Layout: one piece; points with z = 0; cells of type 23
//! (`VTK_QUADRATIC_QUAD`, node order corners then mid-sides, which is the
//! Quad-8 order of `docs/numerics.md`); point data `u`; cell data `vel` (3 components, z = 0),
//! `abs_vel` and `pressure`. The arrays are stored as appended raw binary
//! data (`<AppendedData encoding="raw">`, little-endian, `header_type`
//! UInt64: each array is an 8-byte byte count followed by its values), the
//! most compact form VTK reads, so a 1.3-million-node result stays near its
//! in-memory size. ParaView, VTK and meshio read it.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use quadflow_systems::mesh::Mesh;

use super::atomic::write_atomic;

/// VTK's cell type of 8-node quadratic quadrilaterals.
pub const VTK_QUADRATIC_QUAD: u8 = 23;

/// A problem writing a `.vtu` file, naming the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct VtuError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Writes one array's values.
type ArrayWriter<'a> = Box<dyn Fn(&mut dyn Write) -> io::Result<()> + 'a>;

/// One appended array: its XML description and its bytes.
struct Array<'a> {
    name: &'a str,
    vtk_type: &'static str,
    components: usize,
    bytes: usize,
    write: ArrayWriter<'a>,
}

/// Writes `f64` values as little-endian bytes in chunks.
fn put_f64(w: &mut dyn Write, values: impl Iterator<Item = f64>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 * 4096);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
        if buf.len() >= 8 * 4096 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

/// Writes integers as little-endian `i32` (`wide` false) or `i64` bytes.
fn put_int(w: &mut dyn Write, values: impl Iterator<Item = u64>, wide: bool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 * 4096);
    for v in values {
        if wide {
            buf.extend_from_slice(&(v as i64).to_le_bytes());
        } else {
            buf.extend_from_slice(&(v as i32).to_le_bytes());
        }
        if buf.len() >= 8 * 4096 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

/// Writes `mesh` and its fields as a VTK XML UnstructuredGrid file (see the
/// module documentation for the layout): `u` per node, `vel`, `abs_vel` and
/// `pressure` per element. The file is written whole or not at all (a
/// temporary file beside `path`, renamed over it at the end).
///
/// # Errors
///
/// A [`VtuError`] naming `path` when a field's length does not match the
/// mesh (`u`: nodes; the others: elements), or writing fails.
pub fn write_vtu(
    path: &Path,
    mesh: &Mesh,
    u: &[f64],
    vel: &[[f64; 2]],
    abs_vel: &[f64],
    pressure: &[f64],
) -> Result<(), VtuError> {
    let err = |message: String| VtuError {
        path: path.display().to_string(),
        message,
    };
    let n = mesh.nodes();
    let e = mesh.elements.len();
    if u.len() != n {
        return Err(err(format!(
            "u has {} values but the mesh has {n} nodes",
            u.len()
        )));
    }
    for (name, len) in [
        ("vel", vel.len()),
        ("abs_vel", abs_vel.len()),
        ("pressure", pressure.len()),
    ] {
        if len != e {
            return Err(err(format!(
                "{name} has {len} values but the mesh has {e} elements"
            )));
        }
    }
    // Int32 indices while they fit, as VTK writes them itself.
    let wide = 8 * e as u64 > i32::MAX as u64;
    let (int_type, int_size) = if wide { ("Int64", 8) } else { ("Int32", 4) };

    let arrays: Vec<(&str, Array)> = vec![
        (
            "PointData",
            Array {
                name: "u",
                vtk_type: "Float64",
                components: 1,
                bytes: 8 * n,
                write: Box::new(|w| put_f64(w, u.iter().copied())),
            },
        ),
        (
            "CellData",
            Array {
                name: "vel",
                vtk_type: "Float64",
                components: 3,
                bytes: 24 * e,
                write: Box::new(|w| put_f64(w, vel.iter().flat_map(|v| [v[0], v[1], 0.0]))),
            },
        ),
        (
            "CellData",
            Array {
                name: "abs_vel",
                vtk_type: "Float64",
                components: 1,
                bytes: 8 * e,
                write: Box::new(|w| put_f64(w, abs_vel.iter().copied())),
            },
        ),
        (
            "CellData",
            Array {
                name: "pressure",
                vtk_type: "Float64",
                components: 1,
                bytes: 8 * e,
                write: Box::new(|w| put_f64(w, pressure.iter().copied())),
            },
        ),
        (
            "Points",
            Array {
                name: "Points",
                vtk_type: "Float64",
                components: 3,
                bytes: 24 * n,
                write: Box::new(|w| {
                    put_f64(
                        w,
                        mesh.x.iter().zip(&mesh.y).flat_map(|(&x, &y)| [x, y, 0.0]),
                    )
                }),
            },
        ),
        (
            "Cells",
            Array {
                name: "connectivity",
                vtk_type: int_type,
                components: 1,
                bytes: 8 * e * int_size,
                write: Box::new(move |w| {
                    put_int(
                        w,
                        mesh.elements.iter().flatten().map(|&v| u64::from(v)),
                        wide,
                    )
                }),
            },
        ),
        (
            "Cells",
            Array {
                name: "offsets",
                vtk_type: int_type,
                components: 1,
                bytes: e * int_size,
                write: Box::new(move |w| put_int(w, (1..=e as u64).map(|i| 8 * i), wide)),
            },
        ),
        (
            "Cells",
            Array {
                name: "types",
                vtk_type: "UInt8",
                components: 1,
                bytes: e,
                write: Box::new(move |w| {
                    let types = vec![VTK_QUADRATIC_QUAD; e];
                    w.write_all(&types)
                }),
            },
        ),
    ];

    let mut xml = String::new();
    let _ = writeln!(xml, "<?xml version=\"1.0\"?>");
    let _ = writeln!(
        xml,
        "<VTKFile type=\"UnstructuredGrid\" version=\"1.0\" byte_order=\"LittleEndian\" \
         header_type=\"UInt64\">"
    );
    let _ = writeln!(xml, "  <UnstructuredGrid>");
    let _ = writeln!(
        xml,
        "    <Piece NumberOfPoints=\"{n}\" NumberOfCells=\"{e}\">"
    );
    let mut offset = 0usize;
    let mut open: Option<&str> = None;
    for (section, a) in &arrays {
        if open != Some(section) {
            if let Some(o) = open {
                let _ = writeln!(xml, "      </{o}>");
            }
            match *section {
                "PointData" => {
                    let _ = writeln!(xml, "      <PointData Scalars=\"u\">");
                }
                "CellData" => {
                    let _ = writeln!(xml, "      <CellData Scalars=\"abs_vel\" Vectors=\"vel\">");
                }
                s => {
                    let _ = writeln!(xml, "      <{s}>");
                }
            }
            open = Some(section);
        }
        let comps = if a.components > 1 {
            format!(" NumberOfComponents=\"{}\"", a.components)
        } else {
            String::new()
        };
        let _ = writeln!(
            xml,
            "        <DataArray type=\"{}\" Name=\"{}\"{comps} format=\"appended\" \
             offset=\"{offset}\"/>",
            a.vtk_type, a.name
        );
        offset += 8 + a.bytes;
    }
    if let Some(o) = open {
        let _ = writeln!(xml, "      </{o}>");
    }
    let _ = writeln!(xml, "    </Piece>");
    let _ = writeln!(xml, "  </UnstructuredGrid>");
    let _ = write!(xml, "  <AppendedData encoding=\"raw\">\n   _");

    let _s = tracing::info_span!("write_vtu").entered();
    write_atomic(path, |w| {
        w.write_all(xml.as_bytes())?;
        for (_, a) in &arrays {
            w.write_all(&(a.bytes as u64).to_le_bytes())?;
            (a.write)(w)?;
        }
        w.write_all(b"\n  </AppendedData>\n</VTKFile>\n")
    })
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quadflow_systems::mesh::OrientationPolicy;

    #[test]
    fn lengths_are_checked_and_offsets_add_up() {
        let raw = crate::generate::mapped_grid(2, 1, |x, y| (x, y));
        let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).unwrap();
        let n = mesh.nodes();
        let e = mesh.elements.len();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.vtu");
        let u = vec![1.0; n];
        let err = write_vtu(
            &p,
            &mesh,
            &u[1..],
            &vec![[0.0; 2]; e],
            &vec![0.0; e],
            &vec![0.0; e],
        )
        .unwrap_err();
        assert!(err.message.contains("u has"), "{err}");
        let err = write_vtu(
            &p,
            &mesh,
            &u,
            &vec![[0.0; 2]; e],
            &vec![0.0; e + 1],
            &vec![0.0; e],
        )
        .unwrap_err();
        assert!(err.message.contains("abs_vel"), "{err}");
        assert!(!p.exists());
        write_vtu(
            &p,
            &mesh,
            &u,
            &vec![[0.0; 2]; e],
            &vec![0.0; e],
            &vec![0.0; e],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let marker = b"<AppendedData encoding=\"raw\">\n   _";
        let start = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap()
            + marker.len();
        let data_len = bytes.len() - start - b"\n  </AppendedData>\n</VTKFile>\n".len();
        let expected = 8 * 8 + 8 * n + 24 * e + 8 * e + 8 * e + 24 * n + 32 * e + 4 * e + e;
        assert_eq!(data_len, expected);
    }
}
