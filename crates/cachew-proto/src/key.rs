use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The identifier of a cached object: 32 bytes, written as 64 lowercase hex
/// digits (`PROTOCOL.md` §1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key for `text`, always SHA-256 of its bytes (Go's `NewKey`): no hex
    /// shortcut, so `Key::new(k.to_string()) != k`.
    pub fn new(text: impl AsRef<[u8]>) -> Key {
        Key(Sha256::digest(text.as_ref()).into())
    }

    /// Parses key text the way Go's `Key.UnmarshalText` does: exactly 64 hex
    /// digits are the key's bytes; any other text is hashed with SHA-256.
    /// This never fails.
    pub fn parse(text: &str) -> Key {
        let mut bytes = [0u8; 32];
        if text.len() == 64 && hex::decode_to_slice(text, &mut bytes).is_ok() {
            Key(bytes)
        } else {
            Key::new(text)
        }
    }

    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-digit lowercase hex form used in URLs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Infallible: the buffer is exactly twice the key length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl FromStr for Key {
    type Err = std::convert::Infallible;

    /// Same as [`Key::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Key::parse(s))
    }
}

impl From<[u8; 32]> for Key {
    fn from(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Key::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_hashed() {
        assert_eq!(
            Key::parse("hello").to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn hex_is_taken_verbatim_by_parse_but_hashed_by_new() {
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(Key::parse(hex).to_string(), hex);
        assert_ne!(Key::new(hex).to_string(), hex);
        assert_eq!(Key::new("hello"), Key::parse("hello"));
    }

    #[test]
    fn uppercase_hex_is_decoded_and_displayed_lowercase() {
        let upper = "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
        assert_eq!(Key::parse(upper).to_string(), upper.to_lowercase());
    }

    #[test]
    fn almost_hex_is_hashed() {
        // 63 digits, and 64 characters with a non-hex one: both hashed.
        let short = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982";
        let bad = "zcf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(Key::parse(short), Key::new(short));
        assert_eq!(Key::parse(bad), Key::new(bad));
    }

    #[test]
    fn platform_prefixed_vector() {
        assert_eq!(
            Key::parse("linux-amd64-hello").to_string(),
            "43c8a4c4f77d5de2ff906c5c2faf91cd2632c1970b9d491f2e27f70df3ddfbee"
        );
    }

    #[test]
    fn serde_uses_hex() {
        let key = Key::parse("hello");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(
            json,
            "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\""
        );
        let back: Key = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key);
        assert_eq!(format!("{key:?}"), format!("Key({key})"));
    }
}
