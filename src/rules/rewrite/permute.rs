//! The keyed mask of integer columns (`hash` on `smallint`, `integer`, `bigint`): a keyed
//! permutation of the type's values, so that distinct values stay distinct by
//! construction (a hash cut to 32 bits would merge two ids in about every 65,000) and no
//! value leaves the type. It keeps the sign and zero: a positive id stays a positive id
//! (a `CHECK (id > 0)` still holds), a negative one negative, and the type's smallest value
//! is its own image, having no positive twin.
//!
//! The permutation of `1 ..= 2^bits - 1` is a Feistel network of eight rounds over the
//! value's `bits` bits (15, 31 or 63: alternating halves, as FF1 does for a bit string of
//! odd length), each round's function SipHash-1-3 under a 128-bit key derived from the
//! masking key; a value the network maps to 0 goes through it again (cycle walking), which
//! keeps it a permutation of the non-zero values. SipHash is a keyed pseudo-random function
//! built for short inputs: eight of them cost about what the HMAC of the text rules does.

/// The key of the permutation, from the masking key's HMAC (see `mask::Hmac`).
#[derive(Clone, Copy)]
pub(crate) struct Permutation {
    k0: u64,
    k1: u64,
}

/// Rounds of the Feistel network: an even number, so the halves end where they began.
const ROUNDS: u64 = 8;

impl Permutation {
    pub(crate) fn new(key: [u8; 16]) -> Permutation {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&key[..8]);
        k1.copy_from_slice(&key[8..]);
        Permutation {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    pub(crate) fn i16(&self, value: i16) -> i16 {
        self.signed(i64::from(value), 15) as i16
    }

    pub(crate) fn i32(&self, value: i32) -> i32 {
        self.signed(i64::from(value), 31) as i32
    }

    pub(crate) fn i64(&self, value: i64) -> i64 {
        self.signed(value, 63)
    }

    /// The image of `value`, a signed integer of `bits + 1` bits: its magnitude permuted,
    /// its sign kept.
    fn signed(&self, value: i64, bits: u32) -> i64 {
        // The type's smallest value, -2^bits.
        let min = i64::MIN >> (63 - bits);
        if value == 0 || value == min {
            return value;
        }
        let magnitude = value.unsigned_abs();
        let image = self.nonzero(magnitude, bits) as i64;
        if value < 0 {
            -image
        } else {
            image
        }
    }

    /// A permutation of `1 ..= 2^bits - 1`.
    fn nonzero(&self, value: u64, bits: u32) -> u64 {
        let mut x = self.feistel(value, bits);
        while x == 0 {
            x = self.feistel(x, bits);
        }
        x
    }

    /// A permutation of `0 .. 2^bits`: Feistel rounds on halves of `bits / 2` and the rest
    /// bits, their sizes swapping each round.
    fn feistel(&self, value: u64, bits: u32) -> u64 {
        let (mut a_bits, mut b_bits) = (bits / 2, bits - bits / 2);
        let mut a = value >> b_bits;
        let mut b = value & mask(b_bits);
        for round in 0..ROUNDS {
            let f = self.round(round, u64::from(bits), b);
            let c = (a ^ f) & mask(a_bits);
            a = b;
            b = c;
            std::mem::swap(&mut a_bits, &mut b_bits);
        }
        (a << b_bits) | b
    }

    fn round(&self, round: u64, bits: u64, half: u64) -> u64 {
        siphash::<1, 3>(self.k0, self.k1, half, round << 8 | bits)
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// SipHash-c-d (Aumasson and Bernstein) of the 16-byte message `m0 ‖ m1` (little-endian
/// words), as the reference implementation computes it.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, m0: u64, m1: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // The last word carries the message's length in its top byte.
    for m in [m0, m1, 16u64 << 56] {
        v[3] ^= m;
        for _ in 0..C {
            sipround(&mut v);
        }
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..D {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn permutation() -> Permutation {
        Permutation::new(*b"0123456789abcdef")
    }

    #[test]
    fn distinct_ints_stay_distinct_and_keep_their_sign() {
        let p = permutation();
        let mut seen = HashSet::with_capacity(600_000);
        for v in (1..=300_000).chain(-300_000..=-1) {
            let image = p.i32(v);
            assert_eq!(image.signum(), v.signum(), "{v}");
            assert!(seen.insert(image), "{v} collides");
        }
        assert_eq!(p.i32(0), 0);
        assert_eq!(p.i32(i32::MIN), i32::MIN);
        // Not the identity, and the same value the same way every time.
        assert_ne!(p.i32(1), 1);
        assert_eq!(p.i32(12345), p.i32(12345));
        assert_eq!(p.i64(-7), -p.i64(7));
        assert_eq!(p.i64(i64::MIN), i64::MIN);
        assert!(p.i64(i64::MAX) > 0);
    }

    #[test]
    fn permutes_all_of_smallint() {
        let p = permutation();
        let images: HashSet<i16> = (i16::MIN..=i16::MAX).map(|v| p.i16(v)).collect();
        assert_eq!(images.len(), 1 << 16);
        // Another key, another permutation.
        let q = Permutation::new(*b"fedcba9876543210");
        assert!((1..100).any(|v| p.i16(v) != q.i16(v)));
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_is_the_reference() {
        // The standard library's SipHasher is SipHash-2-4 of the bytes written.
        use std::hash::Hasher;
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        for (m0, m1) in [(0, 0), (k0, k1), (u64::MAX, 12345)] {
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&m0.to_le_bytes());
            reference.write(&m1.to_le_bytes());
            assert_eq!(siphash::<2, 4>(k0, k1, m0, m1), reference.finish());
        }
    }
}
