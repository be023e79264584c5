//! The outputs of a run: the results file (alone, or every process of a
//! group writing its rows), the XDMF index, VTU and PNG pictures, and the
//! checks made before a run of the outputs it asks for.

use super::{RunResult, group};
use crate::error::AppError;
use crate::io::h5::{self, ResultsData};
use crate::io::vtu;
use crate::scene::{OutputSection, Plan};
use crate::viz::plot::{self, Field, PlotOptions};
use quadflow_systems::pipeline::ProcessGroup;
use std::path::Path;

/// The largest mesh (nodes) `--vtu` writes: a VTU file holds every value
/// as text (base64) in one XML document that ParaView parses whole; above
/// this an XDMF index over the HDF5 results opens far faster.
pub const VTU_MAX_NODES: usize = 4_000_000;

/// Refuses, before anything runs, an output the mesh is too large for
/// (a VTU file above [`VTU_MAX_NODES`] nodes: the message says to write
/// an XDMF index instead).
///
/// # Errors
///
/// [`AppError::Other`] naming the output and the alternative.
pub fn check_outputs(plan: &Plan, nodes: usize) -> Result<(), AppError> {
    if let Some(p) = &plan.outputs.vtu
        && nodes > VTU_MAX_NODES
    {
        return Err(AppError::Other(format!(
            "{}: the mesh has {nodes} nodes, more than a VTU file serves well ({VTU_MAX_NODES}: every value is written as text into one XML document ParaView parses whole); write an XDMF index over the HDF5 results instead, which ParaView opens at any size: --xdmf FILE.xmf with --out RESULTS.h5 (or [output] xdmf)",
            p.display()
        )));
    }
    Ok(())
}

impl RunResult {
    /// Writes the results file (whole or not at all), alone: a result
    /// that holds the whole mesh (a distributed one is written by every
    /// process of its group: [`RunResult::write_results`]).
    pub fn write(&self, path: &Path) -> Result<(), AppError> {
        if self.blocks.is_some() {
            return Err(AppError::Other(format!(
                "{}: the results of a distributed run are written by every process of its group (RunResult::write_results)",
                path.display()
            )));
        }
        self.write_whole(path, false)
    }

    /// Writes the results file as `outputs` asks: with the mesh in it
    /// (datasets `xy` and `quad8`) when an XDMF index is asked for, and
    /// for a distributed run whose mesh has no HDF5 file (generated, or
    /// gmsh); every process of `group` writing its rows of a distributed
    /// result (collective: every process calls it), the process alone
    /// otherwise.
    ///
    /// # Errors
    ///
    /// A failure to write (agreed by every process of the group); a
    /// distributed result without its group.
    pub fn write_results(
        &self,
        path: &Path,
        outputs: &OutputSection,
        group: Option<&dyn ProcessGroup>,
    ) -> Result<(), AppError> {
        match (&self.blocks, group) {
            (Some(b), Some(g)) => group::write_blocks(self, b, path, g),
            (Some(_), None) => self.write(path),
            (None, _) => self.write_whole(path, outputs.xdmf.is_some()),
        }
    }

    /// The whole results file, with the mesh when `mesh`.
    fn write_whole(&self, path: &Path, mesh: bool) -> Result<(), AppError> {
        let _s = tracing::info_span!("write_results").entered();
        let m = &self.mesh;
        let rows = h5::ResultsMesh {
            x: &m.x,
            y: &m.y,
            quad8: &m.elements,
        };
        h5::write_results_with(
            path,
            &ResultsData {
                u: &self.solution.u,
                vel: &self.vel,
                abs_vel: &self.abs_vel,
                pressure: &self.pressure,
                attrs: self.attributes(),
            },
            mesh.then_some(&rows),
        )?;
        Ok(())
    }

    /// Writes the scene's VTU and PNG outputs of a run (`[output] vtu`, `png`),
    /// returning what to print.
    ///
    /// # Errors
    ///
    /// A failure to write either file.
    pub fn write_outputs(&self, outputs: &OutputSection) -> Result<String, AppError> {
        let result = self;
        let mut s = String::new();
        if let Some(p) = &outputs.xdmf {
            let results = outputs.results.as_ref().ok_or_else(|| {
                AppError::Other(format!(
                    "{}: an XDMF index points into the results file; give one (--out RESULTS.h5, or [output] results)",
                    p.display()
                ))
            })?;
            crate::io::xdmf::write_xdmf(
                p,
                &crate::io::xdmf::XdmfIndex {
                    results: results.clone(),
                    nodes: self.nodes(),
                    elements: self.elements(),
                    int64: self.nodes() > i32::MAX as usize,
                },
            )
            .map_err(AppError::Other)?;
            s.push_str(&format!("xdmf      {}\n", p.display()));
        }
        if let Some(p) = &outputs.vtu {
            vtu::write_vtu(
                p,
                &result.mesh,
                &result.solution.u,
                &result.vel,
                &result.abs_vel,
                &result.pressure,
            )?;
            s.push_str(&format!("vtu       {}\n", p.display()));
        }
        if let Some(p) = &outputs.png {
            let opts = PlotOptions {
                title: plot::title(
                    &plot::mesh_name(&result.origin),
                    Field::U,
                    &result.backend_label(),
                ),
                ..PlotOptions::default()
            };
            plot::plot_png(p, &result.mesh, &result.solution.u, Field::U, &opts)?;
            s.push_str(&format!("png       {}\n", p.display()));
        }
        Ok(s)
    }
}
