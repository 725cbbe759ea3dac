//! The text forms vault_ext stores and compares: PostgreSQL's base64 (ciphertext columns), the
//! hyphenated UUID text (a secret's associated data), and hex (keys, fingerprints).
#![forbid(unsafe_code)]

use crate::ffi::sodium::{self, OutOfMemory, SecretVec};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// PostgreSQL `encode(bytes, 'base64')`: RFC 4648 with padding and a newline after every
/// 76 output characters (so after every 57 input bytes, including the last full line).
pub fn base64_encode(data: &[u8]) -> Result<String, OutOfMemory> {
    let mut out = sodium::try_with_capacity(
        data.len()
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(data.len() / 57 + 1),
    )?;
    for line in data.chunks(57) {
        for g in line.chunks(3) {
            let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            out.push(B64[(n >> 18) as usize & 63]);
            out.push(B64[(n >> 12) as usize & 63]);
            out.push(if g.len() > 1 { B64[(n >> 6) as usize & 63] } else { b'=' });
            out.push(if g.len() > 2 { B64[n as usize & 63] } else { b'=' });
        }
        if line.len() == 57 {
            out.push(b'\n');
        }
    }
    Ok(String::from_utf8(out).expect("base64 is ASCII"))
}

/// The length of `base64_encode`'s output for `n` input bytes (saturating).
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4).saturating_add(n / 57)
}

/// The largest input whose `base64_encode` output is at most `max_text` bytes.
pub fn max_base64_input(max_text: usize) -> usize {
    // base64_len is monotonic: the largest n with base64_len(n) <= max_text, by bisection.
    let (mut lo, mut hi) = (0usize, max_text);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if base64_len(mid) <= max_text {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The most bytes a text value holds in PostgreSQL: MaxAllocSize (1 GB - 1) less the 4-byte
/// varlena header. A stored ciphertext's base64 text must fit.
pub const MAX_TEXT_BYTES: usize = 0x3fff_ffff - 4;

/// Base64 symbol values; `WS` for whitespace PostgreSQL skips, `PAD` for `=`, `BAD` otherwise.
const WS: u8 = 64;
const PAD: u8 = 65;
const BAD: u8 = 255;
const B64_VALUES: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 64 {
        t[B64[i] as usize] = i as u8;
        i += 1;
    }
    t[b' ' as usize] = WS;
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[b'=' as usize] = PAD;
    t
};

/// Why base64 text could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Base64Error {
    Malformed,
    OutOfMemory(usize),
}

/// Decode base64 as PostgreSQL's `decode(.., 'base64')` accepts it: whitespace ignored,
/// `=` padding only at the end. Table-driven: it runs for every row a scan decrypts. The output
/// buffer is sized by the input and allocated fallibly.
pub fn base64_decode(text: &[u8]) -> Result<SecretVec, Base64Error> {
    let mut out = SecretVec::try_zeroed(text.len() / 4 * 3 + 3).map_err(|e| Base64Error::OutOfMemory(e.bytes))?;
    let buf = out.vec_mut();
    let (mut acc, mut bits, mut pad, mut count, mut len) = (0u32, 0u32, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < text.len() {
        // At a group boundary, decode whole groups of four symbols at once; line breaks and
        // the padded tail take the symbol-by-symbol path below.
        if count % 4 == 0 && pad == 0 {
            while let Some(&[a, b, c, d]) = text.get(i..i + 4) {
                let (a, b, c, d) = (
                    B64_VALUES[a as usize],
                    B64_VALUES[b as usize],
                    B64_VALUES[c as usize],
                    B64_VALUES[d as usize],
                );
                if (a | b | c | d) >= 64 {
                    break;
                }
                let group = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
                buf[len..len + 3].copy_from_slice(&group.to_be_bytes()[1..]);
                len += 3;
                count += 4;
                i += 4;
            }
            if i == text.len() {
                break;
            }
        }
        let v = B64_VALUES[text[i] as usize];
        i += 1;
        if v < 64 && pad == 0 {
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            count += 1;
            if bits >= 8 {
                bits -= 8;
                buf[len] = (acc >> bits) as u8;
                len += 1;
            }
        } else if v == WS {
            continue;
        } else if v == PAD && pad < 2 {
            pad += 1;
            count += 1;
        } else {
            return Err(Base64Error::Malformed); // not base64, data after padding, or too much padding
        }
    }
    // Each group is 4 symbols; padding must complete the last group exactly.
    if count % 4 != 0 || (pad > 0 && (count / 4) * 3 - pad != len) {
        return Err(Base64Error::Malformed);
    }
    buf.truncate(len);
    Ok(out)
}

/// Lower-case hyphenated UUID text (what `id::text` gives), the associated data of a secret.
pub fn uuid_text(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            j += 1;
        }
        out[j] = HEX[(b >> 4) as usize];
        out[j + 1] = HEX[(b & 15) as usize];
        j += 2;
    }
    out
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decode exactly `N` bytes from 2N hex characters (either case).
pub fn hex_decode_exact<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

/// A version 7 UUID (RFC 9562): the Unix time in milliseconds, then random bits. Time-ordered,
/// so rows keyed by it go to the right edge of a btree index instead of all over it.
pub fn uuid_v7(unix_ms: u64, random: [u8; 10]) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    id[6..].copy_from_slice(&random);
    id[6] = 0x70 | (id[6] & 0x0f);
    id[8] = 0x80 | (id[8] & 0x3f);
    id
}

#[cfg(test)]
mod tests {

    #[test]
    fn base64_lengths_match_the_encoder_and_bound_the_input() {
        for n in [0usize, 1, 2, 3, 56, 57, 58, 113, 114, 115, 1000] {
            assert_eq!(base64_len(n), base64_encode(&vec![7u8; n]).unwrap().len(), "{n}");
        }
        for max in [0usize, 3, 4, 76, 77, 78, 1000, MAX_TEXT_BYTES] {
            let n = max_base64_input(max);
            assert!(base64_len(n) <= max && base64_len(n + 1) > max, "{max}: {n}");
        }
        // A 1 GB text column holds the base64 of 794 MiB or so: 800,000,000 bytes do not fit.
        assert_eq!(max_base64_input(MAX_TEXT_BYTES), 794_847_840);
    }

    use super::*;

    #[test]
    fn base64_matches_postgres_layout() {
        let base64_encode = |d: &[u8]| super::base64_encode(d).unwrap();
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        let t = base64_encode(&[0u8; 57]);
        assert_eq!(t.len(), 77);
        assert!(t.ends_with('\n'));
        let t = base64_encode(&[1u8; 58]);
        assert_eq!(t.matches('\n').count(), 1);
        assert!(!t.ends_with('\n'));
        for n in 0..200 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                base64_decode(base64_encode(&data).as_bytes()).unwrap().as_slice(),
                &data[..]
            );
        }
        for bad in [&b"Zg="[..], b"Z===", b"Zg=a", b"Zm9-", b"Zg==Zg==", b"A"] {
            assert_eq!(
                base64_decode(bad).err(),
                Some(Base64Error::Malformed),
                "{:?}",
                std::str::from_utf8(bad)
            );
        }
        assert_eq!(base64_decode(b" Zm\n9v ").unwrap().as_slice(), b"foo");
    }

    #[test]
    fn uuid_and_hex_helpers() {
        let b = hex_decode_exact::<16>(b"d9abdb1e4e7040c3b8d32779ae500292").unwrap();
        assert_eq!(&uuid_text(&b), b"d9abdb1e-4e70-40c3-b8d3-2779ae500292");
        assert!(hex_decode_exact::<2>(b"abcg").is_none());
        assert!(hex_decode_exact::<2>(b"abc").is_none());
        assert_eq!(hex_decode_exact::<2>(b"ABcd"), Some([0xab, 0xcd]));
    }

    #[test]
    fn uuid_v7_is_version_7_and_time_ordered() {
        let a = uuid_v7(0x0123_4567_89ab, [0xff; 10]);
        assert_eq!(&a[..6], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
        assert_eq!(a[6] >> 4, 7, "version 7");
        assert_eq!(a[8] >> 6, 0b10, "RFC 9562 variant");
        let later = uuid_v7(0x0123_4567_89ac, [0; 10]);
        assert!(later > a, "a later millisecond sorts after, whatever the random bits");
    }
}
