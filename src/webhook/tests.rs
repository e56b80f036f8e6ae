//! The signature check and the secret file. The endpoint on loopback and the agent end to
//! end (a signed push makes it fetch a `git daemon` and apply to the simulator at once) are
//! `tests/webhook.rs`.

use super::*;

#[test]
fn githubs_documented_example_signature_verifies() {
    // From GitHub's "Validating webhook deliveries".
    let secret = Secret::new(b"It's a Secret to Everybody");
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(secret.sign(b"Hello, World!"), good);
    assert!(verify(&secret, b"Hello, World!", Some(good)));
    assert!(!verify(&secret, b"Hello, World?", Some(good)));
    assert!(!verify(&secret, b"Hello, World!", None));
    assert!(!verify(
        &secret,
        b"Hello, World!",
        Some(&good.replace("sha256=", "sha1="))
    ));
    assert!(!verify(&secret, b"Hello, World!", Some(&good[..70])));
    assert!(!verify(
        &secret,
        b"Hello, World!",
        Some(&good.replace('7', "z"))
    ));
    assert!(!verify(
        &Secret::new(b"other"),
        b"Hello, World!",
        Some(good)
    ));
}

#[test]
fn the_secret_never_shows_and_is_read_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "s3cr3t\n").unwrap();
    let secret = Secret::from_file(&path).unwrap();
    assert_eq!(secret.sign(b"x"), Secret::new(b"s3cr3t").sign(b"x"));
    assert!(!format!("{secret:?}").contains("s3cr3t"));
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(
        Secret::from_file(&path),
        Err(Error::EmptySecret(_))
    ));
}
