//! The process group of an `mpi` run ([`Group`], the engine's
//! [`ProcessGroup`]): agreement on failures, the split of the mesh into
//! parts (the lead's whole mesh, or every rank's blocks: [`Read`]), and
//! the join of the results (gathered into the lead's world, or left in
//! blocks for the parallel write), with the figures the backend reports
//! ([`Summary`]).

use crate::comm::{self, Comm, CommTimes, Timed};
use crate::driver::{self, Split};
use crate::part::Part;
use crate::partition::{Method, PartStats, PartitionError, Quality};
use crate::slice::{block, holder};
use crate::wire::{Reader, Writer};
use bevy_ecs::prelude::*;
use quadflow_systems::components::{BoundaryReport, ElementOutputs, LinearSystem, Solution};
use quadflow_systems::mesh::Mesh;
use quadflow_systems::pipeline::{
    BlockSplit, MeshBlocks, MeshCheck, Phase, PhaseTimes, ProcessGroup, ResultBlocks, RunConfig,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a group reads the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every rank reads (or generates) its blocks; the mesh is partitioned
    /// and moved to its parts without any rank holding it whole; the
    /// results stay in blocks for the parallel write.
    Blocks,
    /// The lead reads the whole mesh, partitions it and sends the parts;
    /// the results are gathered onto it (the way before blocks).
    Lead,
}

impl Read {
    /// Scene names.
    pub const NAMES: &'static [&'static str] = &["blocks", "lead"];

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Read::Blocks => "blocks",
            Read::Lead => "lead",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blocks" => Some(Read::Blocks),
            "lead" => Some(Read::Lead),
            _ => None,
        }
    }
}

/// This process's peak resident memory (`VmHWM` of `/proc/self/status`),
/// in bytes; 0 where it cannot be read.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A communicator a backend can hold.
pub type SharedComm = Box<dyn Comm + Send + Sync>;

/// What a started group holds: its communicator and, optionally,
/// something to drop after it (MPI's universe, which finalises MPI).
pub struct Started {
    /// The communicator of the group.
    pub comm: SharedComm,
    /// Dropped after the communicator, when the group ends.
    pub keep: Option<Box<dyn Send + Sync>>,
}

/// What the split left for the backend's systems and its report.
#[derive(Default)]
struct State {
    part: Option<Arc<Part>>,
    /// The lead's: the partition's quality, the whole mesh's boundary.
    quality: Option<Quality>,
    boundary: Option<BoundaryReport>,
    split_seconds: f64,
    /// Full entries of this rank's owned rows (set by the solve).
    owned_nnz: usize,
    /// The block read: seconds (the slowest rank's), bytes read by every
    /// rank, the method that split the mesh.
    read_seconds: f64,
    read_bytes: Vec<f64>,
    method: Option<Method>,
    /// Seconds of the block split's stages (the slowest rank's):
    /// partition, move to the parts, boundary and components, figures.
    split_stages: Option<[f64; 4]>,
}

/// The processes of an `mpi` run.
pub struct Group {
    comm: Timed<SharedComm>,
    method: Method,
    read: Read,
    local: &'static str,
    /// The device this rank chose (`CUDA_VISIBLE_DEVICES`), if any.
    device: Option<String>,
    failed: Mutex<Option<String>>,
    state: Mutex<State>,
    // last: dropped after the communicator
    _keep: Option<Box<dyn Send + Sync>>,
}

impl Group {
    /// A group over `started`'s communicator, splitting meshes with
    /// `method`, running `local` on the parts, this rank on `device` (for
    /// reports).
    pub fn new(
        started: Started,
        method: Method,
        local: &'static str,
        device: Option<String>,
    ) -> Self {
        Self {
            comm: Timed::new(started.comm),
            method,
            read: Read::Blocks,
            local,
            device,
            failed: Mutex::new(None),
            state: Mutex::new(State::default()),
            _keep: started.keep,
        }
    }

    /// This group, reading meshes as `read` says (the default: blocks).
    pub fn reading(mut self, read: Read) -> Self {
        self.read = read;
        self
    }

    /// The group's communicator (measured).
    pub fn comm(&self) -> &dyn Comm {
        &self.comm
    }

    /// Time spent communicating so far, on this rank.
    pub fn comm_times(&self) -> CommTimes {
        self.comm.times()
    }

    /// This rank's part, once split.
    pub fn part(&self) -> Option<Arc<Part>> {
        self.state.lock().expect("state").part.clone()
    }

    /// Records the full entries of this rank's owned rows (the join sums
    /// them into the whole matrix's).
    pub fn set_owned_nnz(&self, nnz: usize) {
        self.state.lock().expect("state").owned_nnz = nnz;
    }

    fn remember(&self, msg: String) -> String {
        *self.failed.lock().expect("failure") = Some(msg.clone());
        msg
    }
}

impl ProcessGroup for Group {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn size(&self) -> usize {
        self.comm.size()
    }

    fn agree(&self, mine: Option<String>) -> Result<(), String> {
        if let Some(f) = self.failed.lock().expect("failure").clone() {
            return Err(f);
        }
        let (r, p) = (self.rank(), self.size());
        let mine = mine.map(|m| {
            if r == 0 {
                m
            } else {
                format!("rank {r} of {p}: {m}")
            }
        });
        comm::agree(&self.comm, mine).map_err(|m| self.remember(m))
    }

    fn split(&self, mesh: Option<&Arc<Mesh>>, config: &RunConfig) -> Result<Arc<Mesh>, String> {
        if let Some(f) = self.failed.lock().expect("failure").clone() {
            return Err(f);
        }
        let t0 = Instant::now();
        let (part, quality) = driver::distribute(
            &self.comm,
            0,
            mesh.map(|m| m.as_ref()),
            &Split::Method(self.method),
            config,
        )
        .map_err(|m| self.remember(m))?;
        // the whole mesh's boundary figures (a part's count shared nodes
        // and edges more than once); the selection resolved in distribute
        let boundary = match mesh {
            Some(m) if self.rank() == 0 => {
                let sel = quadflow_systems::boundary::resolve(m, &config.boundaries)
                    .map_err(|e| e.to_string());
                match sel {
                    Ok(s) => Some(boundary_report(&s)),
                    Err(e) => return Err(self.remember(e)),
                }
            }
            _ => None,
        };
        let local = Arc::new(part.mesh.clone());
        let mut st = self.state.lock().expect("state");
        st.part = Some(Arc::new(part));
        st.quality = quality;
        st.boundary = boundary;
        st.split_seconds = t0.elapsed().as_secs_f64();
        st.method = mesh.map(|m| self.method.resolve(m.elements.len()));
        Ok(local)
    }

    fn join(&self, world: &mut World) -> Result<bool, String> {
        if let Some(f) = self.failed.lock().expect("failure").clone() {
            return Err(f);
        }
        let part = self.part().ok_or("join before split")?;
        let lead = self.rank() == 0;
        let c: &dyn Comm = &self.comm;
        // u of the owned nodes, by global id
        let u_local = std::mem::take(&mut world.resource_mut::<Solution>().u);
        let u = crate::cg::gather_u(c, 0, &part, &u_local[..part.owned]);
        // per-element outputs of the elements this rank owns
        let outputs = std::mem::take(&mut *world.resource_mut::<ElementOutputs>());
        let mut w = Writer::new();
        let own = &part.owned_elements;
        w.u32s(
            &own.iter()
                .map(|&l| part.element_gid[l as usize])
                .collect::<Vec<_>>(),
        );
        write_fields(&mut w, &outputs, own);
        let got = comm::gather(c, 0, w.finish());
        let figures = self.figures(world);
        if !lead {
            return Ok(false);
        }
        let ne = part.global_elements;
        let mut out = ElementOutputs {
            vel: vec![[0.0; 2]; ne],
            abs_vel: vec![0.0; ne],
            pressure: vec![0.0; ne],
        };
        for b in got.expect("the lead gathers") {
            let mut r = Reader::new(&b);
            let ids = r.u32s();
            read_fields(&mut r, &ids, 0, &mut out);
        }
        world.resource_mut::<Solution>().u = u.expect("the lead gathers");
        *world.resource_mut::<ElementOutputs>() = out;
        self.set_figures(world, figures);
        Ok(true)
    }

    fn reads_blocks(&self) -> bool {
        self.read == Read::Blocks
    }

    fn split_blocks(
        &self,
        source: &dyn MeshBlocks,
        config: &RunConfig,
        check: MeshCheck,
    ) -> Result<BlockSplit, String> {
        if let Some(f) = self.failed.lock().expect("failure").clone() {
            return Err(f);
        }
        let c: &dyn Comm = &self.comm;
        let (p, r) = (self.size(), self.rank());
        let t0 = Instant::now();
        let slice = crate::slice::read(c, source, check).map_err(|m| self.remember(m))?;
        let read_seconds = comm::max_f64(c, t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        if p > slice.elements {
            return Err(self.remember(
                PartitionError::MorePartsThanElements {
                    parts: p,
                    elements: slice.elements,
                }
                .to_string(),
            ));
        }
        let method = self.method.resolve(slice.elements);
        let mut stages = [0.0f64; 4];
        let mut clock = Instant::now();
        let mut lap = |k: usize| {
            stages[k] = clock.elapsed().as_secs_f64();
            clock = Instant::now();
        };
        let epart = match method {
            Method::Metis => metis_on_lead(c, &slice).map_err(|m| self.remember(m))?,
            _ => crate::rcb::rcb(
                c,
                slice.first_element,
                &slice.centroids.0,
                &slice.centroids.1,
                p,
            ),
        };
        lap(0);
        let mut slice = slice;
        slice.centroids = Default::default();
        let part = crate::migrate::build_part(c, &slice, epart).map_err(|m| self.remember(m))?;
        lap(1);
        let boundary = crate::bound::report(c, &part, &config.boundaries);
        let boundary = comm::agree(c, boundary.as_ref().err().cloned())
            .and(boundary)
            .map_err(|m| self.remember(m))?;
        lap(2);
        // the partition's quality: every part's figures, on the lead
        let (stats, edges, cut) = crate::migrate::part_stats(&part);
        let mut w = Writer::new();
        w.u64s(&[
            stats.owned_nodes as u64,
            stats.owned_elements as u64,
            stats.local_elements as u64,
            stats.ghost_nodes as u64,
            stats.neighbours as u64,
            stats.send_values as u64,
            stats.max_message as u64,
            stats.row_entries as u64,
            edges as u64,
            cut as u64,
        ]);
        let quality = comm::gather(c, 0, w.finish()).map(|all| {
            let mut q = Quality {
                parts: p,
                ..Quality::default()
            };
            for b in all {
                let v = Reader::new(&b).u64s();
                let u = |i: usize| v[i] as usize;
                q.per_part.push(PartStats {
                    owned_nodes: u(0),
                    owned_elements: u(1),
                    local_elements: u(2),
                    ghost_nodes: u(3),
                    neighbours: u(4),
                    send_values: u(5),
                    max_message: u(6),
                    row_entries: u(7),
                });
                q.edges += u(8);
                q.edge_cut += u(9);
            }
            q
        });
        lap(3);
        c.allreduce_max(&mut stages);
        let mut bytes = vec![0.0; p];
        bytes[r] = slice.bytes_read as f64;
        c.allreduce_sum(&mut bytes);
        let local = Arc::new(part.mesh.clone());
        let split_seconds = t1.elapsed().as_secs_f64();
        {
            let mut st = self.state.lock().expect("state");
            st.part = Some(Arc::new(part));
            st.quality = quality;
            st.boundary = Some(boundary);
            st.split_seconds = split_seconds;
            st.read_seconds = read_seconds;
            st.read_bytes = bytes;
            st.method = Some(method);
            st.split_stages = Some(stages);
        }
        Ok(BlockSplit {
            part: local,
            nodes: slice.nodes,
            elements: slice.elements,
            flipped: slice.flipped,
            first_node: slice.first_node,
            x: slice.x,
            y: slice.y,
            first_element: slice.first_element,
            quad8: slice.quad8,
            read_seconds,
        })
    }

    fn join_blocks(&self, world: &mut World) -> Result<ResultBlocks, String> {
        if let Some(f) = self.failed.lock().expect("failure").clone() {
            return Err(f);
        }
        let part = self.part().ok_or("join before split")?;
        let c: &dyn Comm = &self.comm;
        let (p, r) = (self.size(), self.rank());
        let (n, ne) = (part.global_nodes, part.global_elements);
        // u of the owned nodes to the holders of their blocks
        let u_local = std::mem::take(&mut world.resource_mut::<Solution>().u);
        let owned = &part.node_gid[..part.owned];
        let mut send: Vec<Writer> = (0..p).map(|_| Writer::new()).collect();
        let mut range = [f64::NEG_INFINITY; 2];
        for (&g, &v) in owned.iter().zip(&u_local) {
            range = [range[0].max(-v), range[1].max(v)];
            let _ = g;
        }
        for_runs(
            owned,
            |g| holder(n, p, g as usize),
            |h, from, to| {
                send[h].u32s(&owned[from..to]).f64s(&u_local[from..to]);
            },
        );
        drop(u_local);
        let got = c.alltoallv(send.into_iter().map(Writer::finish).collect());
        let nodes = block(n, p, r);
        let mut u = vec![f64::NAN; nodes.len()];
        for b in &got {
            let mut rd = Reader::new(b);
            while !rd.done() {
                let (ids, vals) = (rd.u32s(), rd.f64s());
                for (&g, &v) in ids.iter().zip(&vals) {
                    u[g as usize - nodes.start] = v;
                }
            }
        }
        drop(got);
        // the owned elements' outputs to the holders of their blocks
        let outputs = std::mem::take(&mut *world.resource_mut::<ElementOutputs>());
        let own: Vec<u32> = part
            .owned_elements
            .iter()
            .map(|&l| part.element_gid[l as usize])
            .collect();
        let mut send: Vec<Writer> = (0..p).map(|_| Writer::new()).collect();
        for_runs(
            &own,
            |g| holder(ne, p, g as usize),
            |h, from, to| {
                send[h].u32s(&own[from..to]);
                write_fields(&mut send[h], &outputs, &part.owned_elements[from..to]);
            },
        );
        drop(outputs);
        let got = c.alltoallv(send.into_iter().map(Writer::finish).collect());
        let els = block(ne, p, r);
        let mut out = ElementOutputs {
            vel: vec![[f64::NAN; 2]; els.len()],
            abs_vel: vec![f64::NAN; els.len()],
            pressure: vec![f64::NAN; els.len()],
        };
        for b in &got {
            let mut rd = Reader::new(b);
            while !rd.done() {
                let ids = rd.u32s();
                read_fields(&mut rd, &ids, els.start, &mut out);
            }
        }
        drop(got);
        c.allreduce_max(&mut range);
        let figures = self.figures(world);
        self.set_figures(world, figures);
        Ok(ResultBlocks {
            first_node: nodes.start,
            u,
            first_element: els.start,
            vel: out.vel,
            abs_vel: out.abs_vel,
            pressure: out.pressure,
            u_range: [-range[0], range[1]],
        })
    }

    fn share(&self, root: usize, bytes: Vec<u8>) -> Vec<u8> {
        let mut b = bytes;
        self.comm.broadcast(root, &mut b);
        b
    }
}

/// Calls `f(key, from, to)` for every run `from..to` of `items` with one
/// key (`items` ordered so that equal keys are adjacent).
fn for_runs(items: &[u32], key: impl Fn(u32) -> usize, mut f: impl FnMut(usize, usize, usize)) {
    let mut start = 0;
    while start < items.len() {
        let k = key(items[start]);
        let end = start + items[start..].partition_point(|&g| key(g) == k);
        f(k, start, end);
        start = end;
    }
}

/// The outputs of the local elements `which` (velocity, speed, pressure).
fn write_fields(w: &mut Writer, o: &ElementOutputs, which: &[u32]) {
    let pick =
        |f: &dyn Fn(usize) -> f64| which.iter().map(|&l| f(l as usize)).collect::<Vec<f64>>();
    w.f64s(&pick(&|l| o.vel[l][0]))
        .f64s(&pick(&|l| o.vel[l][1]))
        .f64s(&pick(&|l| o.abs_vel[l]))
        .f64s(&pick(&|l| o.pressure[l]));
}

/// Reads what [`write_fields`] wrote for the elements `ids` into `out`,
/// whose first element is `first`.
fn read_fields(r: &mut Reader, ids: &[u32], first: usize, out: &mut ElementOutputs) {
    let (vx, vy, s, p) = (r.f64s(), r.f64s(), r.f64s(), r.f64s());
    for (k, &e) in ids.iter().enumerate() {
        let e = e as usize - first;
        out.vel[e] = [vx[k], vy[k]];
        out.abs_vel[e] = s[k];
        out.pressure[e] = p[k];
    }
}

/// The METIS split of the whole mesh on the lead: the blocks' elements
/// gathered there (only their connectivity: the dual graph), the parts
/// sent back to the blocks (collective).
fn metis_on_lead(c: &dyn Comm, slice: &crate::slice::Slice) -> Result<Vec<u32>, String> {
    let mut w = Writer::new();
    w.u32s(slice.quad8.as_flattened());
    let got = comm::gather(c, 0, w.finish());
    let p = c.size();
    let parts = got.map(|all| {
        let elements: Vec<[u32; 8]> = all
            .iter()
            .flat_map(|b| {
                Reader::new(b)
                    .u32s()
                    .chunks_exact(8)
                    .map(|e| <[u32; 8]>::try_from(e).expect("8 nodes"))
                    .collect::<Vec<_>>()
            })
            .collect();
        crate::partition::metis_elements(slice.nodes, &elements, p)
            .map_err(|e| e.to_string())
            .map(|ep| {
                (0..p)
                    .map(|q| {
                        let mut w = Writer::new();
                        w.u32s(&ep[block(slice.elements, p, q)]);
                        w.finish()
                    })
                    .collect::<Vec<_>>()
            })
    });
    let (bufs, err) = match parts {
        Some(Ok(b)) => (Some(b), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    comm::agree(c, err)?;
    let mine = comm::scatter(c, 0, bufs);
    Ok(Reader::new(&mine).u32s())
}

/// Figures reduced over the ranks at the join: phase and communication
/// times (maximum and minimum), the matrix size, every rank's peak memory.
struct Figures {
    max: Vec<f64>,
    min: Vec<f64>,
    nnz: usize,
    rss: Vec<f64>,
    devices: Option<Vec<String>>,
    comm: CommTimes,
}

impl Group {
    /// The [`Figures`] (collective).
    fn figures(&self, world: &World) -> Figures {
        let c: &dyn Comm = &self.comm;
        let times = world.resource::<PhaseTimes>().seconds;
        let comm_t = self.comm.times();
        let ct = [
            comm_t.total_seconds(),
            comm_t.halo_seconds,
            comm_t.allreduce_seconds,
            comm_t.other_seconds,
        ];
        let mut mx: Vec<f64> = times.iter().chain(&ct).copied().collect();
        let mut mn: Vec<f64> = mx.iter().map(|v| -v).collect();
        c.allreduce_max(&mut mx);
        c.allreduce_max(&mut mn);
        let nnz = comm::sum_usize(c, self.state.lock().expect("state").owned_nnz);
        let mut rss = vec![0.0; self.size()];
        rss[self.rank()] = peak_rss() as f64;
        c.allreduce_sum(&mut rss);
        let devices =
            comm::gather(c, 0, self.device.clone().unwrap_or_default().into_bytes()).map(|d| {
                d.into_iter()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect::<Vec<String>>()
            });
        Figures {
            max: mx,
            min: mn.iter().map(|v| -v).collect(),
            nnz,
            rss,
            devices,
            comm: comm_t,
        }
    }

    /// Puts the figures into `world`: phase times (the slowest rank's),
    /// the matrix size, the whole mesh's boundary report, and on the lead
    /// the backend's [`Summary`].
    fn set_figures(&self, world: &mut World, f: Figures) {
        world.resource_mut::<LinearSystem>().nnz = f.nnz;
        let mut max = [0.0; 5];
        let mut min = [0.0; 5];
        for p in Phase::ALL {
            max[p.index()] = f.max[p.index()];
            min[p.index()] = f.min[p.index()];
        }
        world.resource_mut::<PhaseTimes>().seconds = max;
        let st = self.state.lock().expect("state");
        if let Some(b) = &st.boundary {
            *world.resource_mut::<BoundaryReport>() = b.clone();
        }
        if self.rank() != 0 {
            return;
        }
        let devices = f.devices.unwrap_or_default();
        world.insert_resource(Summary {
            ranks: self.size(),
            local: self.local,
            partitioner: st.method.unwrap_or(self.method).name(),
            read: self.read.name(),
            phase_max: max,
            phase_min: min,
            comm_max: [f.max[5], f.max[6], f.max[7], f.max[8]],
            comm_min: f.min[5],
            exchanges: f.comm.exchanges,
            allreduces: f.comm.allreduces,
            read_seconds: st.read_seconds,
            split_seconds: st.split_seconds,
            quality: st.quality.clone().unwrap_or_default(),
            peak_rss: f.rss,
            read_bytes: st.read_bytes.clone(),
            split_stages: st.split_stages,
            devices: devices.iter().any(|d| !d.is_empty()).then_some(devices),
        });
    }
}

/// The whole mesh's boundary figures from its resolved selection.
fn boundary_report(sel: &quadflow_systems::boundary::Resolved) -> BoundaryReport {
    BoundaryReport {
        robin_edges: sel.robin_edges.len(),
        dirichlet_nodes: sel.dirichlet.len(),
        unused_nodes: sel.unused.len(),
        floating: sel.floating.clone(),
    }
}

/// What an `mpi` run measured, on the lead after the join: the backend's
/// report.
#[derive(Resource, Debug, Clone)]
pub struct Summary {
    /// Ranks.
    pub ranks: usize,
    /// The local executor.
    pub local: &'static str,
    /// The partitioner.
    pub partitioner: &'static str,
    /// How the mesh was read ([`Read`]'s name).
    pub read: &'static str,
    /// Seconds per phase: the slowest rank's.
    pub phase_max: [f64; 5],
    /// Seconds per phase: the fastest rank's.
    pub phase_min: [f64; 5],
    /// Seconds communicating, the slowest rank's: all, halo exchanges,
    /// all-reductions, set-up traffic (each its own maximum).
    pub comm_max: [f64; 4],
    /// Seconds communicating, all, the least any rank spent.
    pub comm_min: f64,
    /// Halo exchanges a rank ran.
    pub exchanges: u64,
    /// All-reductions a rank ran.
    pub allreduces: u64,
    /// Seconds to read and validate the blocks (the slowest rank's; 0
    /// when the lead read the mesh).
    pub read_seconds: f64,
    /// Seconds to partition the mesh and send the parts (the lead's).
    pub split_seconds: f64,
    /// Every rank's peak resident memory (bytes), by rank.
    pub peak_rss: Vec<f64>,
    /// Bytes every rank read from the mesh file, by rank (empty when the
    /// lead read the mesh).
    pub read_bytes: Vec<f64>,
    /// Seconds of the block split's stages, the slowest rank's: partition,
    /// move to the parts, boundary and components, figures (`None` when
    /// the lead split the mesh).
    pub split_stages: Option<[f64; 4]>,
    /// The partition's quality.
    pub quality: Quality,
    /// Each rank's device (`CUDA_VISIBLE_DEVICES` as chosen), where the
    /// ranks chose devices.
    pub devices: Option<Vec<String>>,
}

/// The largest, least and mean of `v` (zeros for none).
fn max_min_mean(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mx = v.iter().copied().fold(f64::MIN, f64::max);
    let mn = v.iter().copied().fold(f64::MAX, f64::min);
    (mx, mn, v.iter().sum::<f64>() / v.len() as f64)
}

impl Summary {
    /// Attributes of the results file and lines of the run summary.
    pub fn report(&self) -> quadflow_systems::components::BackendReport {
        use quadflow_systems::components::Attr;
        let q = &self.quality;
        let mut a: Vec<(String, Attr)> = vec![
            ("mpi_ranks".into(), Attr::Int(self.ranks as i64)),
            ("mpi_local".into(), Attr::Str(self.local.into())),
            ("mpi_partitioner".into(), Attr::Str(self.partitioner.into())),
        ];
        for p in Phase::ALL {
            a.push((
                format!("mpi_time_{}_max", p.name()),
                Attr::Float(self.phase_max[p.index()]),
            ));
            a.push((
                format!("mpi_time_{}_min", p.name()),
                Attr::Float(self.phase_min[p.index()]),
            ));
        }
        let halo_max = q.per_part.iter().map(|s| s.send_values).max().unwrap_or(0);
        a.extend([
            ("mpi_time_split".into(), Attr::Float(self.split_seconds)),
            ("mpi_comm_seconds_max".into(), Attr::Float(self.comm_max[0])),
            ("mpi_comm_seconds_min".into(), Attr::Float(self.comm_min)),
            ("mpi_halo_seconds_max".into(), Attr::Float(self.comm_max[1])),
            (
                "mpi_allreduce_seconds_max".into(),
                Attr::Float(self.comm_max[2]),
            ),
            (
                "mpi_setup_comm_seconds_max".into(),
                Attr::Float(self.comm_max[3]),
            ),
            (
                "mpi_halo_exchanges".into(),
                Attr::Int(self.exchanges as i64),
            ),
            ("mpi_allreduces".into(), Attr::Int(self.allreduces as i64)),
            ("mpi_edge_cut".into(), Attr::Int(q.edge_cut as i64)),
            ("mpi_edges".into(), Attr::Int(q.edges as i64)),
            ("mpi_ghost_nodes".into(), Attr::Int(q.total_ghosts() as i64)),
            ("mpi_halo_values_max".into(), Attr::Int(halo_max as i64)),
            (
                "mpi_imbalance_nodes".into(),
                Attr::Float(q.node_imbalance()),
            ),
            (
                "mpi_imbalance_elements".into(),
                Attr::Float(q.element_imbalance()),
            ),
            (
                "mpi_duplicated_elements".into(),
                Attr::Int(q.duplicated_elements() as i64),
            ),
        ]);
        let phases = Phase::ALL
            .iter()
            .map(|p| {
                format!(
                    "{} {:.3}/{:.3}",
                    p.name(),
                    self.phase_max[p.index()],
                    self.phase_min[p.index()]
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let summary = vec![
            format!(
                "{} ranks, local {}, partitioner {} ({:.3} s to split and send): edge cut {} of {} couplings ({:.2}%), {} ghost nodes (largest halo {} values), imbalance nodes {:.3}, elements {:.3}",
                self.ranks,
                self.local,
                self.partitioner,
                self.split_seconds,
                q.edge_cut,
                q.edges,
                100.0 * q.edge_cut as f64 / q.edges.max(1) as f64,
                q.total_ghosts(),
                halo_max,
                q.node_imbalance(),
                q.element_imbalance()
            ),
            format!("seconds max/min over ranks: {phases}"),
            format!(
                "communication (slowest rank): {:.4} s in all; halo exchanges {:.4} s ({} exchanges), all-reduces {:.4} s ({}), set-up traffic {:.4} s",
                self.comm_max[0],
                self.comm_max[1],
                self.exchanges,
                self.comm_max[2],
                self.allreduces,
                self.comm_max[3]
            ),
        ];
        let mut summary = summary;
        let (mx, mn, mean) = max_min_mean(&self.peak_rss);
        let gb = |v: f64| v / 1e9;
        a.extend([
            ("mpi_read".into(), Attr::Str(self.read.into())),
            ("mpi_time_read".into(), Attr::Float(self.read_seconds)),
            ("mpi_peak_rss_max".into(), Attr::Int(mx as i64)),
            ("mpi_peak_rss_min".into(), Attr::Int(mn as i64)),
            ("mpi_peak_rss_mean".into(), Attr::Int(mean as i64)),
            (
                "mpi_peak_rss_by_rank".into(),
                Attr::Str(
                    self.peak_rss
                        .iter()
                        .map(|v| format!("{}", *v as u64))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ),
        ]);
        summary.push(format!(
            "peak memory per rank (GB): max {:.3}, min {:.3}, mean {:.3} (rank 0 {:.3}, {:.2}x the mean); by rank: {}",
            gb(mx),
            gb(mn),
            gb(mean),
            gb(self.peak_rss.first().copied().unwrap_or(0.0)),
            self.peak_rss.first().copied().unwrap_or(0.0) / mean.max(1.0),
            self.peak_rss
                .iter()
                .map(|v| format!("{:.3}", gb(*v)))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if self.read_bytes.is_empty() {
            summary.push("mesh read by rank 0 (the lead), split and sent".into());
        } else {
            let (bmx, _, bmean) = max_min_mean(&self.read_bytes);
            a.extend([
                ("mpi_read_bytes_max".into(), Attr::Int(bmx as i64)),
                ("mpi_read_bytes_mean".into(), Attr::Int(bmean as i64)),
            ]);
            summary.push(format!(
                "mesh read in blocks by every rank in {:.3} s (the slowest rank), {:.1} MB per rank at most ({:.1} MB mean)",
                self.read_seconds,
                bmx / 1e6,
                bmean / 1e6
            ));
            if let Some(t) = self.split_stages {
                for (k, name) in ["partition", "migrate", "boundary", "quality"]
                    .into_iter()
                    .enumerate()
                {
                    a.push((format!("mpi_time_split_{name}"), Attr::Float(t[k])));
                }
                summary.push(format!(
                    "split in blocks (slowest rank): partition {:.3} s, elements and nodes to their parts {:.3} s, boundary and mesh components {:.3} s, partition figures {:.3} s",
                    t[0], t[1], t[2], t[3]
                ));
            }
        }
        if let Some(d) = &self.devices {
            a.push(("mpi_devices".into(), Attr::Str(d.join(","))));
            summary.push(format!(
                "devices by rank (CUDA_VISIBLE_DEVICES): {}",
                d.join(", ")
            ));
        }
        quadflow_systems::components::BackendReport {
            attributes: a,
            summary,
        }
    }
}
