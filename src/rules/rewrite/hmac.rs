//! HMAC-SHA256 (RFC 2104) under one key, as the keyed rules hash values: written on
//! SHA-256's compression function, the padded key's states kept, for short values' speed.

use crate::rules::rewrite::permute::Permutation;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104) under one key, on SHA-256's compression function itself: the
/// states after the padded key are kept, and a value's blocks (one, for a value of up to
/// 55 bytes) and the outer block are compressed with no hasher around them.
#[derive(Clone)]
pub(crate) struct Hmac {
    inner: [u32; 8],
    outer: [u32; 8],
    /// The integer permutation's key, from this HMAC of a fixed label.
    pub(crate) ints: Permutation,
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl Hmac {
    pub(crate) fn new(key: &[u8]) -> Hmac {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let state = |pad: u8| {
            let mut state = SHA256_IV;
            compress256(&mut state, &[block.map(|b| b ^ pad)]);
            state
        };
        let mut hmac = Hmac {
            inner: state(0x36),
            outer: state(0x5c),
            ints: Permutation::new([0; 16]),
        };
        let mut ints = [0u8; 16];
        ints.copy_from_slice(&hmac.mac(b"pgcopy: the integer permutation's key")[..16]);
        hmac.ints = Permutation::new(ints);
        hmac
    }

    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        let inner = finish(self.inner, data);
        finish(self.outer, &inner)
    }
}

/// The SHA-256 digest of a message whose first block (the padded key) `state` holds, and
/// `data` after it.
fn finish(mut state: [u32; 8], data: &[u8]) -> [u8; 32] {
    let (blocks, rest) = data.as_chunks::<64>();
    compress256(&mut state, blocks);
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (64 + data.len() as u64) * 8;
    tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    let (tail, _) = tail[..end].as_chunks::<64>();
    compress256(&mut state, tail);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_is_rfc_4231s() {
        // RFC 4231, test case 2.
        let mac = Hmac::new(b"Jefe").mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test cases 6 and 7: a key longer than a block; data of more than one.
        let key = [0xaa; 131];
        for (data, want) in [
            (
                &b"Test Using Larger Than Block-Size Key - Hash Key First"[..],
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &b"This is a test using a larger than block-size key and a larger than \
                   block-size data. The key needs to be hashed before being used by the HMAC \
                   algorithm."[..],
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ] {
            let hex: String = Hmac::new(&key)
                .mac(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, want);
        }
    }

    #[test]
    fn hmac_pads_every_length_as_sha256_does() {
        // Against HMAC written with the hasher, at each length around the padding's edges.
        let key = b"0123456789abcdef0123";
        let reference = |data: &[u8]| {
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            let inner = Sha256::new()
                .chain_update(block.map(|b| b ^ 0x36))
                .chain_update(data)
                .finalize();
            let outer = Sha256::new()
                .chain_update(block.map(|b| b ^ 0x5c))
                .chain_update(inner)
                .finalize();
            outer.to_vec()
        };
        let hmac = Hmac::new(key);
        let data: Vec<u8> = (0..200u8).collect();
        for len in 0..data.len() {
            assert_eq!(
                hmac.mac(&data[..len]).to_vec(),
                reference(&data[..len]),
                "{len}"
            );
        }
    }
}
