//! Whether a point is on NIST P-256 (y² = x³ - 3x + b mod p, x and y < p),
//! with plain (not constant-time: public keys only) 256-bit arithmetic.

/// A field element, 64-bit limbs, least significant first.
type Fe = [u64; 4];

/// p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
const P: Fe = [
    0xffff_ffff_ffff_ffff,
    0x0000_0000_ffff_ffff,
    0x0000_0000_0000_0000,
    0xffff_ffff_0000_0001,
];
/// The curve's b.
const B: Fe = [
    0x3bce_3c3e_27d2_604b,
    0x651d_06b0_cc53_b0f6,
    0xb3eb_bd55_7698_86bc,
    0x5ac6_35d8_aa3a_93e7,
];

pub(super) fn is_on_curve(x: &[u8; 32], y: &[u8; 32]) -> bool {
    let (x, y) = (from_be(x), from_be(y));
    if !less_than(&x, &P) || !less_than(&y, &P) {
        return false;
    }
    let y2 = mul(&y, &y);
    let x3 = mul(&mul(&x, &x), &x);
    let three_x = add(&add(&x, &x), &x);
    y2 == add(&sub(&x3, &three_x), &B)
}

fn from_be(bytes: &[u8; 32]) -> Fe {
    let mut fe = [0u64; 4];
    for (limb, chunk) in fe.iter_mut().zip(bytes.rchunks_exact(8)) {
        let mut be = [0u8; 8];
        be.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(be);
    }
    fe
}

fn less_than(a: &Fe, b: &Fe) -> bool {
    a.iter().rev().cmp(b.iter().rev()).is_lt()
}

/// a - b and whether it borrowed.
fn sub_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        let (d, b1) = a.overflowing_sub(b);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        *o = d;
        borrow = b1 || b2;
    }
    (out, borrow)
}

/// a + b and whether it carried.
fn add_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        let (s, c1) = a.overflowing_add(b);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *o = s;
        carry = c1 || c2;
    }
    (out, carry)
}

/// a + b mod p, for a, b < p.
fn add(a: &Fe, b: &Fe) -> Fe {
    let (sum, carry) = add_raw(a, b);
    if carry || !less_than(&sum, &P) {
        sub_raw(&sum, &P).0
    } else {
        sum
    }
}

/// a - b mod p, for a, b < p.
fn sub(a: &Fe, b: &Fe) -> Fe {
    let (diff, borrow) = sub_raw(a, b);
    if borrow {
        add_raw(&diff, &P).0
    } else {
        diff
    }
}

/// a * b mod p, for a, b < p (double and add over the bits of a).
fn mul(a: &Fe, b: &Fe) -> Fe {
    let mut acc = [0u64; 4];
    for limb in a.iter().rev() {
        for bit in (0..64).rev() {
            acc = add(&acc, &acc);
            if (limb >> bit) & 1 == 1 {
                acc = add(&acc, b);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, i) in out.iter_mut().zip((0..64).step_by(2)) {
            *o = u8::from_str_radix(&s[i..i + 2], 16).expect("hex");
        }
        out
    }

    #[test]
    fn generator_is_on_the_curve_and_neighbours_are_not() {
        let gx = hex32("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let gy = hex32("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        assert!(super::is_on_curve(&gx, &gy));
        // -G = (x, p - y) is on the curve too.
        let neg = super::sub(&[0; 4], &super::from_be(&gy));
        let mut neg_y = [0u8; 32];
        for (chunk, limb) in neg_y.rchunks_exact_mut(8).zip(neg) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        assert!(super::is_on_curve(&gx, &neg_y));
        let mut off = gy;
        off[31] ^= 1;
        assert!(!super::is_on_curve(&gx, &off));
        assert!(!super::is_on_curve(&[0; 32], &[0; 32]));
        // x >= p is refused even where x - p would be on the curve.
        assert!(!super::is_on_curve(&[0xff; 32], &gy));
    }
}
