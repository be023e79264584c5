//! The meshes a server may read: named folders (`--meshes`, the
//! repository's `tests/data/meshes`, the uploads), the generator's
//! geometries, and a small cache of loaded meshes.
//!
//! A mesh is named by an id `ROOT/RELATIVE/PATH` (`data/y_tube_201.h5`).
//! Only ids that name a `.h5`, `.hdf5` or `.msh` file under one of the
//! roots resolve: `..`, absolute paths, and links leading out of the root
//! are refused.

use crate::error::AppError;
use crate::io;
use crate::run::LoadedMesh;
use crate::scene::Plan;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// A folder of meshes the server may read, under a short name.
#[derive(Debug, Clone)]
pub struct Root {
    /// The id prefix (`data`, `uploads`, the folder's name).
    pub name: String,
    /// The folder, canonical.
    pub dir: PathBuf,
}

/// One mesh file of a root.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshEntry {
    /// `ROOT/PATH`.
    pub id: String,
    /// The file name.
    pub name: String,
    /// The root's name.
    pub root: String,
    /// File size, bytes.
    pub bytes: u64,
    /// Node and element counts, once the mesh has been read.
    pub nodes: Option<usize>,
    /// Elements.
    pub elements: Option<usize>,
}

/// A refusal or failure, with the HTTP status it deserves.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// HTTP status code.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

impl Refused {
    /// A 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
    /// A 404.
    pub fn missing(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }
}

fn is_mesh_file(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| e == "h5" || e == "hdf5" || e == "msh")
}

/// Mesh files under `dir` (two folder levels deep at most), relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < 2 {
                stack.push((p, depth + 1));
            } else if ft.is_file()
                && is_mesh_file(&p)
                && let Ok(rel) = p.strip_prefix(dir)
            {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Checks an id's path part: relative, plain components only.
fn plain_relative(rel: &str) -> Result<PathBuf, Refused> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() || rel.starts_with('/') || rel.contains('\\') {
        return Err(Refused::bad(format!(
            "mesh \"{rel}\": absolute paths are refused; name a mesh by its id from GET /api/meshes"
        )));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            _ => {
                return Err(Refused::bad(format!(
                    "mesh \"{rel}\": '..' and '.' are refused; name a mesh by its id from GET /api/meshes"
                )));
            }
        }
    }
    Ok(p.to_path_buf())
}

/// Where loaded meshes are kept between solves.
struct Cached {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    policy: OrientationPolicy,
    mesh: Arc<Mesh>,
    sets: BTreeMap<String, Vec<u32>>,
    used: Instant,
}

/// The server's meshes.
pub struct Meshes {
    roots: Vec<Root>,
    cache: Mutex<Vec<Cached>>,
    /// Meshes kept loaded at most (least recently used go first).
    pub cache_meshes: usize,
}

impl Meshes {
    /// The roots, in order (their names made unique).
    pub fn new(roots: Vec<(String, PathBuf)>) -> Self {
        let mut out: Vec<Root> = Vec::new();
        for (name, dir) in roots {
            let Ok(dir) = std::fs::canonicalize(&dir) else {
                continue;
            };
            if out.iter().any(|r| r.dir == dir) {
                continue;
            }
            let mut n = name.clone();
            let mut k = 2;
            while out.iter().any(|r| r.name == n) {
                n = format!("{name}{k}");
                k += 1;
            }
            out.push(Root { name: n, dir });
        }
        Self {
            roots: out,
            cache: Mutex::new(Vec::new()),
            cache_meshes: 4,
        }
    }

    /// The roots.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Every mesh file of every root.
    pub fn list(&self) -> Vec<MeshEntry> {
        let mut out = Vec::new();
        for r in &self.roots {
            for rel in files_under(&r.dir) {
                let path = r.dir.join(&rel);
                let meta = std::fs::metadata(&path).ok();
                let (nodes, elements) = self
                    .cached_counts(&path, meta.as_ref())
                    .map_or((None, None), |(n, e)| (Some(n), Some(e)));
                out.push(MeshEntry {
                    id: format!("{}/{}", r.name, rel.to_string_lossy()),
                    name: rel
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    root: r.name.clone(),
                    bytes: meta.map(|m| m.len()).unwrap_or(0),
                    nodes,
                    elements,
                });
            }
        }
        out
    }

    /// The file an id names, checked to lie inside its root.
    ///
    /// # Errors
    ///
    /// 400 for an absolute path, `..`, a file type that is no mesh, or a
    /// link out of the root; 404 for an unknown root or file.
    pub fn resolve(&self, id: &str) -> Result<PathBuf, Refused> {
        plain_relative(id)?;
        let (root, rel) = id.split_once('/').ok_or_else(|| {
            Refused::bad(format!(
                "mesh \"{id}\": ids are ROOT/PATH (see GET /api/meshes)"
            ))
        })?;
        let rel = plain_relative(rel)?;
        let r = self.roots.iter().find(|r| r.name == root).ok_or_else(|| {
            Refused::missing(format!(
                "mesh \"{id}\": no mesh folder named \"{root}\" (folders: {})",
                self.roots
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if !is_mesh_file(&rel) {
            return Err(Refused::bad(format!(
                "mesh \"{id}\": not a mesh file (.h5, .hdf5, .msh)"
            )));
        }
        let full = r.dir.join(&rel);
        let canon = std::fs::canonicalize(&full)
            .map_err(|_| Refused::missing(format!("mesh \"{id}\": no such mesh")))?;
        if !canon.starts_with(&r.dir) {
            return Err(Refused::bad(format!(
                "mesh \"{id}\": leads out of its folder; refused"
            )));
        }
        Ok(canon)
    }

    fn cached_counts(
        &self,
        path: &Path,
        meta: Option<&std::fs::Metadata>,
    ) -> Option<(usize, usize)> {
        let c = self.cache.lock().ok()?;
        c.iter()
            .find(|c| {
                c.path == path
                    && meta.is_some_and(|m| m.len() == c.len && m.modified().ok() == c.modified)
            })
            .map(|c| (c.mesh.nodes(), c.mesh.elements.len()))
    }

    /// The mesh of `path` validated for `plan`, from the cache when the
    /// file has not changed since it was read; its load time is the time
    /// this took.
    ///
    /// # Errors
    ///
    /// The reader's or the validation's error, as the CLI says it.
    pub fn load(&self, path: &Path, plan: &Plan) -> Result<LoadedMesh, AppError> {
        let started = Instant::now();
        let meta = std::fs::metadata(path)
            .map_err(|e| AppError::Other(format!("{}: {e}", path.display())))?;
        let (len, modified) = (meta.len(), meta.modified().ok());
        let hit = self.cache.lock().ok().and_then(|mut c| {
            let e = c.iter_mut().find(|c| {
                c.path == path
                    && c.len == len
                    && c.modified == modified
                    && c.policy == plan.orientation
            })?;
            e.used = Instant::now();
            Some((e.mesh.clone(), e.sets.clone()))
        });
        let origin = path.display().to_string();
        let (mesh, _sets) = match hit {
            Some(m) => m,
            None => {
                let _s = tracing::info_span!("read_mesh").entered();
                let (raw, sets) = io::read_any_mesh(path)?;
                let loaded = LoadedMesh::from_arrays(
                    plan,
                    raw.x,
                    raw.y,
                    &raw.quad8,
                    sets.clone(),
                    origin.clone(),
                    started,
                )?;
                if let Ok(mut c) = self.cache.lock() {
                    c.retain(|c| c.path != path);
                    if c.len() >= self.cache_meshes.max(1)
                        && let Some(i) = (0..c.len()).min_by_key(|&i| c[i].used)
                    {
                        c.remove(i);
                    }
                    c.push(Cached {
                        path: path.to_path_buf(),
                        modified,
                        len,
                        policy: plan.orientation,
                        mesh: loaded.mesh.clone(),
                        sets: sets.clone(),
                        used: Instant::now(),
                    });
                }
                (loaded.mesh, sets)
            }
        };
        Ok(LoadedMesh {
            mesh,
            origin,
            path: Some(path.to_path_buf()),
            seconds: started.elapsed().as_secs_f64(),
            started,
        })
    }

    /// Forgets every cached mesh (memory back).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }
}

/// A PNG thumbnail of a mesh: its elements filled in one colour on a
/// transparent background, `w` x `h` pixels, aspect kept.
pub fn thumbnail(mesh: &Mesh, w: u32, h: u32) -> Vec<u8> {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (&x, &y) in mesh.x.iter().zip(&mesh.y) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let pad = 2.0;
    let s = ((f64::from(w) - 2.0 * pad) / (x1 - x0).max(1e-300))
        .min((f64::from(h) - 2.0 * pad) / (y1 - y0).max(1e-300));
    let ox = (f64::from(w) - s * (x1 - x0)) / 2.0;
    let oy = (f64::from(h) - s * (y1 - y0)) / 2.0;
    let px = |i: usize| {
        (
            ox + s * (mesh.x[i] - x0),
            f64::from(h) - oy - s * (mesh.y[i] - y0),
        )
    };
    let mut alpha = vec![0u8; (w * h) as usize];
    for el in &mesh.elements {
        // the boundary polygon of the element through its mid-side nodes
        let ring = [el[0], el[4], el[1], el[5], el[2], el[6], el[3], el[7]].map(|n| px(n as usize));
        let (bx0, bx1) = ring
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        let (by0, by1) = ring
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
        let (ix0, ix1) = (bx0.floor().max(0.0) as u32, (bx1.ceil() as u32).min(w));
        let (iy0, iy1) = (by0.floor().max(0.0) as u32, (by1.ceil() as u32).min(h));
        if ix1 <= ix0 || iy1 <= iy0 {
            // smaller than a pixel: mark the pixel it sits in
            let (cx, cy) = (ring[0].0 as i64, ring[0].1 as i64);
            if cx >= 0 && cy >= 0 && (cx as u32) < w && (cy as u32) < h {
                alpha[(cy as u32 * w + cx as u32) as usize] = 255;
            }
            continue;
        }
        for iy in iy0..iy1 {
            for ix in ix0..ix1 {
                let (qx, qy) = (f64::from(ix) + 0.5, f64::from(iy) + 0.5);
                let mut inside = false;
                let mut j = ring.len() - 1;
                for i in 0..ring.len() {
                    let (a, b) = (ring[i], ring[j]);
                    if (a.1 > qy) != (b.1 > qy) && qx < (b.0 - a.0) * (qy - a.1) / (b.1 - a.1) + a.0
                    {
                        inside = !inside;
                    }
                    j = i;
                }
                if inside {
                    alpha[(iy * w + ix) as usize] = 255;
                }
            }
        }
    }
    let mut rgba = Vec::with_capacity(alpha.len() * 4);
    for a in alpha {
        rgba.extend_from_slice(&[38, 130, 142, a]);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        if let Ok(mut wr) = enc.write_header() {
            let _ = wr.write_image_data(&rgba);
        }
    }
    out
}

/// A file name fit to keep: its last component, letters, digits, `-`,
/// `_` and `.` only, not starting with a dot.
pub fn safe_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next()?;
    let clean: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    (!clean.is_empty() && clean.len() <= 120).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_only_inside_their_root() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("in");
        std::fs::create_dir_all(inner.join("sub")).unwrap();
        std::fs::write(inner.join("a.h5"), b"x").unwrap();
        std::fs::write(inner.join("sub/b.msh"), b"x").unwrap();
        std::fs::write(inner.join("c.txt"), b"x").unwrap();
        std::fs::write(d.path().join("secret.h5"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path().join("secret.h5"), inner.join("link.h5")).unwrap();
        let m = Meshes::new(vec![("in".into(), inner.clone())]);
        let ids: Vec<_> = m.list().into_iter().map(|e| e.id).collect();
        assert!(ids.contains(&"in/a.h5".to_string()), "{ids:?}");
        assert!(ids.contains(&"in/sub/b.msh".to_string()), "{ids:?}");
        assert!(!ids.iter().any(|i| i.contains("c.txt")));
        assert!(m.resolve("in/a.h5").is_ok());
        assert!(m.resolve("in/sub/b.msh").is_ok());
        for (bad, status) in [
            ("in/../secret.h5", 400),
            ("in//etc/passwd.h5", 400),
            ("in/./a.h5", 400),
            ("/etc/passwd", 400),
            ("in/c.txt", 400),
            ("other/a.h5", 404),
            ("../in/a.h5", 400),
            ("in/none.h5", 404),
            ("noslash", 400),
        ] {
            let e = m.resolve(bad).unwrap_err();
            assert_eq!(e.status, status, "{bad}: {e:?}");
        }
        #[cfg(unix)]
        assert_eq!(m.resolve("in/link.h5").unwrap_err().status, 400);
    }

    #[test]
    fn file_names_are_cleaned() {
        assert_eq!(safe_file_name("../../x.h5").as_deref(), Some("x.h5"));
        assert_eq!(safe_file_name("a b$.msh").as_deref(), Some("a_b_.msh"));
        assert_eq!(safe_file_name("..h5").as_deref(), Some("h5"));
        assert_eq!(safe_file_name(""), None);
    }

    #[test]
    fn thumbnails_are_pngs_with_the_mesh_drawn() {
        let raw = crate::generate::generate(crate::generate::Geometry::Venturi, 500).unwrap();
        let mesh = Mesh::new_with(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix, false).unwrap();
        let png = thumbnail(&mesh, 96, 48);
        assert_eq!(&png[1..4], b"PNG");
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        let filled = buf.chunks(4).filter(|p| p[3] == 255).count();
        assert!(filled > 96 * 48 / 4 && filled < 96 * 48, "{filled}");
    }
}
