//! Fuzzing on stable Rust: a deterministic mutator (seeded per case) over
//! valid inputs, driving the parsers and the whole `run` path in-process.
//!
//! Each case takes a valid seed input, mutates it, and feeds it in:
//!
//! - HDF5 meshes: their bytes (contiguous and gzip-chunked, int32 and
//!   int64, with and without node sets), or their arrays (coordinates,
//!   connectivity) then written validly (node sets too, maybe out of
//!   range), read by `io::read_any_mesh`;
//! - gmsh `.msh` files, 2.2 and 4.1, ASCII (numeric tokens, lines, bytes)
//!   and binary (bytes);
//! - scenes: text (numeric tokens, lines, bytes) and TOML structure (keys
//!   deleted, replaced by values of any type, added, array entries
//!   duplicated), parsed with the command-line overrides of `quadflow run`.
//!
//! Whatever parses runs: the mesh with the default scene, the scene with
//! its own settings (generated meshes at most 2,000 nodes, at most 2,000
//! iterations, 4 threads; the rest as the mutation made it), writing the
//! results, VTU and PNG files. Checked for every case: no panic; no hang (a
//! watchdog aborts a case running longer than `FUZZ_CASE_LIMIT_S`, 60 s by
//! default, and names it); a failed run leaves no file at all; a run that
//! succeeds wrote all three outputs, whole, and every field in the results
//! file is finite.
//!
//! `cargo test --release --test fuzz` runs 2,000 cases (`FUZZ_CASES`,
//! `FUZZ_SEED` to change); `cargo test --release --test fuzz -- --ignored`
//! runs 100,000. Findings are printed as they occur; `FUZZ_PROGRESS=N`
//! prints a progress line every N cases. A failure prints the case index
//! and the seed: rerun one case with `FUZZ_SEED=S FUZZ_ONLY=I cargo test --release --test fuzz
//! fuzz_short -- --nocapture` (the input is kept under `target/fuzz-failures/`).

mod mutate;
mod rng;

use quadflow::cli::run::{RunArgs, scene_for};
use quadflow::generate::{self, Geometry};
use quadflow::io::h5;
use quadflow::io::{self as qio, RawMesh};
use quadflow::run::{self, Silent};
use rng::{Rng, case_seed};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The valid inputs every case starts from.
struct Seeds {
    /// HDF5 mesh files (bytes): contiguous int32, gzip int64, ...
    h5: Vec<Vec<u8>>,
    /// Meshes as arrays.
    raw: Vec<RawMesh>,
    /// `.msh` files: (bytes, binary).
    msh: Vec<(Vec<u8>, bool)>,
    /// Scenes (text), naming `m.h5`, `m.msh` or a generated mesh.
    scenes: Vec<String>,
    /// The valid mesh files a scene may name (name, bytes).
    mesh_files: Vec<(&'static str, Vec<u8>)>,
}

fn seeds(dir: &Path) -> Seeds {
    let small = [
        (Geometry::StraightChannel, 60),
        (Geometry::Venturi, 150),
        (Geometry::TJunction, 120),
    ];
    let mut raw = Vec::new();
    let mut h5s = Vec::new();
    let mut msh = Vec::new();
    for (k, (g, n)) in small.iter().enumerate() {
        let m = generate::generate(*g, *n).unwrap();
        let sets = quadflow::cli::mesh::inlet_outlet_sets(&m);
        for (int64, gzip) in [(false, false), (true, true), (k % 2 == 0, k % 2 == 1)] {
            let p = dir.join("seed.h5");
            h5::write_mesh(&p, &m, int64, gzip).unwrap();
            h5s.push(std::fs::read(&p).unwrap());
        }
        // with node sets (node_sets/inlet, node_sets/outlet)
        let p = dir.join("seed.h5");
        let layout = [h5::MeshLayout::Gzip, h5::MeshLayout::Contiguous][k % 2];
        h5::write_mesh_with_sets(&p, &m, &sets, k == 2, layout).unwrap();
        h5s.push(std::fs::read(&p).unwrap());
        for v in [
            qio::gmsh::MshVersion::V22Ascii,
            qio::gmsh::MshVersion::V41Ascii,
            qio::gmsh::MshVersion::V22Binary,
            qio::gmsh::MshVersion::V41Binary,
        ] {
            let p = dir.join("seed.msh");
            qio::gmsh::write_msh(&p, &m, &sets, v).unwrap();
            let binary = matches!(
                v,
                qio::gmsh::MshVersion::V22Binary | qio::gmsh::MshVersion::V41Binary
            );
            msh.push((std::fs::read(&p).unwrap(), binary));
        }
        raw.push(m);
    }
    // m.h5: the venturi, contiguous, with node sets
    let mesh_files = vec![("m.h5", h5s[7].clone()), ("m.msh", msh[4].0.clone())];
    let scenes = vec![
        "[mesh]\nfile = \"m.h5\"\n".to_string(),
        "[mesh]\nfile = \"m.h5\"\n[[boundary.robin]]\nselect = \"set:inlet\"\n\
         [[boundary.dirichlet]]\nselect = \"set:outlet\"\n"
            .to_string(),
        "title = \"t\"\n[mesh]\nfile = \"m.msh\"\n[[boundary.robin]]\nselect = \"set:inlet\"\n\
         gamma = 2.5\n[[boundary.dirichlet]]\nselect = \"set:outlet\"\nvalue = 0.0\n"
            .to_string(),
        "[mesh]\ngenerate = \"venturi\"\nnodes = 300\n[solver]\nmethod = \"amg-cg\"\n\
         rtol = 1e-10\n[solver.amg]\ntheta = 0.25\n[backend]\ndefault = \"parallel\"\n\
         [parallel]\nthreads = 2\nassembly = \"batched-coo\"\n"
            .to_string(),
        "[mesh]\ngenerate = \"backward_step\"\nnodes = 200\norientation = \"refuse\"\n\
         components = \"refuse\"\n[physics]\np0 = 100.0\nrho = 1.0\nsource = 1.0\n\
         [boundary]\ntolerance = 1e-6\npenalty = 1e10\n[solver]\nmethod = \"cholesky\"\n\
         [backend]\ndefault = \"serial\"\npost = \"parallel\"\n"
            .to_string(),
        "[mesh]\nfile = \"m.h5\"\n[[boundary.robin]]\nname = \"in\"\nselect = \"xmin\"\np = 1.0\n\
         gamma = 1.0\n[[boundary.dirichlet]]\nname = \"top\"\nselect = \"box:0,100,0,0.1\"\n\
         value = 2.0\n[solver]\nmax_iterations = 50\nallow_unconverged = true\n"
            .to_string(),
    ];
    Seeds {
        h5: h5s,
        raw,
        msh,
        scenes,
        mesh_files,
    }
}

/// What a case found wrong.
#[derive(Debug)]
struct Finding {
    index: u64,
    seed: u64,
    kind: &'static str,
    what: String,
    kept: PathBuf,
}

/// How far a case got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Not started (the input could not be made).
    None,
    /// The parser refused the input (with an error).
    Refused,
    /// Parsed; the run failed with an error.
    RunFailed,
    /// Parsed and solved; outputs written.
    Solved,
}

/// The outputs a run is asked for.
const OUTPUTS: [&str; 3] = ["out.h5", "out.vtu", "out.png"];

/// Semantic edits of mesh arrays (then written validly).
fn mutate_arrays(rng: &mut Rng, m: &mut RawMesh) {
    for _ in 0..1 + rng.below(3) {
        let (n, e) = (m.x.len(), m.quad8.len());
        if e == 0 {
            break;
        }
        match rng.below(9) {
            0 => {
                let i = rng.below(n);
                m.x[i] = *rng.pick(&[f64::NAN, f64::INFINITY, 1e300, -1e300, 1e-300, 0.0]);
            }
            1 => {
                let i = rng.below(n);
                let j = rng.below(n);
                m.x[i] = m.x[j];
                m.y[i] = m.y[j];
            }
            2 => {
                let (a, k) = (rng.below(e), rng.below(8));
                m.quad8[a][k] = *rng.pick(&[-1, n as i64, n as i64 + 1, i64::MAX, i64::MIN, 0]);
            }
            3 => {
                let (a, k, l) = (rng.below(e), rng.below(8), rng.below(8));
                m.quad8[a][k] = m.quad8[a][l];
            }
            4 => {
                let a = rng.below(e);
                m.quad8[a].reverse();
            }
            5 => {
                // all coordinates scaled
                let s = *rng.pick(&[1e-200, 1e200, -1.0, 0.0, 1e-12]);
                m.x.iter_mut().for_each(|v| *v *= s);
            }
            6 => {
                let keep = rng.below(e + 1);
                m.quad8.truncate(keep);
            }
            7 => {
                // a far-away copy of one element (a floating component)
                let a = rng.below(e);
                let base = m.x.len() as i64;
                for &v in &m.quad8[a].clone() {
                    m.x.push(m.x[v.clamp(0, n as i64 - 1) as usize] + 1e3);
                    m.y.push(m.y[v.clamp(0, n as i64 - 1) as usize]);
                }
                m.quad8.push(std::array::from_fn(|k| base + k as i64));
            }
            _ => {
                let i = rng.below(n);
                m.y[i] += *rng.pick(&[1e-9, 0.5, -3.0, 100.0]);
            }
        }
    }
}

/// Runs one case in `dir` (empty on entry): the kind of input, and what
/// is wrong (`Err`, a finding).
fn case(
    seeds: &Seeds,
    dir: &Path,
    seed: u64,
    label: &mut &'static str,
    stage: &mut Stage,
    message: &mut String,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let kind = rng.below(6);
    // the input, and how to run it
    let (kind_label, input, scene_path) = match kind {
        0 | 1 => {
            let p = dir.join("m.h5");
            let bytes = if kind == 0 {
                let mut b = rng.pick(&seeds.h5).clone();
                mutate::bytes(&mut rng, &mut b);
                b
            } else {
                let mut m = rng.pick(&seeds.raw).clone();
                mutate_arrays(&mut rng, &mut m);
                let (int64, gzip) = (rng.chance(0.5), rng.chance(0.5));
                let layout = if gzip {
                    h5::MeshLayout::Gzip
                } else {
                    h5::MeshLayout::Contiguous
                };
                // node sets of the unmutated mesh (indices may now be out
                // of range: the reader must say so)
                let sets = if rng.chance(0.5) {
                    quadflow::cli::mesh::inlet_outlet_sets(rng.pick(&seeds.raw))
                } else {
                    h5::NodeSets::new()
                };
                match h5::write_mesh_with_sets(&p, &m, &sets, int64, layout) {
                    Ok(()) => {
                        let mut b = std::fs::read(&p).unwrap();
                        if rng.chance(0.2) {
                            mutate::bytes(&mut rng, &mut b);
                        }
                        b
                    }
                    Err(_) => {
                        *label = "h5 arrays (writer refused)";
                        return Ok(());
                    }
                }
            };
            std::fs::write(&p, &bytes).unwrap();
            let label = if kind == 0 { "h5 bytes" } else { "h5 arrays" };
            (label, p, None)
        }
        2 | 3 => {
            let (b0, binary) = rng.pick(&seeds.msh).clone();
            let mut b = b0;
            if binary || rng.chance(0.3) {
                mutate::bytes(&mut rng, &mut b);
            } else {
                mutate::text(&mut rng, &mut b);
            }
            let p = dir.join("m.msh");
            std::fs::write(&p, &b).unwrap();
            (if binary { "msh binary" } else { "msh ascii" }, p, None)
        }
        _ => {
            for (name, bytes) in &seeds.mesh_files {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            let text = rng.pick(&seeds.scenes).clone();
            let (label, bytes) = if kind == 4 {
                let mut b = text.into_bytes();
                mutate::text(&mut rng, &mut b);
                ("scene text", b)
            } else {
                let mut t: toml::Table = toml::from_str(&text).unwrap();
                mutate::toml_structure(&mut rng, &mut t);
                let s = toml::to_string(&t).unwrap_or_default();
                ("scene structure", s.into_bytes())
            };
            let p = dir.join("s.toml");
            std::fs::write(&p, &bytes).unwrap();
            (label, p.clone(), Some(p))
        }
    };
    *label = kind_label;
    let inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();

    // the parsers alone
    let parsed: Result<(), String> = match &scene_path {
        None => qio::read_any_mesh(&input)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Some(p) => {
            let text = std::fs::read(p).unwrap();
            match std::str::from_utf8(&text) {
                Ok(t) => quadflow::scene::Scene::parse(t, &p.display().to_string())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(_) => quadflow::scene::Scene::load(p)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            }
        }
    };
    if let Err(e) = parsed {
        if e.trim().is_empty() {
            return Err("a parser error without a message".into());
        }
        *message = e;
        *stage = Stage::Refused;
        return Ok(());
    }

    // the run path: `quadflow run [s.toml | --mesh m] --out ... --vtu ... --png ... -q`
    let args = RunArgs {
        scene: scene_path.clone(),
        mesh: scene_path.is_none().then(|| input.clone()),
        max_iter: scene_path.is_none().then_some(2000),
        out: Some(dir.join(OUTPUTS[0])),
        vtu: Some(dir.join(OUTPUTS[1])),
        png: Some(dir.join(OUTPUTS[2])),
        quiet: true,
        ..RunArgs::default()
    };
    let outcome = (|| -> Result<(), String> {
        let mut scene = scene_for(&args, &[]).map_err(|e| e.to_string())?;
        // bounds that keep a case short, whatever the mutation asked for
        if let Some(n) = scene.mesh.nodes.as_mut() {
            *n = (*n).min(2000);
        }
        let s = &mut scene.solver;
        s.max_iterations = s.max_iterations.min(2000);
        s.amg.max_coarse = s.amg.max_coarse.min(500);
        if let Some(toml::Value::Integer(t)) = scene
            .backends
            .get_mut("parallel")
            .and_then(|p| p.get_mut("threads"))
            && (*t < 0 || *t > 4)
        {
            *t = 2;
        }
        let plan = scene.plan().map_err(|e| e.to_string())?;
        let r = run::run_with(&plan, None, &mut Silent).map_err(|e| e.to_string())?;
        if let Some(p) = &plan.outputs.results {
            r.write(p).map_err(|e| e.to_string())?;
        }
        r.write_outputs(&plan.outputs).map_err(|e| e.to_string())?;
        Ok(())
    })();
    *stage = if outcome.is_ok() {
        Stage::Solved
    } else {
        Stage::RunFailed
    };
    if let Err(e) = &outcome {
        *message = e.clone();
    }
    check(dir, &inputs, &outcome)
}

/// The checks of a run in `dir` whose inputs were `inputs`: a failed run
/// (with a message) left nothing; a run that succeeded wrote the results,
/// VTU and PNG files, and the results read back with finite fields.
fn check(dir: &Path, inputs: &[PathBuf], outcome: &Result<(), String>) -> Result<(), String> {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !inputs.contains(p))
        .collect();
    match outcome {
        Err(e) => {
            if !left.is_empty() {
                return Err(format!("the run failed ({e}) but left {left:?}"));
            }
            if e.trim().is_empty() {
                return Err("an error without a message".into());
            }
        }
        Ok(()) => {
            let mut names: Vec<String> = left
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            names.sort();
            if names != ["out.h5", "out.png", "out.vtu"] {
                return Err(format!("the run succeeded but wrote {names:?}"));
            }
            let r = match h5::read_results(&dir.join("out.h5")) {
                Ok(r) => r,
                Err(e) => return Err(format!("the results file does not read back: {e}")),
            };
            let finite = r.u.iter().all(|v| v.is_finite())
                && r.vel.iter().flatten().all(|v| v.is_finite())
                && r.abs_vel.iter().all(|v| v.is_finite())
                && r.pressure.iter().all(|v| v.is_finite());
            if !finite {
                return Err("a non-finite value in the results file".into());
            }
            if r.u.is_empty() || r.vel.len() != r.abs_vel.len() {
                return Err(format!(
                    "inconsistent results: {} nodes, {} / {} elements",
                    r.u.len(),
                    r.vel.len(),
                    r.abs_vel.len()
                ));
            }
        }
    }
    Ok(())
}

/// Runs `cases` cases from `base` (or only case `only`); returns the
/// findings and the count of cases per input kind.
type Tally = BTreeMap<(&'static str, Stage), u64>;

fn fuzz(cases: u64, base: u64, only: Option<u64>) -> (Vec<Finding>, Tally) {
    let root = tempfile::tempdir().unwrap();
    let seeds = seeds(root.path());
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("fuzz-failures");
    let limit = std::env::var("FUZZ_CASE_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    // watchdog: the case running and since when
    let current = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(0)));
    let t0 = Instant::now();
    {
        let current = current.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let (i, since) = (
                    current.0.load(Ordering::Acquire),
                    current.1.load(Ordering::Acquire),
                );
                if i != u64::MAX && t0.elapsed().as_millis() as u64 > since + limit * 1000 {
                    eprintln!(
                        "FUZZ HANG: case {i} (FUZZ_SEED={base} FUZZ_ONLY={i}) ran over {limit} s"
                    );
                    std::process::abort();
                }
            }
        });
    }
    // panics are findings: keep their message, print nothing
    let panic_msg: Arc<Mutex<Option<String>>> = Arc::default();
    let prev_hook = std::panic::take_hook();
    {
        let panic_msg = panic_msg.clone();
        std::panic::set_hook(Box::new(move |info| {
            *panic_msg.lock().unwrap() = Some(info.to_string());
        }));
    }
    let verbose = std::env::var_os("FUZZ_VERBOSE").is_some();
    // a progress line every this many cases (0: none)
    let progress = env_u64("FUZZ_PROGRESS", 0);
    let mut findings = Vec::new();
    let mut kinds = BTreeMap::new();
    let range: Box<dyn Iterator<Item = u64>> = match only {
        Some(i) => Box::new(std::iter::once(i)),
        None => Box::new(0..cases),
    };
    for i in range {
        let seed = case_seed(base, i);
        let dir = root.path().join("case");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        current
            .1
            .store(t0.elapsed().as_millis() as u64, Ordering::Release);
        current.0.store(i, Ordering::Release);
        let mut kind = "unknown";
        let mut stage = Stage::None;
        let mut message = String::new();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            case(&seeds, &dir, seed, &mut kind, &mut stage, &mut message)
        }));
        if verbose {
            eprintln!("case {i} {kind} {stage:?}: {message}");
        }
        current.0.store(u64::MAX, Ordering::Release);
        let what = match r {
            Ok(Ok(())) => None,
            Ok(Err(what)) => Some(what),
            Err(_) => Some(format!(
                "panic: {}",
                panic_msg.lock().unwrap().take().unwrap_or_default()
            )),
        };
        *kinds.entry((kind, stage)).or_insert(0) += 1;
        if let Some(what) = &what {
            // at once, so that a long run that is stopped still tells
            eprintln!("FUZZ FINDING: case {i} (seed {seed:#x}, {kind}): {what}");
        }
        if progress > 0 && (i + 1) % progress == 0 {
            eprintln!(
                "fuzz: {} cases done in {:.0} s, {} findings",
                i + 1,
                t0.elapsed().as_secs_f64(),
                findings.len() + usize::from(what.is_some())
            );
        }
        if let Some(what) = what {
            // keep the inputs of the case
            let to = keep.join(format!("{base}-{i}"));
            let _ = std::fs::create_dir_all(&to);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
            findings.push(Finding {
                index: i,
                seed,
                kind,
                what,
                kept: to,
            });
        }
    }
    std::panic::set_hook(prev_hook);
    (findings, kinds)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn run_and_check(default_cases: u64) {
    let cases = env_u64("FUZZ_CASES", default_cases);
    let base = env_u64("FUZZ_SEED", 1);
    let only = std::env::var("FUZZ_ONLY").ok().and_then(|s| s.parse().ok());
    let t = Instant::now();
    let (findings, kinds) = fuzz(cases, base, only);
    let secs = t.elapsed().as_secs_f64();
    let total = kinds.values().sum::<u64>();
    eprintln!(
        "fuzz: {total} cases (FUZZ_SEED={base}) in {secs:.1} s ({:.2} ms/case), {} findings",
        1e3 * secs / total.max(1) as f64,
        findings.len()
    );
    eprintln!(
        "  {:<28} {:>8} {:>8} {:>8} {:>8}",
        "input", "refused", "run err", "solved", "other"
    );
    let mut names: Vec<&str> = kinds.keys().map(|k| k.0).collect();
    names.dedup();
    for n in names {
        let c = |s: Stage| kinds.get(&(n, s)).copied().unwrap_or(0);
        eprintln!(
            "  {n:<28} {:>8} {:>8} {:>8} {:>8}",
            c(Stage::Refused),
            c(Stage::RunFailed),
            c(Stage::Solved),
            c(Stage::None)
        );
    }
    for f in &findings {
        eprintln!(
            "  case {} (seed {:#x}, {}): {} [inputs kept in {}]",
            f.index,
            f.seed,
            f.kind,
            f.what,
            f.kept.display()
        );
    }
    assert!(
        findings.is_empty(),
        "{} of the fuzz cases failed (listed above; rerun one with FUZZ_SEED={base} FUZZ_ONLY=<case>)",
        findings.len()
    );
}

/// The checks catch what they are for: files left by a failed run, a
/// missing output, a non-finite field.
#[test]
fn the_checks_fail_where_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.h5");
    std::fs::write(&input, b"x").unwrap();
    let inputs = vec![input];
    assert!(check(d, &inputs, &Err("bad mesh".into())).is_ok());
    assert!(check(d, &inputs, &Err(" ".into())).is_err());
    std::fs::write(d.join("out.vtu"), b"half").unwrap();
    let e = check(d, &inputs, &Err("bad mesh".into())).unwrap_err();
    assert!(e.contains("left"), "{e}");
    let e = check(d, &inputs, &Ok(())).unwrap_err();
    assert!(e.contains("wrote"), "{e}");
    std::fs::write(d.join("out.png"), b"png").unwrap();
    let write = |u: &[f64]| {
        h5::write_results(
            &d.join("out.h5"),
            &h5::ResultsData {
                u,
                vel: &[[0.0, 1.0]],
                abs_vel: &[1.0],
                pressure: &[2.0],
                attrs: vec![],
            },
        )
        .unwrap()
    };
    write(&[1.0, 2.0]);
    assert!(check(d, &inputs, &Ok(())).is_ok());
    write(&[1.0, f64::NAN]);
    let e = check(d, &inputs, &Ok(())).unwrap_err();
    assert!(e.contains("non-finite"), "{e}");
}

/// A short run, part of the normal test suite (and CI).
#[test]
fn fuzz_short() {
    run_and_check(2_000);
}

/// The long run whose figures `profiles/fuzz/` records.
#[test]
#[ignore]
fn fuzz_long() {
    run_and_check(100_000);
}
