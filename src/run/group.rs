//! A plan run as one process of a group (the `mpi` backend): the lead
//! reads the whole mesh and the results are gathered onto it, or, when the
//! group reads in blocks, every process reads (or generates) its blocks,
//! the group partitions and moves them, and the results stay in blocks,
//! which every process writes into the one results file
//! ([`RunResult::write_results`]).

use super::{RunResult, load_mesh, non_finite_field, result_of};
use crate::error::AppError;
use crate::generate::GeneratedBlocks;
use crate::io::h5::{self, H5Blocks};
use crate::io::{MeshFormat, h5::par::BlockRows};
use crate::scene::{MeshSource, Plan};
use quadflow_systems::components::{BoundaryReport, LinearSystem, Notes, ProgressHook, Solution};
use quadflow_systems::mesh::Mesh;
use quadflow_systems::pipeline::{
    MeshBlocks, MeshCheck, PhaseTimes, Pipeline, ProcessGroup, Resolved,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The process group of the plan's backend that spans processes (the
/// `mpi` backend), started (MPI initialised); `None` for a run in one
/// process.
pub fn process_group(plan: &Plan) -> Result<Option<Arc<dyn ProcessGroup>>, AppError> {
    let mut found: Option<Arc<dyn ProcessGroup>> = None;
    for b in plan.planned_backends() {
        if let Some(g) = b.process_group()? {
            if found.is_some() {
                return Err(AppError::Other(format!(
                    "two backends of the plan span processes ({} and another); one run has one group",
                    b.name()
                )));
            }
            found = Some(g);
        }
    }
    Ok(found)
}

/// Every process's `r` agreed: `r` where every process succeeded, else,
/// on every process, the message of the lowest failing rank.
pub fn agreed<T>(group: &dyn ProcessGroup, r: Result<T, AppError>) -> Result<T, AppError> {
    let mine = r.as_ref().err().map(|e| e.to_string());
    match group.agree(mine) {
        Ok(()) => r,
        Err(m) => Err(AppError::Other(m)),
    }
}

/// This process's share of a distributed run ([`RunResult::blocks`]).
#[derive(Debug, Clone)]
pub struct Blocks {
    /// Nodes of the whole mesh.
    pub nodes: usize,
    /// Elements of the whole mesh.
    pub elements: usize,
    /// Elements renumbered counter-clockwise, in the whole mesh.
    pub flipped: usize,
    /// The first node of this process's node block (`solution.u`).
    pub first_node: usize,
    /// The first element of this process's element block (`vel`, ...).
    pub first_element: usize,
    /// The least and the largest `u` of the whole mesh.
    pub u_range: [f64; 2],
    /// The mesh's rows of the blocks (`x`, `y` of the node block, the
    /// elements of the element block), when the results file carries the
    /// mesh.
    pub mesh: Option<OwnedMeshRows>,
}

/// The mesh's rows of a block, owned: `x`, `y` of the nodes, the elements.
pub type OwnedMeshRows = (Vec<f64>, Vec<f64>, Vec<[u32; 8]>);

/// The source of the plan's mesh a block at a time, when it can be read
/// so (an HDF5 file, or a generator); `None` for a gmsh file, which the
/// lead reads whole.
fn blocks_of(plan: &Plan) -> Option<Result<Box<dyn MeshBlocks>, AppError>> {
    match &plan.mesh {
        MeshSource::File(p) => match MeshFormat::of(p) {
            Ok(MeshFormat::Hdf5) => Some(
                H5Blocks::open(p, &p.display().to_string())
                    .map(|b| Box::new(b) as Box<dyn MeshBlocks>)
                    .map_err(AppError::from),
            ),
            _ => None,
        },
        MeshSource::Generate(g, n) => Some(
            GeneratedBlocks::new(*g, *n)
                .map(|b| Box::new(b) as Box<dyn MeshBlocks>)
                .map_err(AppError::from),
        ),
    }
}

/// Runs the plan as one process of `group` (every process calls it);
/// every failure is agreed, so every process returns the same error and
/// none waits for another.
///
/// When the group reads in blocks ([`ProcessGroup::reads_blocks`]) and the
/// mesh can be read so (an HDF5 file, a generator) and no output needs the
/// whole mesh in one process (`vtu`, `png`), every process reads its
/// blocks and returns `Some` result holding its blocks of the fields
/// ([`RunResult::blocks`]; written by [`RunResult::write_results`] on
/// every process). Otherwise the lead loads the mesh, the group splits
/// it, each process runs the pipeline on its part and the group joins
/// the results into the lead's world: `Some` result on the lead only, the
/// whole mesh, `u` and the element fields gathered, phase times the
/// slowest process's.
pub fn run_group(
    plan: &Plan,
    group: &dyn ProcessGroup,
    progress: Option<ProgressHook>,
) -> Result<Option<RunResult>, AppError> {
    run_group_with(plan, group, progress, true)
}

/// [`run_group`], the block way only when `blocks` allows it (a caller
/// that needs the whole result in the lead, as [`super::run`] does for a
/// group of one process, passes `false`).
pub(super) fn run_group_with(
    plan: &Plan,
    group: &dyn ProcessGroup,
    progress: Option<ProgressHook>,
    blocks: bool,
) -> Result<Option<RunResult>, AppError> {
    let whole = !blocks || plan.outputs.vtu.is_some() || plan.outputs.png.is_some();
    if group.reads_blocks()
        && !whole
        && let Some(source) = blocks_of(plan)
    {
        return run_blocks(plan, group, source, progress).map(Some);
    }
    let lead = group.is_lead();
    for b in plan.planned_backends() {
        b.prewarm();
    }
    let loaded = lead
        .then(|| {
            load_mesh(plan).and_then(|l| {
                super::check_outputs(plan, l.mesh.nodes())?;
                Ok(l)
            })
        })
        .transpose();
    let loaded = agreed(group, loaded)?;
    let t0 = Instant::now();
    let local = group
        .split(loaded.as_ref().map(|l| &l.mesh), &plan.config)
        .map_err(AppError::Other)?;
    let p = Pipeline::new(local, plan.config.clone(), &plan.registry, &plan.phases);
    let mut p = agreed(group, p.map_err(AppError::from))?;
    if let (true, Some(h)) = (lead, progress) {
        p.world.insert_resource(h);
    }
    let ran = p.run().map_err(AppError::from);
    agreed(group, ran)?;
    if !group.join(&mut p.world).map_err(AppError::Other)? {
        return Ok(None);
    }
    let loaded = loaded.expect("the lead loaded the mesh");
    result_of(&mut p, plan, &loaded, t0).map(Some)
}

/// The block way of [`run_group`].
fn run_blocks(
    plan: &Plan,
    group: &dyn ProcessGroup,
    source: Result<Box<dyn MeshBlocks>, AppError>,
    progress: Option<ProgressHook>,
) -> Result<RunResult, AppError> {
    let started = Instant::now();
    for b in plan.planned_backends() {
        b.prewarm();
    }
    let source = agreed(group, source)?;
    let origin = source.origin();
    let check = MeshCheck {
        orientation: plan.orientation,
        parallel: plan.planned_backends().iter().any(|b| !b.single_threaded()),
    };
    let split = group
        .split_blocks(source.as_ref(), &plan.config, check)
        .map_err(AppError::Other)?;
    // the results carry the mesh when an XDMF index reads it, or when
    // there is no mesh file to refer to
    let generated = !matches!(plan.mesh, MeshSource::File(_));
    let keep = plan.outputs.xdmf.is_some() || generated;
    let quadflow_systems::pipeline::BlockSplit {
        part,
        nodes,
        elements,
        flipped,
        x,
        y,
        quad8,
        read_seconds,
        ..
    } = split;
    // (dropped here when the results do not carry them)
    let mesh_rows = keep.then_some((x, y, quad8));
    let p = Pipeline::new(part, plan.config.clone(), &plan.registry, &plan.phases);
    let mut p = agreed(group, p.map_err(AppError::from))?;
    if let (true, Some(h)) = (group.is_lead(), progress) {
        p.world.insert_resource(h);
    }
    let ran = p.run().map_err(AppError::from);
    agreed(group, ran)?;
    let b = group.join_blocks(&mut p.world).map_err(AppError::Other)?;
    // a field that is not finite, named by its index in the whole mesh
    let vel = b.vel;
    let bad = non_finite_field(&b.u, &vel, &b.abs_vel, &b.pressure, &plan.config.physics)
        .map(|what| renumber(&what, b.first_node, b.first_element));
    let bad = bad.map(|what| AppError::Other(format!("{origin}: {what}; nothing was written")));
    agreed(group, bad.map_or(Ok(()), Err))?;
    let reports = p
        .reports()
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
    let w = &mut p.world;
    let mut solution = std::mem::take(&mut *w.resource_mut::<Solution>());
    solution.u = b.u;
    let load_seconds = read_seconds.max(0.0);
    let mesh_path = match &plan.mesh {
        MeshSource::File(f) => Some(
            std::fs::canonicalize(f)
                .or_else(|_| std::path::absolute(f))
                .unwrap_or_else(|_| f.clone()),
        ),
        MeshSource::Generate(..) => None,
    };
    Ok(RunResult {
        mesh: Arc::new(Mesh {
            x: Vec::new(),
            y: Vec::new(),
            elements: Vec::new(),
            flipped,
            node_sets: Default::default(),
            part_of: None,
        }),
        origin,
        mesh_path,
        load_seconds,
        phase_seconds: w.resource::<PhaseTimes>().seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        started,
        backends: w.resource::<Resolved>().0,
        solution,
        vel,
        abs_vel: b.abs_vel,
        pressure: b.pressure,
        nnz: w.resource::<LinearSystem>().nnz,
        boundary: w.resource::<BoundaryReport>().clone(),
        notes: w.resource::<Notes>().0.clone(),
        warnings: whole_warnings(flipped, elements, &w.resource::<BoundaryReport>().floating),
        solver: plan.config.solver.method.name().to_string(),
        rtol: plan.rtol(),
        scene_toml: plan.scene_toml.clone(),
        reports,
        blocks: Some(Blocks {
            nodes,
            elements,
            flipped,
            first_node: b.first_node,
            first_element: b.first_element,
            u_range: b.u_range,
            mesh: mesh_rows,
        }),
    })
}

/// The warnings of the whole mesh (the parts' pipelines see neither the
/// renumbered elements nor the whole components), worded as a run on one
/// process words them.
fn whole_warnings(
    flipped: usize,
    elements: usize,
    floating: &[quadflow_systems::topology::FloatingComponent],
) -> Vec<String> {
    let mut w = Vec::new();
    if flipped > 0 {
        w.push(format!(
            "{flipped} of {elements} elements were numbered clockwise and have been renumbered counter-clockwise (set [mesh] orientation = \"refuse\" to refuse such meshes)"
        ));
    }
    for c in floating {
        w.push(format!(
            "{} ([mesh] components = \"refuse\" makes this an error)",
            quadflow_systems::boundary::floating_message(c)
        ));
    }
    w
}

/// `what` ([`non_finite_field`]'s message about a block) with the node or
/// element index of the block made the whole mesh's.
fn renumber(what: &str, first_node: usize, first_element: usize) -> String {
    for (key, first) in [(" at node ", first_node), (" at element ", first_element)] {
        if let Some(i) = what.find(key) {
            let rest = &what[i + key.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(k) = digits.parse::<usize>() {
                return format!("{}{key}{}{}", &what[..i], k + first, &rest[digits.len()..]);
            }
        }
    }
    what.to_string()
}

/// Every process of `group` writes its rows of the results file `path`
/// (collective).
pub(super) fn write_blocks(
    r: &RunResult,
    b: &Blocks,
    path: &Path,
    group: &dyn ProcessGroup,
) -> Result<(), AppError> {
    let _s = tracing::info_span!("write_results").entered();
    let rows = BlockRows {
        first_node: b.first_node,
        u: &r.solution.u,
        first_element: b.first_element,
        vel: &r.vel,
        abs_vel: &r.abs_vel,
        pressure: &r.pressure,
        mesh: b
            .mesh
            .as_ref()
            .map(|(x, y, q)| (x.as_slice(), y.as_slice(), q.as_slice())),
    };
    let attrs = if group.is_lead() {
        r.attributes()
    } else {
        Vec::new()
    };
    h5::par::write_results_blocks(path, group, b.nodes, b.elements, &rows, &attrs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_indices_become_the_whole_meshs() {
        assert_eq!(
            renumber("the potential u is NaN at node 3: scale", 100, 7),
            "the potential u is NaN at node 103: scale"
        );
        assert_eq!(
            renumber("the speed is inf at element 2: x", 100, 7),
            "the speed is inf at element 9: x"
        );
    }
}
