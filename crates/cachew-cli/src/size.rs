//! Byte counts on the command line (`serve --max-size 20GB`, `restore
//! --max-size 20G`): one grammar for every flag that takes a size.

/// A byte count: digits with an optional unit, case-insensitive. `KiB`,
/// `MiB`, `GiB`, `TiB` and the bare `K`, `M`, `G`, `T` are binary (1024ⁿ);
/// `KB`, `MB`, `GB`, `TB` are decimal (1000ⁿ), as written on disks.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 1048576, 512MiB or 20GB"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let (power, binary) = match unit.as_bytes() {
        [] | [b'b'] => (Some(0), true),
        [p] | [p, b'i', b'b'] => (power_of(*p), true),
        [p, b'b'] => (power_of(*p), false),
        _ => (None, true),
    };
    let Some(power) = power else {
        return Err(format!(
            "`{s}`: unknown unit `{unit}` (use KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
        ));
    };
    let base: u64 = if binary { 1024 } else { 1000 };
    number
        .checked_mul(base.pow(power))
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// The power of a unit's prefix letter (`k` is 1, `m` 2, …).
fn power_of(prefix: u8) -> Option<u32> {
    match prefix {
        b'k' => Some(1),
        b'm' => Some(2),
        b'g' => Some(3),
        b't' => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("3mib"), Ok(3 << 20));
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_size("2kb"), Ok(2000));
        assert_eq!(parse_size("1 TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("7b"), Ok(7));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("3MiBs").is_err());
        assert!(parse_size("3x").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
