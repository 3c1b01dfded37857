//! A deterministic fuzz run of the entry reader: every archive of the
//! committed corpus of small valid and malformed tar streams (`corpus/`),
//! then thousands of seeded random mutations of them — bit flips, bytes
//! overwritten, truncations, duplicated and dropped blocks, header fields
//! rewritten with their checksum fixed so the damage reaches the parser —
//! each read to its end or its first error. The reader must never panic,
//! never loop, and hold at most its metadata limit.
//!
//! (`cargo fuzz` and `bolero` need a nightly toolchain or an external
//! engine to fuzz for real; this runs on stable in about a second and is
//! deterministic, so a failure reproduces from its seed.)

use super::*;

const CORPUS: &[(&str, &[u8])] = &[
    ("gnu.tar", include_bytes!("corpus/gnu.tar")),
    ("pax.tar", include_bytes!("corpus/pax.tar")),
    ("ustar.tar", include_bytes!("corpus/ustar.tar")),
    (
        "truncated-header.tar",
        include_bytes!("corpus/truncated-header.tar"),
    ),
    (
        "truncated-data.tar",
        include_bytes!("corpus/truncated-data.tar"),
    ),
    (
        "bad-checksum.tar",
        include_bytes!("corpus/bad-checksum.tar"),
    ),
    ("no-end.tar", include_bytes!("corpus/no-end.tar")),
    ("zeros.tar", include_bytes!("corpus/zeros.tar")),
    ("garbage.tar", include_bytes!("corpus/garbage.tar")),
    (
        "longname-then-end.tar",
        include_bytes!("corpus/longname-then-end.tar"),
    ),
    (
        "pax-bad-length.tar",
        include_bytes!("corpus/pax-bad-length.tar"),
    ),
    (
        "base256-size.tar",
        include_bytes!("corpus/base256-size.tar"),
    ),
];

/// Mutations per run.
const MUTATIONS: u64 = 6000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Reads every entry of `tar` to the end or the first error; returns how
/// many entries there were. Panics if the reader makes no progress.
fn read_to_end(tar: &[u8], limit: Option<u64>) -> Result<usize> {
    let mut entries = Entries::with_limit(tar, limit);
    let mut n = 0;
    let mut headers = 0usize;
    while let Some(e) = entries.next_entry(|| {
        headers += 1;
        // Every header consumes a block: more checks than blocks is a loop.
        assert!(headers <= tar.len() / BLOCK + 2, "the reader loops");
        Ok(())
    })? {
        assert!(e.name.len() as u64 <= META_MAX || e.name.len() <= 512);
        let skip = e.size.saturating_add(tarfmt::padding(e.size) as u64);
        entries.input().skip(skip, "entry data")?;
        n += 1;
    }
    Ok(n)
}

/// Rewrites the checksum of the header at `at` so the mutation is parsed.
fn fix_checksum(buf: &mut [u8], at: usize) {
    if at + BLOCK > buf.len() {
        return;
    }
    let h = &mut buf[at..at + BLOCK];
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let blocks = v.len() / BLOCK;
        let block = rng.below(blocks) * BLOCK;
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 if blocks > 0 => {
                let copy = v[block..block + BLOCK].to_vec();
                let at = rng.below(blocks + 1) * BLOCK;
                v.splice(at..at, copy);
            }
            4 if blocks > 0 => {
                v.drain(block..block + BLOCK);
            }
            // A header field rewritten, checksum fixed: type flags, sizes
            // (octal and base-256), names without NUL, mode and mtime.
            5..=8 if blocks > 0 => {
                let (range, value): (std::ops::Range<usize>, Vec<u8>) = match rng.below(6) {
                    0 => (
                        156..157,
                        vec![*b"0125LKxgSV7D\0Z".get(rng.below(14)).unwrap()],
                    ),
                    1 => (
                        124..136,
                        format!("{:011o}\0", rng.next() % (1 << 33)).into_bytes(),
                    ),
                    2 => {
                        let mut f = vec![0x80u8];
                        f.extend((0..11).map(|_| rng.next() as u8));
                        (124..136, f)
                    }
                    3 => (0..100, vec![b'a' + rng.below(26) as u8; 100]),
                    4 => (100..108, (0..8).map(|_| rng.next() as u8).collect()),
                    _ => (136..148, vec![b'7'; 12]),
                };
                v[block + range.start..block + range.end].copy_from_slice(&value);
                fix_checksum(&mut v, block);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn the_corpus_reads_as_expected() {
    for (name, tar) in CORPUS {
        let r = read_to_end(tar, None);
        match *name {
            "gnu.tar" | "pax.tar" | "ustar.tar" | "zeros.tar" => {
                assert!(r.is_ok(), "{name}: {r:?}")
            }
            _ => assert!(r.is_err(), "{name}: {r:?}"),
        }
    }
    assert!(read_to_end(CORPUS[0].1, None).unwrap() >= 7);
}

#[test]
fn seeded_mutations_never_panic_or_loop() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let started = std::time::Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..MUTATIONS {
        let seed = rng.next();
        let mut local = Rng(seed | 1);
        let (_, base) = CORPUS[local.below(CORPUS.len())];
        let tar = mutate(&mut local, base);
        let limit = (i % 3 == 0).then_some(4096);
        let r = std::panic::catch_unwind(|| read_to_end(&tar, limit));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => failed += 1,
            Err(_) => panic!("the reader panicked on mutation {i} (seed {seed:#x})"),
        }
    }
    // Both outcomes are exercised, and the run stays quick.
    assert!(ok > 100 && failed > 100, "ok {ok}, failed {failed}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
