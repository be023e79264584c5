//! The on-disk kernel cache: NVRTC output (machine code for the device's
//! architecture, a CUBIN) keyed by (hash of source + options,
//! architecture), so that a run after the first skips the compiler.
//!
//! A cache file holds one header line (key, architecture, body length and
//! a checksum of the body) and the binary. A file whose header does not match
//! (truncated, edited, another key) is treated as absent: the kernels are
//! compiled again and the file rewritten. A directory that cannot be
//! created or written means no cache, never an error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// 64-bit FNV-1a: a small, stable hash (the cache key must not change
/// between Rust versions, which rules out `DefaultHasher`).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, part) in parts.iter().enumerate() {
        if k > 0 {
            // separator, so ("ab", "c") and ("a", "bc") differ
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// What identifies a compiled program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Hash of the source and the options.
    pub hash: u64,
    /// Target architecture (`sm_90`).
    pub arch: String,
}

impl CacheKey {
    /// The key of `source` compiled with `options` for `arch`.
    pub fn new(source: &str, options: &[String], arch: &str) -> Self {
        let mut parts: Vec<&[u8]> = vec![source.as_bytes()];
        parts.extend(options.iter().map(|o| o.as_bytes()));
        Self {
            hash: fnv1a(&parts),
            arch: arch.to_string(),
        }
    }

    /// File name of the cache entry.
    pub fn file_name(&self) -> String {
        format!("kernels-{}-{:016x}.bin", self.arch, self.hash)
    }

    fn header(&self, body: &[u8]) -> String {
        format!(
            "// quadflow-kernel-cache v2 key={:016x} arch={} len={} sum={:016x}\n",
            self.hash,
            self.arch,
            body.len(),
            fnv1a(&[body])
        )
    }
}

/// The cache directory from the environment: `$QUADFLOW_CACHE`, else
/// `$XDG_CACHE_HOME/quadflow`, else `$HOME/.cache/quadflow`. Setting
/// `QUADFLOW_CACHE` to `off` (or `none`, `0`, or empty) disables the cache.
pub fn cache_dir_from(
    quadflow_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(v) = quadflow_cache {
        let s = v.to_string_lossy();
        if matches!(s.trim(), "" | "off" | "none" | "0") {
            return None;
        }
        return Some(PathBuf::from(v));
    }
    if let Some(v) = xdg_cache_home.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v).join("quadflow"));
    }
    home.filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("quadflow"))
}

/// Where the PTX lives between runs (or nowhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtxCache {
    dir: Option<PathBuf>,
}

/// How a program was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from this cache file.
    Hit(PathBuf),
    /// Compiled, and stored in this file.
    Stored(PathBuf),
    /// Compiled, not stored (no cache, or the directory is not writable).
    Compiled,
}

impl Origin {
    /// Whether the compiler was skipped.
    pub fn is_hit(&self) -> bool {
        matches!(self, Origin::Hit(_))
    }

    /// The cache file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Origin::Hit(p) | Origin::Stored(p) => Some(p),
            Origin::Compiled => None,
        }
    }
}

impl PtxCache {
    /// A cache in `dir` (`None`: no cache).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The cache the environment names (see [`cache_dir_from`]).
    pub fn from_env() -> Self {
        Self::new(cache_dir_from(
            std::env::var_os("QUADFLOW_CACHE"),
            std::env::var_os("XDG_CACHE_HOME"),
            std::env::var_os("HOME"),
        ))
    }

    /// The directory, if caching.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Reads a valid entry for `key`.
    pub fn load(&self, key: &CacheKey) -> Option<(Vec<u8>, PathBuf)> {
        let path = self.dir.as_ref()?.join(key.file_name());
        let data = std::fs::read(&path).ok()?;
        let nl = data.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&data[..=nl]).ok()?;
        let body = &data[nl + 1..];
        (header == key.header(body)).then(|| (body.to_vec(), path))
    }

    /// Stores `bin` for `key` (write to a temporary file, then rename, so
    /// a concurrent reader never sees half a file; the temporary name is
    /// unique per process and thread). Returns the path, or `None` when
    /// the directory cannot be written.
    pub fn store(&self, key: &CacheKey, bin: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        std::fs::create_dir_all(dir).ok()?;
        let path = dir.join(key.file_name());
        let tmp = dir.join(format!(
            "{}.{}.{:?}.tmp",
            key.file_name(),
            std::process::id(),
            std::thread::current().id()
        ));
        let mut text = key.header(bin).into_bytes();
        text.extend_from_slice(bin);
        if std::fs::write(&tmp, text).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return None;
        }
        if std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return None;
        }
        Some(path)
    }

    /// Drops the entry of `key` (used when the driver rejects a cached
    /// program).
    pub fn remove(&self, key: &CacheKey) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(key.file_name()));
        }
    }

    /// The program of `key` from the cache, or from `compile` (then
    /// stored).
    pub fn get_or_compile<E>(
        &self,
        key: &CacheKey,
        compile: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<(Vec<u8>, Origin), E> {
        if let Some((ptx, path)) = self.load(key) {
            return Ok((ptx, Origin::Hit(path)));
        }
        let ptx = compile()?;
        let origin = match self.store(key, &ptx) {
            Some(p) => Origin::Stored(p),
            None => Origin::Compiled,
        };
        Ok((ptx, origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "quadflow-ptx-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn key_depends_on_source_options_and_arch() {
        let o = vec!["--std=c++17".to_string()];
        let k = CacheKey::new("src", &o, "sm_90");
        assert_eq!(k, CacheKey::new("src", &o, "sm_90"));
        assert_ne!(k.hash, CacheKey::new("src ", &o, "sm_90").hash);
        assert_ne!(k.hash, CacheKey::new("src", &[], "sm_90").hash);
        assert_ne!(k.file_name(), CacheKey::new("src", &o, "sm_80").file_name());
        assert!(k.file_name().starts_with("kernels-sm_90-"));
        // separators matter
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        // stable across builds: a fixed value
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn round_trip_then_hit() {
        let dir = tmpdir("rt");
        let cache = PtxCache::new(Some(dir.join("nested")));
        let key = CacheKey::new("kernel source", &[], "sm_90");
        let calls = Cell::new(0);
        let compile = || {
            calls.set(calls.get() + 1);
            Ok::<_, ()>(b".version 8.0\n.target sm_90\n// body\n\x00\xff".to_vec())
        };
        let (a, o1) = cache.get_or_compile(&key, compile).unwrap();
        assert!(matches!(o1, Origin::Stored(_)));
        let (b, o2) = cache.get_or_compile(&key, compile).unwrap();
        assert!(o2.is_hit());
        assert_eq!(a, b);
        assert_eq!(calls.get(), 1);
        assert_eq!(o1.path(), o2.path());
        // another architecture is another entry
        let k80 = CacheKey::new("kernel source", &[], "sm_80");
        let (_, o3) = cache.get_or_compile(&k80, compile).unwrap();
        assert!(!o3.is_hit());
        assert_eq!(calls.get(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_entries_are_recompiled_and_rewritten() {
        let dir = tmpdir("corrupt");
        let cache = PtxCache::new(Some(dir.clone()));
        let key = CacheKey::new("k", &[], "sm_90");
        let calls = Cell::new(0);
        let compile = || {
            calls.set(calls.get() + 1);
            Ok::<_, ()>(b"PTX BODY\nline two\n".to_vec())
        };
        cache.get_or_compile(&key, compile).unwrap();
        let path = dir.join(key.file_name());
        let good = std::fs::read_to_string(&path).unwrap();
        for bad in [
            good[..good.len() - 3].to_string(),       // truncated
            good.replace("line two", "line 2!!"),     // same length, other body
            good.replace("arch=sm_90", "arch=sm_80"), // wrong header
            String::new(),                            // empty
            "\u{0}\u{1}garbage".to_string(),          // no header at all
        ] {
            std::fs::write(&path, bad).unwrap();
            let before = calls.get();
            let (ptx, o) = cache.get_or_compile(&key, compile).unwrap();
            assert_eq!(ptx, b"PTX BODY\nline two\n");
            assert!(!o.is_hit());
            assert_eq!(calls.get(), before + 1);
            // rewritten: the next read hits
            assert!(cache.load(&key).is_some());
        }
        // invalid UTF-8
        std::fs::write(&path, [0xffu8, 0xfe, b'\n', 0x80]).unwrap();
        let (_, o) = cache.get_or_compile(&key, compile).unwrap();
        assert!(!o.is_hit());
        cache.remove(&key);
        assert!(cache.load(&key).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unwritable_or_disabled_cache_still_compiles() {
        let dir = tmpdir("unwritable");
        std::fs::create_dir_all(&dir).unwrap();
        // a file where the directory should be
        let blocker = dir.join("file");
        std::fs::write(&blocker, "x").unwrap();
        let key = CacheKey::new("k", &[], "sm_90");
        for cache in [
            PtxCache::new(Some(blocker.join("sub"))),
            PtxCache::new(None),
        ] {
            let (ptx, o) = cache
                .get_or_compile(&key, || Ok::<_, ()>(b"P".to_vec()))
                .unwrap();
            assert_eq!(ptx, b"P");
            assert_eq!(o, Origin::Compiled);
        }
        // a compile error is passed through
        let cache = PtxCache::new(Some(dir.clone()));
        assert_eq!(
            cache.get_or_compile(&key, || Err::<Vec<u8>, _>("boom")),
            Err("boom")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn directory_from_environment() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/c"), s("/x"), s("/h")),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(None, s("/x"), s("/h")),
            Some(PathBuf::from("/x/quadflow"))
        );
        assert_eq!(
            cache_dir_from(None, s(""), s("/h")),
            Some(PathBuf::from("/h/.cache/quadflow"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
        for off in ["off", "none", "0", ""] {
            assert_eq!(cache_dir_from(s(off), s("/x"), s("/h")), None);
        }
    }
}
