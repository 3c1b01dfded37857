use super::*;

#[test]
fn sanitize_names() {
    assert_eq!(sanitize(b"./a/b").unwrap(), PathBuf::from("a/b"));
    assert_eq!(sanitize(b"a//./b/").unwrap(), PathBuf::from("a/b"));
    assert_eq!(sanitize(b"./").unwrap(), PathBuf::new());
    assert!(sanitize(b"/etc/passwd").is_err());
    assert!(sanitize(b"a/../../x").is_err());
    assert!(sanitize(b"..").is_err());
    let msg = sanitize(b"../x").unwrap_err().to_string();
    assert_eq!(msg, "archive entry `../x` escapes the target directory");
}
