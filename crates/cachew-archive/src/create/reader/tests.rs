use super::*;
use crate::walk::{Dir, Parent};
use std::fs;

#[test]
fn files_deleted_after_the_listing_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut item = Item {
        name: b"gone".to_vec(),
        leaf: 0,
        parent: Parent::Root(dir.path().join("gone")),
        meta: Meta::UNKNOWN,
        kind: Kind::File,
    };
    let mut buf = vec![0u8; 16];
    let mut pos = 0;
    assert!(matches!(
        load(&mut item, &mut buf, &mut pos),
        Ok(Data::Skip)
    ));
    // Other errors name the full path.
    fs::create_dir(dir.path().join("d")).unwrap();
    let d = Dir::unheld(dir.path().to_path_buf());
    let mut item = Item {
        name: b"x/d/f".to_vec(),
        leaf: 4,
        parent: Parent::Dir(d),
        meta: Meta::UNKNOWN,
        kind: Kind::File,
    };
    fs::write(dir.path().join("f"), b"").unwrap();
    fs::remove_file(dir.path().join("f")).unwrap();
    std::os::unix::fs::symlink("d", dir.path().join("f")).unwrap();
    let err = load(&mut item, &mut buf, &mut pos).err().unwrap();
    assert!(
        err.to_string()
            .contains(&dir.path().join("f").display().to_string()),
        "{err}"
    );
}
