//! Built-in mesh generators for the reference geometries.
