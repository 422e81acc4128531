//! The NIST SP 800-88 Rev. 1 §4.7 sampling plan: a pure function of capacity, sector size and seed.
//!
//! With `N` logical sectors and `N ≥ 2000`: the device is cut into `S = 1000` sections, section `i`
//! covering sectors `[i·N/S, (i+1)·N/S)` (integer division, so lengths differ by at most one). Every
//! sample is `s = ⌈⌈N/S⌉ / 20⌉` sectors, at least 5 % of every section. In each section two
//! non-overlapping samples are placed uniformly: draw `x` and `y` from `0..=L−2s` (`L` the section's
//! length), let `a = min(x,y)`, `b = max(x,y)`, and sample at offsets `a` and `b + s`. The first and the
//! last sector are sampled on top. Together the samples cover at least 10 % of the device. Devices with
//! fewer than 2000 sectors are read completely (`N/2` sections of two one-sector samples).
//!
//! Draws come from blake3 in keyed XOF mode: key = the 32-byte seed, input = `lapterop sample plan v1`,
//! each draw the next 8 output bytes as a little-endian u64 taken modulo `L−2s+1`, two draws per section
//! in section order. Anyone holding the seed (recorded in the certificate) can redo the plan.
//!
//! The plan's *extents* are the union of all samples, sorted by LBA with overlapping or touching
//! samples merged; the sampled read-back digest is blake3 over the bytes of the extents in that order.

/// Sections a device of at least [`MIN_SECTORS_TO_SAMPLE`] sectors is cut into.
pub const SECTIONS: u64 = 1000;
/// Below this many sectors the plan reads the whole device.
pub const MIN_SECTORS_TO_SAMPLE: u64 = 2 * SECTIONS;
/// Samples per section (first and last LBA come on top).
pub const SAMPLES_PER_SECTION: u32 = 2;
/// Input of the position generator.
const CONTEXT: &[u8] = b"lapterop sample plan v1";

/// A sampling plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Logical sectors on the device.
    pub sectors: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// Sections the device is cut into.
    pub sections: u64,
    /// Pseudorandom samples per section.
    pub samples_per_section: u32,
    /// Sectors per sample.
    pub sample_sectors: u64,
    /// The seed of the position generator.
    pub seed: [u8; 32],
    /// Every sample as (first LBA, sectors), section by section, then the first and the last LBA.
    pub samples: Vec<(u64, u64)>,
    /// The union of the samples: sorted, disjoint, non-touching (first LBA, sectors).
    pub extents: Vec<(u64, u64)>,
}

impl Plan {
    /// Bytes the plan reads.
    pub fn planned_bytes(&self) -> u64 {
        self.extents.iter().map(|e| e.1).sum::<u64>() * u64::from(self.sector_size)
    }

    /// The extents as byte ranges (offset, length).
    pub fn byte_regions(&self) -> Vec<(u64, u64)> {
        let ss = u64::from(self.sector_size);
        self.extents.iter().map(|&(l, c)| (l * ss, c * ss)).collect()
    }

    /// First sector of section `i` (`i` may be `sections` for the end).
    pub fn section_start(&self, i: u64) -> u64 {
        section_start(self.sectors, self.sections, i)
    }

    /// The certificate's record of this plan.
    pub fn describe(&self) -> lapterop_certificate::SamplePlan {
        lapterop_certificate::SamplePlan {
            sections: self.sections,
            samples_per_section: self.samples_per_section,
            sample_bytes: self.sample_sectors * u64::from(self.sector_size),
            seed: hex::encode(self.seed),
            planned_bytes: self.planned_bytes(),
        }
    }
}

fn section_start(sectors: u64, sections: u64, i: u64) -> u64 {
    // Exact in u128; the result is at most `sectors`, so it fits in u64.
    u64::try_from(u128::from(sectors) * u128::from(i) / u128::from(sections.max(1))).unwrap_or(sectors)
}

/// The plan for a device of `capacity` bytes with `sector_size`-byte sectors.
pub fn sample_plan(capacity: u64, sector_size: u32, seed: [u8; 32]) -> Plan {
    let n = capacity / u64::from(sector_size.max(1));
    if n < MIN_SECTORS_TO_SAMPLE {
        let samples: Vec<(u64, u64)> = (0..n).map(|l| (l, 1)).collect();
        return Plan {
            sectors: n,
            sector_size,
            sections: n / 2,
            samples_per_section: SAMPLES_PER_SECTION,
            sample_sectors: 1,
            seed,
            extents: merge(samples.clone()),
            samples,
        };
    }
    let s = n.div_ceil(SECTIONS).div_ceil(20).max(1);
    let mut xof = blake3::Hasher::new_keyed(&seed).update(CONTEXT).finalize_xof();
    let mut draw = |modulus: u64| {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        u64::from_le_bytes(b) % modulus
    };
    let mut samples = Vec::with_capacity(usize::try_from(2 * SECTIONS + 2).unwrap_or(0));
    for i in 0..SECTIONS {
        let start = section_start(n, SECTIONS, i);
        let len = section_start(n, SECTIONS, i + 1) - start;
        let room = len - 2 * s;
        let (x, y) = (draw(room + 1), draw(room + 1));
        let (a, b) = (x.min(y), x.max(y));
        samples.push((start + a, s));
        samples.push((start + b + s, s));
    }
    samples.push((0, 1));
    samples.push((n - 1, 1));
    Plan {
        sectors: n,
        sector_size,
        sections: SECTIONS,
        samples_per_section: SAMPLES_PER_SECTION,
        sample_sectors: s,
        seed,
        extents: merge(samples.clone()),
        samples,
    }
}

/// Sorts and merges overlapping or touching ranges.
fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (l, c) in v {
        match out.last_mut() {
            Some(last) if l <= last.0 + last.1 => last.1 = last.1.max(l + c - last.0),
            _ => out.push((l, c)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const TIB: u64 = 1 << 40;

    fn check(capacity: u64, ss: u32, seed: [u8; 32]) {
        let p = sample_plan(capacity, ss, seed);
        let n = capacity / u64::from(ss);
        assert_eq!(p.sectors, n);
        // Extents: sorted, disjoint, inside the device, first and last LBA included.
        assert!(p.extents.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0));
        assert_eq!(p.extents[0].0, 0, "first LBA sampled");
        let last = p.extents.last().unwrap();
        assert_eq!(last.0 + last.1, n, "last LBA sampled");
        // At least 10 % of the media, at most all of it.
        assert!(p.planned_bytes() * 10 >= capacity && p.planned_bytes() <= capacity);
        assert!(p.samples_per_section >= 2);
        if n < MIN_SECTORS_TO_SAMPLE {
            assert_eq!(p.extents, [(0, n)], "a small device is read completely");
            assert!(p.sections >= n / 2);
            return;
        }
        assert!(p.sections >= 1000);
        assert_eq!(p.samples.len(), usize::try_from(p.sections * 2 + 2).unwrap());
        for i in 0..p.sections {
            let (start, end) = (p.section_start(i), p.section_start(i + 1));
            let len = end - start;
            let a = p.samples[usize::try_from(2 * i).unwrap()];
            let b = p.samples[usize::try_from(2 * i + 1).unwrap()];
            for x in [a, b] {
                assert!(x.0 >= start && x.0 + x.1 <= end, "sample inside its section");
                assert!(x.1 * 20 >= len, "each sample at least 5 % of its section");
            }
            assert!(a.0 + a.1 <= b.0, "the two samples do not overlap");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn plan_meets_nist_parameters(
            sectors_4k in (MIB / 4096)..=(16 * TIB / 4096),
            extra in 0u64..8,
            small in any::<bool>(),
            seed in any::<[u8; 32]>(),
        ) {
            check(sectors_4k * 4096, 4096, seed);
            // 512-byte sectors, including capacities that are not a multiple of 4 KiB.
            check(sectors_4k * 4096 + extra * 512, 512, seed);
            if small {
                // Bias towards the small end, where the arithmetic is tightest.
                let c = MIB + (sectors_4k % (64 * MIB / 512)) * 512;
                check(c, 512, seed);
            }
        }
    }

    #[test]
    fn edge_capacities() {
        for c in [
            MIB,
            MIB + 512,
            2000 * 512,
            1999 * 512,
            2001 * 512,
            3 * MIB,
            16 * TIB,
            16 * TIB - 512,
        ] {
            check(c, 512, [1; 32]);
        }
        for c in [MIB, 8 * MIB, 16 * TIB] {
            check(c, 4096, [2; 32]);
        }
    }

    #[test]
    fn plan_is_a_function_of_its_inputs() {
        let a = sample_plan(256 * MIB, 512, [3; 32]);
        assert_eq!(a, sample_plan(256 * MIB, 512, [3; 32]));
        assert_ne!(a.extents, sample_plan(256 * MIB, 512, [4; 32]).extents);
    }
}
