//! The host's memory bandwidth as the parallel backend's threads see it:
//! STREAM-style copy (`a = b`) and triad (`a = b + s c`) over arrays much
//! larger than the caches, run by a [`Team`] of T threads, each member
//! copying its own contiguous part (which it touched first, so its pages
//! sit where that thread runs), as the CG kernels split their rows.
//!
//! ```text
//! host_bandwidth [--threads 1,2,4,8,16] [--mib 1024] [--reps 15]
//! ```
//!
//! Bytes are counted as STREAM counts them and as quadflow counts a CG
//! iteration's (`solver::fused_bytes_per_iteration`): every array read or
//! written once (copy: 16 bytes per element, triad: 24), no
//! write-allocate traffic. Prints, per thread count, the best and the
//! median of `--reps` repetitions in GB/s (1e9 bytes per second), one line
//! each: `threads T copy BEST MEDIAN triad BEST MEDIAN` (what
//! `profiles/threads/host_run.sh` reads).

use quadflow::systems::exec::{Disjoint, Team};
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (best, median) GB/s of `reps` runs of `op` over parts of `n` elements,
/// moving `bytes` per element.
fn measure(
    team: &Team,
    n: usize,
    reps: usize,
    bytes: usize,
    op: &(dyn Fn(std::ops::Range<usize>) + Sync),
) -> (f64, f64) {
    let t = team.size();
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        team.run(t, |m| op(Team::part(m, t, n)));
        rates.push((bytes * n) as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    let best = rates.iter().cloned().fold(0.0, f64::max);
    (best, median(&mut rates))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("host_bandwidth [--threads 1,2,4,8,16] [--mib 1024] [--reps 15]");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = match arg(&args, "--threads") {
        Some(s) => s
            .split(',')
            .map(|t| t.trim().parse().expect("--threads: numbers"))
            .collect(),
        None => (0..)
            .map(|k| 1usize << k)
            .take_while(|&t| t < cores)
            .chain([cores])
            .collect(),
    };
    let mib: usize = arg(&args, "--mib").map_or(1024, |s| s.parse().expect("--mib: a number"));
    let reps: usize = arg(&args, "--reps").map_or(15, |s| s.parse().expect("--reps: a number"));
    let n = mib * (1 << 20) / 8;
    println!(
        "# host_bandwidth: {n} f64 per array ({mib} MiB), {reps} repetitions, {cores} cores available"
    );
    for &t in &threads {
        let team = Team::new(t, "bw").expect("threads");
        // each member allocates nothing but touches its part first
        let mut a: Vec<f64> = Vec::with_capacity(n);
        let mut b: Vec<f64> = Vec::with_capacity(n);
        let mut c: Vec<f64> = Vec::with_capacity(n);
        {
            let (pa, pb, pc) = (
                a.spare_capacity_mut().as_mut_ptr() as usize,
                b.spare_capacity_mut().as_mut_ptr() as usize,
                c.spare_capacity_mut().as_mut_ptr() as usize,
            );
            team.run(t, |m| {
                for i in Team::part(m, t, n) {
                    // SAFETY: within the capacity; each index written by
                    // one member before any read.
                    unsafe {
                        *(pa as *mut f64).add(i) = 0.0;
                        *(pb as *mut f64).add(i) = i as f64;
                        *(pc as *mut f64).add(i) = 1.0;
                    }
                }
            });
            // SAFETY: every element was initialised above.
            unsafe {
                a.set_len(n);
                b.set_len(n);
                c.set_len(n);
            }
        }
        let da = Disjoint::slice(&mut a);
        let copy = |r: std::ops::Range<usize>| {
            // SAFETY: the members' parts are disjoint.
            let out = unsafe { da.range_mut(r.clone()) };
            out.copy_from_slice(&b[r]);
        };
        let triad = |r: std::ops::Range<usize>| {
            // SAFETY: as above.
            let out = unsafe { da.range_mut(r.clone()) };
            for ((o, x), y) in out.iter_mut().zip(&b[r.clone()]).zip(&c[r]) {
                *o = x + 3.0 * y;
            }
        };
        // one warm-up of each
        measure(&team, n, 1, 16, &copy);
        let (cb, cm) = measure(&team, n, reps, 16, &copy);
        measure(&team, n, 1, 24, &triad);
        let (tb, tm) = measure(&team, n, reps, 24, &triad);
        drop(da);
        std::hint::black_box(&a);
        println!("threads {t} copy {cb:.2} {cm:.2} triad {tb:.2} {tm:.2}");
    }
}
