//! A small, portable pseudo-random generator (SplitMix64), so that a seed names the same
//! cases on every machine and every version of every dependency.

/// The generator. Cheap to create: every case gets its own, derived from the run's seed, the
/// target's name and the case number.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator of case `case` of `target` in the run seeded with `seed`.
    pub fn for_case(seed: u64, target: &str, case: u64) -> Self {
        // FNV-1a of the target name keeps the targets' streams apart.
        let mut name_hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in target.bytes() {
            name_hash = (name_hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut mixer = Self::new(seed ^ name_hash.rotate_left(17));
        let base = mixer.next_u64();
        let mut rng = Self::new(base ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Discard one output so that neighbouring cases do not start correlated.
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        // The modulo bias is irrelevant for fuzzing.
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// A copy of one element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// One element of a non-empty slice.
    pub fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length biased towards small values but able to reach `max`: half the time at most
    /// 16, else anything up to `max`.
    pub fn length(&mut self, max: usize) -> usize {
        if self.one_in(2) {
            self.below(max.min(16) + 1)
        } else {
            self.below(max + 1)
        }
    }

    /// A number of bits of interest to integer parsers: edges of the common widths, their
    /// neighbours, and small values.
    pub fn interesting_u64(&mut self) -> u64 {
        const EDGES: &[u64] = &[
            0,
            1,
            2,
            7,
            8,
            255,
            256,
            511,
            512,
            513,
            1023,
            1024,
            4095,
            4096,
            65535,
            65536,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0o77777777777,
            0o100000000000,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        match self.below(4) {
            0 => self.next_u64(),
            1 => self.below(1 << 20) as u64,
            _ => {
                let edge = self.pick(EDGES);
                match self.below(3) {
                    0 => edge.wrapping_sub(1),
                    1 => edge.wrapping_add(1),
                    _ => edge,
                }
            }
        }
    }
}
