use std::fmt;
use std::str::FromStr;

/// A BLAKE3 hash naming an object (by its bytes) or a tree (by its encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// The hash of the empty content; empty files have no object.
    pub fn empty() -> Hash {
        Hash::of(b"")
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The two-level path of this hash below `objects/` or `trees/`.
    pub fn rel_path(&self) -> String {
        let h = self.to_hex();
        format!("{}/{}", &h[..2], &h[2..])
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Self {
        Hash(*h.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..12])
    }
}

#[derive(Debug)]
pub struct HashParseError(String);

impl fmt::Display for HashParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not a 64-digit hexadecimal BLAKE3 hash", self.0)
    }
}

impl std::error::Error for HashParseError {}

impl FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s2 = s.strip_prefix("blake3:").unwrap_or(s);
        let mut out = [0u8; 32];
        if s2.len() != 64
            || !s2
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(HashParseError(s.chars().take(80).collect()));
        }
        hex::decode_to_slice(s2, &mut out).map_err(|_| HashParseError(s.to_string()))?;
        Ok(Hash(out))
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let h = Hash::of(b"hello");
        assert_eq!(h.to_hex().parse::<Hash>().unwrap(), h);
        assert_eq!(format!("blake3:{h}").parse::<Hash>().unwrap(), h);
        assert!("abc".parse::<Hash>().is_err());
        assert!(h.to_hex().to_uppercase().parse::<Hash>().is_err());
        assert_eq!(h.rel_path().len(), 65);
    }
}
