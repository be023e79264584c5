//! `quadflow mesh`: generate a mesh, or convert a mesh file.
//!
//! ```text
//! quadflow mesh GEOMETRY [--nodes N] -o FILE.h5|FILE.msh [--layout gzip|contiguous]
//!               [--msh-version 2.2|4.1] [--binary]
//! quadflow mesh convert IN OUT [--layout gzip|contiguous] [--msh-version 2.2|4.1] [--binary]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use quadflow_systems::mesh::{Mesh, OrientationPolicy};

use crate::error::AppError;
use crate::generate::{self, Geometry};
use crate::io::gmsh::MshVersion;
use crate::io::h5::MeshLayout;
use crate::io::{self, MeshFormat, RawMesh};

/// How `.msh` output is written.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MshFlags {
    /// MSH format version of .msh output: 2.2 or 4.1.
    #[arg(long, default_value = "4.1")]
    pub msh_version: String,
    /// Write .msh output in binary (default ASCII).
    #[arg(long)]
    pub binary: bool,
}

impl MshFlags {
    /// The variant these flags ask for.
    ///
    /// # Errors
    ///
    /// [`AppError::Other`] for a version other than 2.2 and 4.1.
    pub fn version(&self) -> Result<MshVersion, AppError> {
        MshVersion::parse(&self.msh_version, self.binary).ok_or_else(|| {
            AppError::Other(format!(
                "--msh-version {}: quadflow writes MSH 2.2 or 4.1",
                self.msh_version
            ))
        })
    }
}

/// How HDF5 mesh output is stored.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct H5Flags {
    /// Storage of HDF5 output: gzip (chunked, shuffled and deflated on all
    /// cores; about a fifth of the size) or contiguous (unfiltered; the
    /// fastest to write and read).
    #[arg(long, default_value = "gzip")]
    pub layout: String,
}

impl H5Flags {
    /// The layout these flags ask for.
    ///
    /// # Errors
    ///
    /// [`AppError::Other`] for a name other than gzip and contiguous.
    pub fn layout(&self) -> Result<MeshLayout, AppError> {
        MeshLayout::parse(&self.layout).ok_or_else(|| {
            AppError::Other(format!(
                "--layout {}: choose {}",
                self.layout,
                MeshLayout::NAMES
            ))
        })
    }
}

/// `quadflow mesh`: generate a mesh of a built-in geometry, or convert a
/// mesh file.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeshArgs {
    /// `convert IN OUT` instead of generating.
    #[command(subcommand)]
    pub action: Option<MeshAction>,
    /// Geometry to generate: straight_channel, venturi, backward_step,
    /// s_bend, t_junction, elbow_90.
    pub geometry: Option<String>,
    /// Approximate node count.
    #[arg(long, default_value_t = 20_000)]
    pub nodes: usize,
    /// Output mesh file: .h5/.hdf5 (HDF5) or .msh (gmsh); with node sets
    /// `inlet` at x = min x and `outlet` at x = max x.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// HDF5 output options.
    #[command(flatten)]
    pub h5: H5Flags,
    /// .msh output options.
    #[command(flatten)]
    pub msh: MshFlags,
}

/// Subcommands of `quadflow mesh`.
#[derive(clap::Subcommand, Debug)]
pub enum MeshAction {
    /// Convert a mesh file between HDF5 (.h5, .hdf5) and gmsh (.msh),
    /// validating it first.
    Convert {
        /// Input mesh file.
        input: PathBuf,
        /// Output mesh file.
        output: PathBuf,
        /// HDF5 output options.
        #[command(flatten)]
        h5: H5Flags,
        /// .msh output options.
        #[command(flatten)]
        msh: MshFlags,
    },
}

/// Nodes with `|x - min x| < 1e-9` (`inlet`) and `|x - max x| < 1e-9`
/// (`outlet`): the default boundary rule as node sets.
pub fn inlet_outlet_sets(raw: &RawMesh) -> BTreeMap<String, Vec<u32>> {
    let (lo, hi) = raw
        .x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let pick = |t: f64| -> Vec<u32> {
        (0..raw.x.len() as u32)
            .filter(|&i| (raw.x[i as usize] - t).abs() < 1e-9)
            .collect()
    };
    BTreeMap::from([
        ("inlet".to_string(), pick(lo)),
        ("outlet".to_string(), pick(hi)),
    ])
}

/// Validates `raw` as the solver would ([`Mesh::new`], clockwise elements
/// renumbered), returning the number of clockwise elements.
fn validate(raw: &RawMesh, origin: &str) -> Result<usize, AppError> {
    let m = Mesh::new(
        raw.x.clone(),
        raw.y.clone(),
        &raw.quad8,
        OrientationPolicy::Fix,
    )
    .map_err(|source| AppError::Mesh {
        origin: origin.to_string(),
        source,
    })?;
    Ok(m.flipped)
}

fn describe_sets(sets: &BTreeMap<String, Vec<u32>>) -> String {
    if sets.is_empty() {
        return "none".into();
    }
    sets.iter()
        .map(|(k, v)| format!("{k} ({} nodes)", v.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes a mesh and says what was written.
fn write_mesh_out(
    out: &Path,
    raw: &RawMesh,
    sets: &BTreeMap<String, Vec<u32>>,
    version: MshVersion,
    layout: MeshLayout,
) -> Result<String, AppError> {
    let t = Instant::now();
    let written = io::write_any_mesh(out, raw, sets, version, layout)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(match written {
        None => format!(
            "wrote     {} (HDF5, {}) in {secs:.3} s\n",
            out.display(),
            layout.name()
        ),
        Some(w) => {
            let mut s = format!(
                "wrote     {} ({version}, {} boundary line elements) in {secs:.3} s\n",
                out.display(),
                w.line_elements
            );
            for (name, n) in w.uncovered.iter().filter(|(_, n)| **n > 0) {
                s.push_str(&format!(
                    "warning   {n} nodes of node set \"{name}\" lie on no boundary edge of the \
                     set and are not in the file\n"
                ));
            }
            s
        }
    })
}

/// Runs `quadflow mesh`, returning what to print.
///
/// # Errors
///
/// Unknown geometry, missing `-o`, an unsupported extension or MSH version,
/// an invalid mesh, or a read or write failure.
pub fn mesh_command(a: &MeshArgs) -> Result<String, AppError> {
    if let Some(MeshAction::Convert {
        input,
        output,
        h5,
        msh,
    }) = &a.action
    {
        return convert(input, output, msh.version()?, h5.layout()?);
    }
    let name = a.geometry.as_deref().ok_or_else(|| {
        AppError::Other(
            "quadflow mesh needs a geometry (e.g. `quadflow mesh venturi --nodes 2000 -o \
             venturi.h5`) or `convert IN OUT`"
                .into(),
        )
    })?;
    let geom = Geometry::parse(name).ok_or_else(|| {
        AppError::Other(format!(
            "unknown geometry \"{name}\" (available: {})",
            Geometry::ALL.map(|g| g.name()).join(", ")
        ))
    })?;
    let out = a
        .out
        .as_ref()
        .ok_or_else(|| AppError::Other("quadflow mesh needs -o FILE.h5 or -o FILE.msh".into()))?;
    MeshFormat::of(out)?;
    let version = a.msh.version()?;
    let layout = a.h5.layout()?;
    let t = Instant::now();
    let raw = generate::generate(geom, a.nodes)?;
    let secs = t.elapsed().as_secs_f64();
    validate(&raw, &format!("generated {}", geom.name()))?;
    let q = generate::quality(&raw);
    let mut s = format!(
        "generated {} (~{} nodes): {} nodes, {} elements in {secs:.3} s\n\
         quality   Jacobian ratio min {:.4}, max {:.4} (worst element {})\n",
        geom.name(),
        a.nodes,
        raw.x.len(),
        raw.quad8.len(),
        q.min_ratio,
        q.max_ratio,
        q.worst_element
    );
    let sets = inlet_outlet_sets(&raw);
    s.push_str(&format!("node sets {}\n", describe_sets(&sets)));
    s.push_str(&write_mesh_out(out, &raw, &sets, version, layout)?);
    Ok(s)
}

/// `quadflow mesh convert`: reads `input`, validates it, writes `output`.
fn convert(
    input: &Path,
    output: &Path,
    version: MshVersion,
    layout: MeshLayout,
) -> Result<String, AppError> {
    MeshFormat::of(output)?;
    let t = Instant::now();
    let m = io::read_mesh_file(input)?;
    let secs = t.elapsed().as_secs_f64();
    let mut s = format!(
        "read      {}: {} nodes, {} elements in {secs:.3} s; node sets {}\n",
        input.display(),
        m.raw.x.len(),
        m.raw.quad8.len(),
        describe_sets(&m.node_sets)
    );
    if m.ignored_elements > 0 {
        s.push_str(&format!(
            "note      {} elements of other types (not 8- or 9-node quadrangles or lines) ignored\n",
            m.ignored_elements
        ));
    }
    if m.dropped_nodes > 0 {
        s.push_str(&format!(
            "note      {} nodes that no quadrangle uses dropped\n",
            m.dropped_nodes
        ));
    }
    let flipped = validate(&m.raw, &input.display().to_string())?;
    s.push_str("valid     yes");
    if flipped > 0 {
        s.push_str(&format!(
            " ({flipped} clockwise elements, written as they are; quadflow renumbers them \
             when it loads the mesh)"
        ));
    }
    s.push('\n');
    s.push_str(&write_mesh_out(
        output,
        &m.raw,
        &m.node_sets,
        version,
        layout,
    )?);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlet_and_outlet_sets() {
        let raw = generate::mapped_grid(3, 2, |x, y| (x, y));
        let sets = inlet_outlet_sets(&raw);
        assert_eq!(sets["inlet"].len(), 5);
        assert_eq!(sets["outlet"].len(), 5);
        let xmax = raw.x.iter().copied().fold(f64::MIN, f64::max);
        assert!(sets["outlet"].iter().all(|&i| raw.x[i as usize] == xmax));
    }

    #[test]
    fn h5_flags() {
        let f = |l: &str| H5Flags { layout: l.into() }.layout();
        assert_eq!(f("gzip").unwrap(), MeshLayout::Gzip);
        assert_eq!(f("contiguous").unwrap(), MeshLayout::Contiguous);
        let e = f("szip").unwrap_err().to_string();
        assert!(
            e.contains("szip") && e.contains("gzip or contiguous"),
            "{e}"
        );
    }

    #[test]
    fn msh_flags() {
        let f = MshFlags {
            msh_version: "2.2".into(),
            binary: true,
        };
        assert_eq!(f.version().unwrap(), MshVersion::V22Binary);
        let f = MshFlags {
            msh_version: "3.0".into(),
            binary: false,
        };
        assert!(f.version().is_err());
    }
}
