use super::*;
use crate::walk::{Meta, Parent};
use std::fs;

/// Large files are read straight into the compressor's chunks: the
/// contents (across a chunk boundary) and hash come out right, and a
/// file that is shorter or longer than its size says is an error.
#[test]
fn streamed_files_are_copied_whole_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(dir.path().join("big"), &data).unwrap();
    let item = Item {
        name: b"big".to_vec(),
        leaf: 0,
        parent: Parent::Root(dir.path().join("big")),
        meta: Meta::UNKNOWN,
        kind: Kind::File,
    };
    let open = || File::open(dir.path().join("big")).unwrap();
    let size = data.len() as u64;
    for threads in [1, 2] {
        let mut out = TarOut::new(Vec::new(), 1, threads, true).unwrap();
        out.write(&[7u8; 100]).unwrap();
        let hash = out.stream(open(), &item, size).unwrap();
        assert_eq!(hash, Some(*blake3::hash(&data).as_bytes()));
        assert_eq!(out.pos, 100 + size + tarfmt::padding(size) as u64);
        let Ok(counter) = out.enc.finish().unwrap().into_inner() else {
            panic!("flush failed")
        };
        let bytes = counter.inner;
        let tar = zstd::decode_all(bytes.as_slice()).unwrap();
        assert_eq!(&tar[..100], &[7u8; 100]);
        assert_eq!(&tar[100..100 + data.len()], &data[..]);

        for (claimed, actual) in [(size + 1000, size), (size - 1, size)] {
            let mut out = TarOut::new(io::sink(), 1, threads, true).unwrap();
            match out.stream(open(), &item, claimed) {
                Err(Error::FileChanged {
                    expected,
                    actual: a,
                    ..
                }) => {
                    assert_eq!(expected, claimed);
                    // A longer file shows one byte more than claimed.
                    assert_eq!(a, actual.min(claimed + 1));
                }
                other => panic!("claimed {claimed}: {:?}", other.map(|_| ())),
            }
        }
    }
}
