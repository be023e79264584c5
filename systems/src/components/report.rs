//! What a backend reports after a run: attributes for the results file and
//! lines for the run summary ([`BackendReport`]).

/// A scalar attribute of a results file.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// An integer, written as a 64-bit signed integer. On reading, any
    /// integer attribute (including h5py's booleans, which read as 0 or 1)
    /// becomes this.
    Int(i64),
    /// A floating-point number, written as an f64. On reading, f32 and f64
    /// attributes become this.
    Float(f64),
    /// A string, written as a variable-length UTF-8 string (what h5py
    /// writes itself and reads back as a `str`). On reading, fixed- and
    /// variable-length strings of either charset become this.
    Str(String),
}

/// What a backend tells about a run it took part in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendReport {
    /// Attributes for the results file (names prefixed with the backend's
    /// name, e.g. `gpu_device`).
    pub attributes: Vec<(String, Attr)>,
    /// Lines for the run summary (without the backend-name column).
    pub summary: Vec<String>,
}

impl BackendReport {
    /// The attribute `name`, if reported.
    pub fn attribute(&self, name: &str) -> Option<&Attr> {
        self.attributes
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v))
    }
}
