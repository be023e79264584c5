//! `quadflow serve`: the study in a browser. An HTTP server (axum on a
//! tokio runtime) in the quadflow binary, with its page (HTML, JavaScript,
//! CSS and WebGL2 shaders, `assets/`) embedded: a mesh gallery, a scene
//! form beside the scene as TOML, a live convergence plot, the field on the
//! mesh, the timeline of the phases, and a comparison of every backend and
//! solver. The JSON API the page uses is documented in the README
//! ("serve").
//!
//! - [`meshes`]: the folders a server may read and the mesh cache;
//! - [`jobs`]: the queue, the workers, progress and cancellation;
//! - [`tracer`]: each job's own trace and live phase;
//! - [`arrays`]: the binary arrays of results;
//! - [`request`]: the error answer, a request's scene, a job's JSON;
//! - [`api`]: the HTTP handlers; [`compare`]: the compare view's runs.
//!
//! Security: loopback only by default; any other `--host` needs a token
//! (given, or a random one printed), checked on every request; on loopback
//! without a token, requests must name a loopback host (no DNS rebinding);
//! requests that change anything must carry a JSON, TOML or binary body
//! (which a form of another site cannot send).

pub mod api;
pub mod arrays;
pub mod compare;
pub mod jobs;
pub mod meshes;
pub mod request;
pub mod tracer;

use crate::error::AppError;
use meshes::Meshes;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// `quadflow serve`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind. Anything but loopback needs --token (or gets a
    /// random one, printed).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// A folder of meshes (.h5, .msh) to offer; repeatable.
    #[arg(long = "meshes", value_name = "DIR")]
    pub meshes: Vec<PathBuf>,
    /// The token every request must carry (header "Authorization: Bearer
    /// T", cookie, or ?token=T).
    #[arg(long)]
    pub token: Option<String>,
    /// Solves running at once; the others queue.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Largest mesh upload, MiB.
    #[arg(long, default_value_t = 256)]
    pub max_upload_mb: u64,
    /// Largest generated mesh, nodes.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_nodes: usize,
    /// Finished jobs whose results are kept in memory.
    #[arg(long, default_value_t = 8)]
    pub keep: usize,
}

/// A backend of this build as the page offers it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendInfo {
    /// Scene name.
    pub name: String,
    /// What it is.
    pub about: String,
    /// Whether this machine can run it.
    pub available: bool,
    /// Why not, or the device it runs on.
    pub note: String,
}

/// The server's state, shared by the handlers.
pub struct App {
    /// Mesh folders and cache.
    pub meshes: Arc<Meshes>,
    /// Jobs.
    pub jobs: Arc<jobs::Jobs>,
    /// The token, if one is required.
    pub token: Option<String>,
    /// Whether the server listens on loopback.
    pub loopback: bool,
    /// Largest upload, bytes.
    pub max_upload: u64,
    /// Largest generated mesh, nodes.
    pub max_nodes: usize,
    /// The server's own folder (uploads, files made on request); removed
    /// when the server stops.
    pub tmp: tempfile::TempDir,
    /// The backends.
    pub backends: Mutex<Vec<BackendInfo>>,
    /// Compare groups: id -> job ids.
    pub groups: Mutex<std::collections::BTreeMap<u64, Vec<u64>>>,
    /// Uploads so far (names their folders).
    pub uploads: std::sync::atomic::AtomicU64,
}

impl App {
    /// The uploads folder.
    pub fn upload_dir(&self) -> PathBuf {
        self.tmp.path().join("uploads")
    }

    /// The folder of a job's files.
    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.tmp.path().join("jobs").join(id.to_string())
    }
}

/// The repository's reference meshes, where this binary was built from a
/// checkout that has them.
fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meshes"));
    d.is_dir().then_some(d)
}

/// A random token (16 bytes from the system's generator, hex).
fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::UNIX_EPOCH
                    .elapsed()
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The backends of this build, and whether this machine can run each.
fn backend_infos() -> Vec<BackendInfo> {
    let catalog = crate::backends::catalog();
    catalog
        .kinds()
        .map(|k| {
            let name = k.name().to_string();
            let (available, note) = match name.as_str() {
                "serial" => (true, "one thread".to_string()),
                "parallel" => (
                    true,
                    format!(
                        "{} threads",
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    ),
                ),
                "gpu" => {
                    if quadflow_systems::gpu::device_available() {
                        (true, "CUDA device 0 (name once warmed up)".to_string())
                    } else {
                        (
                            false,
                            "no CUDA driver or device on this machine".to_string(),
                        )
                    }
                }
                "mpi" => (
                    false,
                    "runs under mpirun, one process per rank; the server is one process"
                        .to_string(),
                ),
                _ => (true, String::new()),
            };
            BackendInfo {
                name,
                about: k.about().to_string(),
                available,
                note,
            }
        })
        .collect()
}

/// Solves a tiny generated channel on the GPU, in the background, so that
/// the first real GPU solve finds the context created and the kernels
/// compiled; records the device's name.
fn warm_gpu(app: Arc<App>) {
    std::thread::spawn(move || {
        let scene = crate::scene::Scene::parse(
            "[mesh]\ngenerate = \"straight_channel\"\nnodes = 400\n[backend]\ndefault = \"gpu\"\n",
            "<gpu warm-up>",
        );
        let Ok(plan) = scene.and_then(|s| s.plan()) else {
            return;
        };
        let r = crate::run::run(&plan, None);
        let mut b = app.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = b.iter_mut().find(|b| b.name == "gpu") {
            match r {
                Ok(r) => {
                    let name = r
                        .reports
                        .iter()
                        .find_map(|(_, rep)| match rep.attribute("gpu_device") {
                            Some(crate::io::h5::Attr::Str(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| "CUDA device 0".into());
                    g.note = format!("{name} (warm)");
                }
                Err(e) => {
                    g.available = false;
                    g.note = format!("warm-up failed: {e}");
                }
            }
        }
    });
}

/// Builds the state for `args` (folders, token, workers).
///
/// # Errors
///
/// A non-loopback address without a way to make a token, a temporary
/// folder that cannot be made.
pub fn app_for(args: &ServeArgs) -> Result<(Arc<App>, bool), AppError> {
    let loopback = args.host.is_loopback();
    let mut printed_token = false;
    let token = match (&args.token, loopback) {
        (Some(t), _) if t.len() < 8 => {
            return Err(AppError::Other(
                "--token: use at least 8 characters".to_string(),
            ));
        }
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        (None, false) => {
            printed_token = true;
            Some(random_token())
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("quadflow-serve-")
        .tempdir()
        .map_err(|e| AppError::Other(format!("cannot make the server's temporary folder: {e}")))?;
    std::fs::create_dir_all(tmp.path().join("uploads"))
        .and_then(|_| std::fs::create_dir_all(tmp.path().join("jobs")))
        .map_err(|e| AppError::Other(format!("{}: {e}", tmp.path().display())))?;
    let mut roots = Vec::new();
    for d in &args.meshes {
        if !d.is_dir() {
            return Err(AppError::Other(format!(
                "--meshes {}: not a folder",
                d.display()
            )));
        }
        let name = d
            .canonicalize()
            .ok()
            .and_then(|c| c.file_name().map(|f| f.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .unwrap_or_else(|| "meshes".into());
        let name = meshes::safe_file_name(&name).unwrap_or_else(|| "meshes".into());
        roots.push((name, d.clone()));
    }
    if let Some(d) = data_dir() {
        roots.push(("data".into(), d));
    }
    roots.push(("uploads".into(), tmp.path().join("uploads")));
    let meshes = Arc::new(Meshes::new(roots));
    let jobs = jobs::Jobs::start(args.jobs, args.keep, meshes.clone());
    let app = Arc::new(App {
        meshes,
        jobs,
        token,
        loopback,
        max_upload: args.max_upload_mb.saturating_mul(1 << 20),
        max_nodes: args.max_nodes,
        tmp,
        backends: Mutex::new(backend_infos()),
        groups: Mutex::new(Default::default()),
        uploads: Default::default(),
    });
    Ok((app, printed_token))
}

/// Runs `quadflow serve` until the process is stopped.
///
/// # Errors
///
/// A bad flag, an address that cannot be bound.
pub fn serve(args: &ServeArgs) -> Result<(), AppError> {
    let t0 = std::time::Instant::now();
    tracer::install();
    let (app, printed_token) = app_for(args)?;
    if app
        .backends
        .lock()
        .map(|b| b.iter().any(|b| b.name == "gpu" && b.available))
        .unwrap_or(false)
    {
        warm_gpu(app.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .thread_name("quadflow-http")
        .build()
        .map_err(|e| AppError::Other(format!("cannot start the server's runtime: {e}")))?;
    let addr = SocketAddr::new(args.host, args.port);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AppError::Other(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| AppError::Other(e.to_string()))?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match local.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        };
        let url = match &app.token {
            Some(t) => format!("http://{host}:{}/?token={t}", local.port()),
            None => format!("http://{host}:{}/", local.port()),
        };
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "quadflow serve: listening on {url} (up in {:.3} s; Ctrl-C stops it)",
                t0.elapsed().as_secs_f64()
            );
            if printed_token {
                let _ = writeln!(
                    out,
                    "token     {} (not on loopback: every request must carry it)",
                    app.token.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(
                out,
                "meshes    {}",
                app.meshes
                    .roots()
                    .iter()
                    .map(|r| format!("{} = {}", r.name, r.dir.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = out.flush();
        }
        let router = api::router(app.clone());
        axum::serve(listener, router)
            .await
            .map_err(|e| AppError::Other(format!("server: {e}")))
    })
}
