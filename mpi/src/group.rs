//! The process group of an `mpi` run ([`Group`], the engine's
//! [`ProcessGroup`]): agreement on failures, the split of the lead's mesh
//! into parts, and the join of the results into the lead's world, with
//! the figures the backend reports ([`Summary`]).

use crate::comm::{self, Comm, CommTimes, Timed};
use crate::driver::{self, Split};
use crate::part::Part;
use crate::partition::{Method, Quality};
use crate::wire::{Reader, Writer};
use bevy_ecs::prelude::*;
use quadflow_systems::components::{BoundaryReport, ElementOutputs, LinearSystem, Solution};
use quadflow_systems::mesh::Mesh;
use quadflow_systems::pipeline::{Phase, PhaseTimes, ProcessGroup, RunConfig};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
}

/// The processes of an `mpi` run.
pub struct Group {
    comm: Timed<SharedComm>,
    method: Method,
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
            local,
            device,
            failed: Mutex::new(None),
            state: Mutex::new(State::default()),
            _keep: started.keep,
        }
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
        let pick = |v: &[f64]| own.iter().map(|&l| v[l as usize]).collect::<Vec<f64>>();
        let vx: Vec<f64> = outputs.vel.iter().map(|v| v[0]).collect();
        let vy: Vec<f64> = outputs.vel.iter().map(|v| v[1]).collect();
        w.f64s(&pick(&vx))
            .f64s(&pick(&vy))
            .f64s(&pick(&outputs.abs_vel))
            .f64s(&pick(&outputs.pressure));
        let got = comm::gather(c, 0, w.finish());
        // sizes, phase times and communication, reduced
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
        let devices = comm::gather(c, 0, self.device.clone().unwrap_or_default().into_bytes());
        if !lead {
            return Ok(false);
        }
        let devices: Vec<String> = devices
            .expect("the lead gathers")
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        let ne = part.global_elements;
        let mut out = ElementOutputs {
            vel: vec![[0.0; 2]; ne],
            abs_vel: vec![0.0; ne],
            pressure: vec![0.0; ne],
        };
        for b in got.expect("the lead gathers") {
            let mut r = Reader::new(&b);
            let ids = r.u32s();
            let (vx, vy, s, p) = (r.f64s(), r.f64s(), r.f64s(), r.f64s());
            for (k, &e) in ids.iter().enumerate() {
                let e = e as usize;
                out.vel[e] = [vx[k], vy[k]];
                out.abs_vel[e] = s[k];
                out.pressure[e] = p[k];
            }
        }
        world.resource_mut::<Solution>().u = u.expect("the lead gathers");
        *world.resource_mut::<ElementOutputs>() = out;
        world.resource_mut::<LinearSystem>().nnz = nnz;
        let mut max = [0.0; 5];
        let mut min = [0.0; 5];
        for p in Phase::ALL {
            max[p.index()] = mx[p.index()];
            min[p.index()] = -mn[p.index()];
        }
        world.resource_mut::<PhaseTimes>().seconds = max;
        let st = self.state.lock().expect("state");
        if let Some(b) = &st.boundary {
            *world.resource_mut::<BoundaryReport>() = b.clone();
        }
        world.insert_resource(Summary {
            ranks: self.size(),
            local: self.local,
            partitioner: self.method.name(),
            phase_max: max,
            phase_min: min,
            comm_max: [mx[5], mx[6], mx[7], mx[8]],
            comm_min: -mn[5],
            exchanges: comm_t.exchanges,
            allreduces: comm_t.allreduces,
            split_seconds: st.split_seconds,
            quality: st.quality.clone().unwrap_or_default(),
            devices: devices.iter().any(|d| !d.is_empty()).then_some(devices),
        });
        Ok(true)
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
    /// Seconds to partition the mesh and send the parts (the lead's).
    pub split_seconds: f64,
    /// The partition's quality.
    pub quality: Quality,
    /// Each rank's device (`CUDA_VISIBLE_DEVICES` as chosen), where the
    /// ranks chose devices.
    pub devices: Option<Vec<String>>,
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
