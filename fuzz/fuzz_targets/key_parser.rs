//! Arbitrary bytes into the key parser (`parse_token`, `Secret::parse`, `is_access_key`): never a
//! panic; whatever parses re-serialises to the same string and its checksum verifies; a secret
//! built from any 32 base62 characters and their checksum parses, and changing any one character
//! of it makes it fail.
#![no_main]

use keyward::domain::keys::{
    checksum, is_access_key, parse_token, Secret, SECRET_LEN, SECRET_PREFIX, SECRET_RANDOM_LEN,
};
use libfuzzer_sys::fuzz_target;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Everything a parsed secret must satisfy.
fn check_secret(s: &str, secret: &Secret) {
    assert_eq!(
        secret.expose(),
        s,
        "a parsed secret re-serialises unchanged"
    );
    assert_eq!(s.len(), SECRET_LEN);
    let body = s.strip_prefix(SECRET_PREFIX).expect("prefix");
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
    let (random, sum) = body.split_at(SECRET_RANDOM_LEN);
    assert_eq!(checksum(random), sum, "the checksum verifies");
    assert_eq!(Secret::parse(secret.expose()).as_ref(), Some(secret));
    assert_eq!(secret.hash().len(), 64);
    assert!(secret.hint().ends_with(&s[s.len() - 4..]));
    assert!(
        !format!("{secret:?}").contains(random),
        "Debug shows no secret"
    );
}

fn check_str(s: &str) {
    if let Some(secret) = Secret::parse(s) {
        check_secret(s, &secret);
    }
    if let Some((access, secret)) = parse_token(s) {
        assert!(is_access_key(&access));
        assert_eq!(format!("{access}:{}", secret.expose()), s);
        check_secret(secret.expose(), &secret);
    }
    if is_access_key(s) {
        assert!(s.is_ascii() && s.len() == 20);
    }
}

fuzz_target!(|data: &[u8]| {
    // Exactly as received when it is UTF-8, and lossily decoded (what a lenient glue would pass).
    if let Ok(s) = std::str::from_utf8(data) {
        check_str(s);
    }
    check_str(&String::from_utf8_lossy(data));

    // Structure: 32 base62 characters from the input, with their checksum, always parse; one
    // substituted character (position and replacement from the input) never does: CRC-32 catches
    // every error burst of up to 32 bits, and the checksum digits are compared as they are.
    if data.len() >= SECRET_RANDOM_LEN + 2 {
        let random: String = data[..SECRET_RANDOM_LEN]
            .iter()
            .map(|b| BASE62[*b as usize % 62] as char)
            .collect();
        let good = format!("{SECRET_PREFIX}{random}{}", checksum(&random));
        let parsed = Secret::parse(&good).expect("any random part with its checksum parses");
        check_secret(&good, &parsed);
        let at = SECRET_PREFIX.len()
            + data[SECRET_RANDOM_LEN] as usize % (SECRET_LEN - SECRET_PREFIX.len());
        let with = data[SECRET_RANDOM_LEN + 1];
        let mut bad = good.clone().into_bytes();
        if bad[at] != with {
            bad[at] = with;
            let bad = String::from_utf8_lossy(&bad);
            assert_eq!(
                Secret::parse(&bad),
                None,
                "a one-character change is caught"
            );
        }
    }
});
