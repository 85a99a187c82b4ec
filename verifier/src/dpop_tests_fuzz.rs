//! Random mutations of valid proofs (both algorithms, with `ath` and
//! `nonce`): none may panic, none may verify. A deterministic xorshift
//! generator, no crate. Imports the helpers of `dpop_tests.rs` and
//! anything of `dpop`.

use super::*;

/// xorshift64*: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn mutate(rng: &mut Rng, proof: &str) -> String {
    const CHARS: &[char] = &[
        'A',
        'z',
        '0',
        '9',
        '-',
        '_',
        '.',
        '=',
        '+',
        '/',
        ' ',
        '%',
        '\0',
        'é',
        '€',
        '\u{1F600}',
    ];
    let mut chars: Vec<char> = proof.chars().collect();
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    match rng.below(8) {
        0 | 1 => {
            let at = rng.below(chars.len());
            if let Some(c) = chars.get_mut(at) {
                *c = CHARS[rng.below(CHARS.len())];
            }
            chars.into_iter().collect()
        }
        2 => {
            chars.truncate(rng.below(chars.len()));
            chars.into_iter().collect()
        }
        3 => {
            let at = rng.below(parts.len());
            parts.remove(at);
            parts.join(".")
        }
        4 => {
            let at = rng.below(parts.len());
            let part = parts[at].clone();
            parts.insert(rng.below(parts.len() + 1), part);
            parts.join(".")
        }
        5 => {
            let (a, b) = (rng.below(parts.len()), rng.below(parts.len()));
            parts.swap(a, b);
            parts.join(".")
        }
        _ => {
            // Flip a byte of a decoded part and re-encode it.
            let at = rng.below(parts.len());
            let mut bytes = URL_SAFE_NO_PAD.decode(&parts[at]).unwrap_or_default();
            let i = rng.below(bytes.len());
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
            if rng.below(4) == 0 {
                bytes.truncate(i);
            }
            parts[at] = b64(&bytes);
            parts.join(".")
        }
    }
}

#[test]
fn random_mutations_never_panic_nor_verify() {
    let token = "tok";
    let expect = Expect {
        access_token: Some(token),
        ..expect()
    };
    let es = Es256::new();
    let valid = [
        ed25519_proof(&SEED, "GET", HTU, NOW, "j-1", Some(&ath(token)), Some("n")),
        es.proof(&with(claims(), "ath", ath(token).into())),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for proof in &valid {
        assert!(verify_proof(proof, &expect).is_ok());
        for round in 0..2500 {
            let mut mutated = mutate(&mut rng, proof);
            if round % 5 == 0 {
                mutated = mutate(&mut rng, &mutated);
            }
            if mutated != *proof {
                assert!(verify_proof(&mutated, &expect).is_err(), "{mutated}");
            }
        }
    }
}
