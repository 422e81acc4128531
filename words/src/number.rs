//! Sizes and percentages, one way for both programs (the rules are in the crate's docs).

/// Decimal units after bytes, as disks are sold.
const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];

/// A disk size (or a transfer) in decimal units with one decimal, cut not rounded: `512 B`, `1.0 kB`,
/// `999.9 MB`, `256.0 GB`, `1.0 TB`.
pub fn size(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    // The largest unit the size reaches (TB at most); `unit` is 1000^(index + 1) bytes.
    let mut unit = 1000;
    let mut index = 0;
    while index + 1 < UNITS.len() && bytes / unit >= 1000 {
        unit *= 1000;
        index += 1;
    }
    let tenths = bytes / (unit / 10);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[index])
}

/// Memory in binary gibibytes as modules are sold, with one decimal (cut) only when it is not whole:
/// `8 GiB`, `7.6 GiB`, `0.5 GiB`.
pub fn memory(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    let tenths = bytes / (GIB / 10);
    if tenths % 10 == 0 {
        format!("{} GiB", tenths / 10)
    } else {
        format!("{}.{} GiB", tenths / 10, tenths % 10)
    }
}

/// A percentage: `87%`.
pub fn percent(value: u32) -> String {
    format!("{value}%")
}

/// How much of `total` `done` is, in whole percent, cut (never 100 before the end) and at most 100;
/// 100 when there is nothing to do.
pub fn percent_of(done: u64, total: u64) -> u32 {
    if total == 0 {
        return 100;
    }
    let share = u128::from(done.min(total)) * 100 / u128::from(total);
    // At most 100 because done <= total.
    u32::try_from(share).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_sold_across_every_threshold() {
        for (bytes, text) in [
            (0, "0 B"),
            (1, "1 B"),
            (512, "512 B"),
            (999, "999 B"),
            (1_000, "1.0 kB"),
            (1_024, "1.0 kB"),
            (1_999, "1.9 kB"),
            (999_999, "999.9 kB"),
            (1_000_000, "1.0 MB"),
            (64 << 20, "67.1 MB"),
            (512_100_000, "512.1 MB"),
            (999_999_999, "999.9 MB"),
            (1_000_000_000, "1.0 GB"),
            (16_008_609_792, "16.0 GB"),
            (120_034_123_776, "120.0 GB"),
            (256_060_514_304, "256.0 GB"),
            (500_107_862_016, "500.1 GB"),
            (999_999_999_999, "999.9 GB"),
            (1_000_000_000_000, "1.0 TB"),
            (1_000_204_886_016, "1.0 TB"),
            (2_000_398_934_016, "2.0 TB"),
            (999_999_999_999_999, "999.9 TB"),
            (1_500_000_000_000_000, "1500.0 TB"),
            (u64::MAX, "18446744.0 TB"),
        ] {
            assert_eq!(size(bytes), text, "{bytes} B");
        }
    }

    #[test]
    fn a_size_never_reads_larger_than_it_is() {
        // Every threshold minus one byte stays in the unit below, with the decimal cut.
        let mut unit = 1000_u64;
        for name in UNITS.iter().take(UNITS.len() - 1) {
            assert_eq!(size(unit * 1000 - 1), format!("999.9 {name}"));
            unit *= 1000;
        }
        assert_eq!(size(1_099_999_999), "1.0 GB");
    }

    #[test]
    fn memory_reads_in_gib() {
        assert_eq!(memory(8 << 30), "8 GiB");
        assert_eq!(memory(8_250_000_000), "7.6 GiB");
        assert_eq!(memory(512 << 20), "0.5 GiB");
        assert_eq!(memory(0), "0 GiB");
    }

    #[test]
    fn percentages_are_whole_and_reach_100_only_at_the_end() {
        assert_eq!(percent(87), "87%");
        assert_eq!(percent_of(1_000_000_000, 4_000_000_000), 25);
        assert_eq!(percent_of(999, 1000), 99);
        assert_eq!(percent_of(1000, 1000), 100);
        assert_eq!(percent_of(5, 0), 100);
        assert_eq!(percent_of(2000, 1000), 100);
        assert_eq!(percent_of(u64::MAX - 1, u64::MAX), 99);
    }
}
