use super::*;

#[test]
fn routing_is_stable() {
    let p = Path::new("a/b/c");
    assert_eq!(route(p, 4), route(p, 4));
    assert!(route(p, 3) < 3);
}
