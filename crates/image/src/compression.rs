use anyhow::{bail, Result};
use std::io::{BufRead, Read};

/// How an archive is compressed, told by its first bytes (not its name or
/// media type, which may lie).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Looks at the start of a stream and names its compression, refusing
/// formats botyard does not read with a hint.
pub fn detect(head: &[u8]) -> Result<Compression> {
    const CASES: &[(&[u8], &str)] = &[
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (b"BZh", "bzip2"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (&[0x5d, 0x00, 0x00], "lzma"),
        (b"7z\xbc\xaf", "7z"),
        (b"PK\x03\x04", "zip"),
    ];
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Compression::Zstd);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Ok(Compression::None);
    }
    for (magic, name) in CASES {
        if head.starts_with(magic) {
            bail!("{name} compression is not supported; decompress it first or recompress with gzip or zstd");
        }
    }
    if head.is_empty() {
        bail!("the archive is empty");
    }
    if head.len() < 512 {
        bail!("the archive is truncated (shorter than one tar header)");
    }
    bail!("unknown compression or not a tar archive; botyard reads plain, gzip and zstd tar")
}

/// Wraps a buffered stream in the right decompressor.
pub(crate) fn decompress<'a, R: BufRead + Send + 'a>(
    mut r: R,
) -> Result<Box<dyn Read + Send + 'a>> {
    let head = r.fill_buf()?.to_vec();
    Ok(match detect(&head)? {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]).unwrap(), Compression::Gzip);
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar).unwrap(), Compression::None);
        let e = detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("xz"), "{e}");
        assert!(detect(&[7u8; 600])
            .unwrap_err()
            .to_string()
            .contains("unknown compression"));
    }
}
