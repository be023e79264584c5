//! Backend configuration: each kind of backend declares its scene section
//! (a TOML table named after it, e.g. `[gpu]`), the command-line flags
//! that set keys of that section, and how the section becomes a
//! configured [`Backend`] ([`BackendKind`]). A [`Catalog`] lists the kinds
//! a build knows and the fallback backend; [`Catalog::configure`] turns
//! the scene's sections into the [`Registry`] a pipeline runs with.
//!
//! A scene section is read into a serde struct with unknown keys refused
//! and missing keys defaulted ([`read_section`]); its defaults, written
//! back as TOML ([`section_of`]), document it.

use crate::pipeline::{Backend, Registry};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use toml::Table;

/// The type of a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue {
    /// A whole number (`--threads 4`).
    Integer,
    /// A number (`--tolerance 1e-3`).
    Float,
    /// A word (`--gpu-strategy vendor`).
    Text,
}

/// A command-line flag of `quadflow run` that sets one key of a backend's
/// section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The long name, without dashes (`threads` for `--threads`).
    pub long: &'static str,
    /// The key of the backend's section it sets.
    pub key: &'static str,
    /// The value's name in the help (`N`).
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// How the value is parsed.
    pub value: FlagValue,
}

impl Flag {
    /// The value `text` as TOML, or a message saying why it is not one.
    pub fn parse(&self, text: &str) -> Result<toml::Value, String> {
        match self.value {
            FlagValue::Integer => text
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("--{} {text}: expected a whole number", self.long)),
            FlagValue::Float => text
                .trim()
                .parse::<f64>()
                .map(toml::Value::Float)
                .map_err(|_| format!("--{} {text}: expected a number", self.long)),
            FlagValue::Text => Ok(toml::Value::String(text.to_string())),
        }
    }
}

/// A wrong key or value in a backend's section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct SettingError {
    /// The key inside the section, where one is to blame.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl SettingError {
    /// An error about `key`.
    pub fn key(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

/// A kind of backend: its scene section and flags, and how a section
/// becomes a configured backend.
pub trait BackendKind: Send + Sync + 'static {
    /// The backend's name (in scenes, on the command line, in reports);
    /// also the name of its scene section.
    fn name(&self) -> &'static str;
    /// One line saying what it is.
    fn about(&self) -> &'static str;
    /// Its section's keys with their default values.
    fn defaults(&self) -> Table {
        Table::new()
    }
    /// The flags of `quadflow run` that set keys of its section.
    fn flags(&self) -> &'static [Flag] {
        &[]
    }
    /// The backend configured by `section` (the scene's table, possibly
    /// empty, with flags applied). `configured` holds the backends
    /// configured before this one (in catalog order), for backends that
    /// wrap another.
    fn configure(
        &self,
        section: &Table,
        configured: &Registry,
    ) -> Result<Arc<dyn Backend>, SettingError>;
}

/// A backend's section that could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{backend}] {error}")]
pub struct ConfigError {
    /// The backend (and section) name.
    pub backend: String,
    /// What is wrong.
    pub error: SettingError,
}

/// The backend kinds a build knows, in registration order, and the
/// fallback backend of phases a backend does not implement.
#[derive(Clone)]
pub struct Catalog {
    kinds: Vec<Arc<dyn BackendKind>>,
    fallback: &'static str,
}

impl Catalog {
    /// An empty catalog whose pipelines fall back to `fallback`.
    pub fn new(fallback: &'static str) -> Self {
        Self {
            kinds: Vec::new(),
            fallback,
        }
    }

    /// Adds (or replaces, keeping its place) a kind.
    pub fn register(&mut self, kind: impl BackendKind) -> &mut Self {
        let kind: Arc<dyn BackendKind> = Arc::new(kind);
        match self.kinds.iter_mut().find(|k| k.name() == kind.name()) {
            Some(k) => *k = kind,
            None => self.kinds.push(kind),
        }
        self
    }

    /// The kinds, in registration order.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn BackendKind> {
        self.kinds.iter().map(|k| k.as_ref())
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&dyn BackendKind> {
        self.kinds().find(|k| k.name() == name)
    }

    /// The fallback backend's name.
    pub fn fallback(&self) -> &'static str {
        self.fallback
    }

    /// The kinds' names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.kinds()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Configures every kind from its section in `sections` (an absent
    /// section is an empty one), in registration order.
    pub fn configure(&self, sections: &BTreeMap<String, Table>) -> Result<Registry, ConfigError> {
        let empty = Table::new();
        let mut reg = Registry::new(self.fallback);
        for k in self.kinds() {
            let section = sections.get(k.name()).unwrap_or(&empty);
            let b = k.configure(section, &reg).map_err(|error| ConfigError {
                backend: k.name().to_string(),
                error,
            })?;
            reg.insert(b);
        }
        Ok(reg)
    }
}

/// Reads a section into `T` (a serde struct with `#[serde(default,
/// deny_unknown_fields)]`): unknown keys and values of the wrong type are
/// errors naming the key.
pub fn read_section<T: DeserializeOwned>(section: &Table) -> Result<T, SettingError> {
    T::deserialize(toml::Value::Table(section.clone())).map_err(|e| SettingError {
        key: None,
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// `value` as a TOML table (a section's defaults).
pub fn section_of<T: Serialize>(value: &T) -> Table {
    Table::try_from(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct S {
        threads: usize,
        name: String,
    }

    #[test]
    fn sections_refuse_unknown_keys_and_take_defaults() {
        let t: Table = toml::from_str("threads = 3").unwrap();
        let s: S = read_section(&t).unwrap();
        assert_eq!(s.threads, 3);
        assert_eq!(s.name, "");
        let t: Table = toml::from_str("treads = 3").unwrap();
        let e = read_section::<S>(&t).unwrap_err();
        assert!(e.to_string().contains("treads"), "{e}");
        let t: Table = toml::from_str("threads = 'many'").unwrap();
        assert!(read_section::<S>(&t).is_err());
        assert_eq!(section_of(&S::default())["threads"].as_integer(), Some(0));
    }

    #[test]
    fn flags_parse_their_values() {
        let f = Flag {
            long: "threads",
            key: "threads",
            value_name: "N",
            help: "",
            value: FlagValue::Integer,
        };
        assert_eq!(f.parse("4").unwrap().as_integer(), Some(4));
        assert!(f.parse("four").unwrap_err().contains("--threads four"));
    }
}
