//! A bitmap of one node's dynamic port range, so a free host port is found with a
//! few word scans instead of one set lookup per port.

/// Which ports of an inclusive range `lo..=hi` are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMap {
    lo: u16,
    hi: u16,
    /// One bit per port, set when taken; the bits past `hi` in the last word are
    /// set, so they are never offered.
    words: Vec<u64>,
}

impl PortMap {
    /// An empty map of `lo..=hi`; `None` when the range is empty.
    pub fn new(lo: u16, hi: u16) -> Option<PortMap> {
        if lo > hi {
            return None;
        }
        let len = (hi - lo) as usize + 1;
        let mut words = vec![0u64; len.div_ceil(64)];
        let tail = len % 64;
        if tail != 0 {
            *words.last_mut().expect("at least one word") = !0u64 << tail;
        }
        Some(PortMap { lo, hi, words })
    }

    /// Marks a port taken; ports outside the range are ignored.
    pub fn set(&mut self, port: u16) {
        if let Some(bit) = self.bit(port) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// Marks a port free; ports outside the range are ignored.
    pub fn clear(&mut self, port: u16) {
        if let Some(bit) = self.bit(port) {
            self.words[bit / 64] &= !(1 << (bit % 64));
        }
    }

    /// Whether a port in the range is taken (false outside the range).
    pub fn is_set(&self, port: u16) -> bool {
        self.bit(port)
            .is_some_and(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// How many ports of the range are free.
    pub fn free(&self) -> usize {
        self.words.iter().map(|w| w.count_zeros() as usize).sum()
    }

    /// The first free port at or after `from`, wrapping round to `lo`.
    pub fn first_free_from(&self, from: u16) -> Option<u16> {
        let start = (from.clamp(self.lo, self.hi) - self.lo) as usize;
        let (sw, sb) = (start / 64, start % 64);
        let at = |k: usize, free: u64| self.lo + (k * 64 + free.trailing_zeros() as usize) as u16;
        for (k, w) in self.words.iter().enumerate().skip(sw) {
            let free = if k == sw { !w & (!0u64 << sb) } else { !w };
            if free != 0 {
                return Some(at(k, free));
            }
        }
        // Wrapped: anything at or after `start` was seen above.
        self.words
            .iter()
            .enumerate()
            .take(sw + 1)
            .find(|(_, w)| **w != !0u64)
            .map(|(k, w)| at(k, !w))
    }

    fn bit(&self, port: u16) -> Option<usize> {
        (self.lo..=self.hi)
            .contains(&port)
            .then(|| (port - self.lo) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_free_ports_from_a_cursor_and_wraps() {
        let mut m = PortMap::new(100, 229).expect("non-empty");
        assert_eq!(m.free(), 130);
        assert_eq!(m.first_free_from(0), Some(100));
        for p in 100..=228 {
            m.set(p);
        }
        assert_eq!(m.first_free_from(150), Some(229));
        m.set(229);
        assert_eq!(m.first_free_from(150), None);
        m.clear(120);
        assert_eq!(m.first_free_from(200), Some(120), "wraps round");
        assert!(m.is_set(121) && !m.is_set(120) && !m.is_set(99) && !m.is_set(230));
        assert_eq!(PortMap::new(5, 4), None);
        let full = PortMap::new(0, u16::MAX).expect("whole range");
        assert_eq!(full.free(), 65_536);
        assert_eq!(full.first_free_from(u16::MAX), Some(u16::MAX));
    }
}
