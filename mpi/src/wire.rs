//! A small binary encoding for what ranks send each other during setup
//! (mesh parts, matrix rows, coarse contributions): little-endian
//! fixed-width numbers and length-prefixed arrays. Not a file format; both
//! ends are this build.

/// Appends values to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// An `f64`.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// A `u32` array with its length.
    pub fn u32s(&mut self, v: &[u32]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.reserve(4 * v.len());
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    /// A `u64` array with its length.
    pub fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.reserve(8 * v.len());
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    /// An `f64` array with its length.
    pub fn f64s(&mut self, v: &[f64]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.reserve(8 * v.len());
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    /// The bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads what a [`Writer`] wrote, in the same order. A short or malformed
/// buffer is a bug of the sender (both ends are this build), so reads
/// panic rather than return errors.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from the start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        s
    }

    /// Whether everything was read.
    pub fn done(&self) -> bool {
        self.at == self.buf.len()
    }

    /// A `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    /// An `f64`.
    pub fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    /// A string.
    pub fn str(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// A `u32` array.
    pub fn u32s(&mut self) -> Vec<u32> {
        let n = self.u64() as usize;
        self.take(4 * n)
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    /// A `u64` array.
    pub fn u64s(&mut self) -> Vec<u64> {
        let n = self.u64() as usize;
        self.take(8 * n)
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    /// An `f64` array.
    pub fn f64s(&mut self) -> Vec<f64> {
        let n = self.u64() as usize;
        self.take(8 * n)
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::new();
        w.u64(7)
            .f64(-1.5)
            .str("rank 0: bad")
            .u32s(&[1, 2, u32::MAX])
            .u64s(&[])
            .f64s(&[f64::MIN_POSITIVE, 3.25]);
        let b = w.finish();
        let mut r = Reader::new(&b);
        assert_eq!(r.u64(), 7);
        assert_eq!(r.f64(), -1.5);
        assert_eq!(r.str(), "rank 0: bad");
        assert_eq!(r.u32s(), vec![1, 2, u32::MAX]);
        assert!(r.u64s().is_empty());
        assert_eq!(r.f64s(), vec![f64::MIN_POSITIVE, 3.25]);
        assert!(r.done());
    }
}
