//! The backends this engine builds in, as a [`Catalog`]: `serial` (also
//! the fallback of phases a backend does not implement), `parallel` and
//! `gpu`. An application adds its own kinds (the MPI executor, a test
//! backend) with [`Catalog::register`].

use crate::config::Catalog;
use crate::gpu::Gpu;
use crate::parallel::Parallel;
use crate::serial::Serial;

/// The built-in backend kinds, with `serial` as the fallback.
pub fn builtin() -> Catalog {
    let mut c = Catalog::new("serial");
    c.register(Serial)
        .register(Parallel::default())
        .register(Gpu::default());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn builtin_kinds_configure_with_their_defaults() {
        let c = builtin();
        assert_eq!(c.names(), "serial, parallel, gpu");
        let reg = c.configure(&BTreeMap::new()).unwrap();
        assert_eq!(reg.fallback(), "serial");
        assert_eq!(reg.names(), "gpu, parallel, serial");
        for k in c.kinds() {
            // the documented defaults configure too
            let mut sections = BTreeMap::new();
            sections.insert(k.name().to_string(), k.defaults());
            c.configure(&sections).unwrap();
        }
    }

    #[test]
    fn a_bad_section_names_the_backend_and_the_key() {
        let c = builtin();
        let mut sections = BTreeMap::new();
        sections.insert(
            "parallel".to_string(),
            toml::from_str("assembly = 'lil'").unwrap(),
        );
        let e = c.configure(&sections).err().unwrap().to_string();
        assert!(e.contains("[parallel]") && e.contains("assembly"), "{e}");
        sections.clear();
        sections.insert("gpu".to_string(), toml::from_str("strategi = 'x'").unwrap());
        let e = c.configure(&sections).err().unwrap().to_string();
        assert!(e.contains("[gpu]") && e.contains("strategi"), "{e}");
    }
}
