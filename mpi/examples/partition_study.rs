//! Partition-only scaling study (no solve): a generated venturi split into
//! 2..256 parts by RCB and METIS; per partition the edge cut, halo volume
//! per rank per CG iteration, neighbours, imbalance and the modelled time
//! per iteration (`quadflow_mpi::study`), as a Markdown table; then the
//! I/O of the block read and the parallel write at each rank count (bytes
//! per rank, modelled seconds on a parallel file system, against the lead
//! doing it alone). With `--gpu h100|h200`, instead: the multi-GPU model
//! (`quadflow_mpi::study::gpu_model`), Jacobi-CG per iteration with one
//! GPU per RCB part, for NVLink and a 400 Gb/s network, CUDA-aware and
//! staged.
//!
//! ```text
//! cargo run --release -p quadflow-mpi --example partition_study -- \
//!     [--nodes 10000000] [--parts 2,4,8,...] [--methods rcb,metis] [--out FILE.md]
//!     [--io-only] [--node-bw 5e9] [--ranks-per-node 8] [--gpu h100|h200]
//! ```

use quadflow::generate::{self, Geometry};
use quadflow_mpi::partition::{Method, partition, quality};
use quadflow_mpi::study::{
    FileSystem, Gpu, GpuLink, Machine, block_io, compute_bytes, gpu_model, io_model, model,
};
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use std::fmt::Write as _;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = arg(&args, "--nodes").map_or(10_000_000, |s| s.parse().expect("--nodes N"));
    let parts: Vec<usize> = arg(&args, "--parts")
        .unwrap_or("2,3,4,6,8,12,16,32,64,100,128,256")
        .split(',')
        .map(|s| s.parse().expect("--parts a,b,c"))
        .collect();
    let methods: Vec<Method> = arg(&args, "--methods")
        .unwrap_or("rcb,metis")
        .split(',')
        .map(|s| Method::parse(s).expect("--methods rcb,metis"))
        .collect();
    let mach = Machine::default();
    let t0 = Instant::now();
    let raw = generate::generate(Geometry::Venturi, nodes).expect("generate");
    let mesh =
        Mesh::new_with(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix, true).expect("mesh");
    let tgen = t0.elapsed().as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "venturi: {} nodes, {} elements (generated and validated in {tgen:.1} s)\n",
        mesh.nodes(),
        mesh.elements.len()
    );
    let gpu = arg(&args, "--gpu").map(|g| match g {
        "h100" => Gpu::H100,
        "h200" => Gpu::H200,
        other => panic!("--gpu h100|h200, not {other}"),
    });
    let io_only = args.iter().any(|a| a == "--io-only") || gpu.is_some();
    let q1 = quality(&mesh, &partition(&mesh, 1, Method::Rcb).expect("1 part"));
    let one = model(&q1, &mach);
    let mut head = String::new();
    let _ = writeln!(
        head,
        "One rank: {} bytes per iteration, modelled {:.3} ms per iteration at {:.0} GB/s.\n",
        compute_bytes(q1.per_part[0].owned_nodes, q1.per_part[0].row_entries),
        one.total * 1e3,
        mach.mem_bw / 1e9
    );
    let _ = writeln!(
        head,
        "| method | P | partition s | edge cut % | imbalance nodes | imbalance elements | dup. elements % | max nbrs | halo/rank KiB mean | max | compute ms | halo ms | allreduce ms | modelled ms/it | speed-up | efficiency |"
    );
    let _ = writeln!(
        head,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    if !io_only {
        out.push_str(&head);
    }
    print!("{out}");
    let methods = if io_only { Vec::new() } else { methods };
    for &method in &methods {
        for &p in &parts {
            let t = Instant::now();
            let part = match partition(&mesh, p, method) {
                Ok(x) => x,
                Err(e) => {
                    let line = format!(
                        "| {} | {p} | failed: {e} | | | | | | | | | | | | | |\n",
                        method.name()
                    );
                    print!("{line}");
                    out.push_str(&line);
                    continue;
                }
            };
            let tp = t.elapsed().as_secs_f64();
            let q = quality(&mesh, &part);
            let m = model(&q, &mach);
            let line = format!(
                "| {} | {p} | {tp:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {:.1} | {:.1} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} | {:.2} |\n",
                method.name(),
                100.0 * q.edge_cut as f64 / q.edges as f64,
                q.node_imbalance(),
                q.element_imbalance(),
                100.0 * q.duplicated_elements() as f64 / mesh.elements.len() as f64,
                m.max_neighbours,
                m.mean_halo_bytes / 1024.0,
                m.max_halo_bytes as f64 / 1024.0,
                m.compute * 1e3,
                m.halo * 1e3,
                m.reductions * 1e3,
                m.total * 1e3,
                one.total / m.total,
                one.total / m.total / p as f64,
            );
            print!("{line}");
            out.push_str(&line);
        }
    }
    if let Some(g) = gpu {
        gpu_table(&mesh, &parts, &g, &mut out);
        let _ = writeln!(out, "\ntotal {:.0} s", t0.elapsed().as_secs_f64());
        if let Some(path) = arg(&args, "--out") {
            std::fs::write(path, out).expect("write --out");
        }
        return;
    }
    // the I/O of the block read and the parallel write
    let fs = FileSystem {
        node_bw: arg(&args, "--node-bw").map_or(5e9, |s| s.parse().expect("--node-bw B")),
        ranks_per_node: arg(&args, "--ranks-per-node")
            .map_or(8, |s| s.parse().expect("--ranks-per-node R")),
    };
    let index_bytes = if mesh.nodes() > i32::MAX as usize {
        8
    } else {
        4
    };
    let io_head = format!(
        "\nI/O, every rank its blocks (mesh file contiguous, int{} connectivity), on a parallel file system of {:.1} GB/s per node, {} ranks per node; \"lead\": rank 0 alone reads the whole mesh and writes the whole results.\n\n\
         | P | nodes | read/rank MB max | mean | of which halo KB max | write/rank MB max | read s | lead read s | write s | lead write s | read speed-up | write speed-up |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        8 * index_bytes,
        fs.node_bw / 1e9,
        fs.ranks_per_node
    );
    print!("{io_head}");
    out.push_str(&io_head);
    for &p in std::iter::once(&1).chain(&parts) {
        let ranks = block_io(&mesh, p, index_bytes);
        let m = io_model(&ranks, &fs);
        let halo = ranks.iter().map(|r| r.halo).max().unwrap_or(0);
        let line = format!(
            "| {p} | {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |\n",
            p.div_ceil(fs.ranks_per_node),
            m.read_max as f64 / 1e6,
            m.read_mean / 1e6,
            halo as f64 / 1e3,
            m.write_max as f64 / 1e6,
            m.read,
            m.lead_read,
            m.write,
            m.lead_write,
            m.lead_read / m.read,
            m.lead_write / m.write,
        );
        print!("{line}");
        out.push_str(&line);
    }
    let _ = writeln!(
        out,
        "\npeak resident memory {:.0} MiB, total {:.0} s",
        peak_rss_mib(),
        t0.elapsed().as_secs_f64()
    );
    println!("peak resident memory {:.0} MiB", peak_rss_mib());
    if let Some(path) = arg(&args, "--out") {
        std::fs::write(path, out).expect("write --out");
    }
}

/// The multi-GPU table: Jacobi-CG per iteration with one GPU per rank on
/// RCB parts, for each way the halo travels.
fn gpu_table(mesh: &Mesh, parts: &[usize], g: &Gpu, out: &mut String) {
    let links = [
        GpuLink::NVLINK,
        GpuLink::NODE_STAGED,
        GpuLink::NET400,
        GpuLink::NET400_STAGED,
    ];
    let mut head = format!(
        "Jacobi-CG, one {} per rank ({:.2} TB/s, {:.0} us of launches and 2 x {:.0} us of synchronisation an iteration), RCB parts; us per iteration (speed-up over one GPU) for each way the halo travels.\n\n| GPUs | rows/GPU max | MB/GPU/it | nbrs max | halo KiB/GPU max | compute us |",
        g.name,
        g.hbm_bw / 1e12,
        g.launches * 1e6,
        g.sync * 1e6
    );
    for l in &links {
        let _ = write!(head, " {} |", l.name);
    }
    head.push_str("\n| ---: | ---: | ---: | ---: | ---: | ---: |");
    head.push_str(&" ---: |".repeat(links.len()));
    head.push('\n');
    print!("{head}");
    out.push_str(&head);
    let q1 = quality(mesh, &partition(mesh, 1, Method::Rcb).expect("1 part"));
    let base: Vec<f64> = links.iter().map(|l| gpu_model(&q1, g, l).total).collect();
    for &p in std::iter::once(&1).chain(parts.iter().filter(|&&p| p > 1)) {
        let q = quality(mesh, &partition(mesh, p, Method::Rcb).expect("rcb"));
        let worst = q
            .per_part
            .iter()
            .max_by_key(|s| compute_bytes(s.owned_nodes, s.row_entries))
            .expect("a part");
        let m0 = gpu_model(&q, g, &links[0]);
        let mut line = format!(
            "| {p} | {} | {:.1} | {} | {:.1} | {:.1} |",
            worst.owned_nodes,
            compute_bytes(worst.owned_nodes, worst.row_entries) as f64 / 1e6,
            m0.max_neighbours,
            m0.max_halo_bytes as f64 / 1024.0,
            m0.compute * 1e6
        );
        for (l, b) in links.iter().zip(&base) {
            let m = gpu_model(&q, g, l);
            let _ = write!(line, " {:.1} ({:.2}x) |", m.total * 1e6, b / m.total);
        }
        line.push('\n');
        print!("{line}");
        out.push_str(&line);
    }
}
