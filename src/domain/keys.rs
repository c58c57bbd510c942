//! User API keys: the public access key, the secret with its checksum, parsing, hashing and hints.
//!
//! A token is `<access_key>:<secret>`. The access key (`kwa_` + 16 base62) names the key row; the secret
//! (`kws_` + 32 random base62 + 6 base62 of the CRC32 of the random part) proves possession. 32 base62
//! characters carry 32 * log2(62) = 190.5 bits. The checksum lets a malformed or mistyped secret be
//! rejected before any storage is read, as GitHub's token format does. Only SHA-256 of the secret is stored.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const ACCESS_PREFIX: &str = "kwa_";
pub const SECRET_PREFIX: &str = "kws_";
/// Random base62 characters after the access-key prefix (95 bits: an identifier, not a secret).
pub const ACCESS_RANDOM_LEN: usize = 16;
/// Random base62 characters in a secret: 190.5 bits.
pub const SECRET_RANDOM_LEN: usize = 32;
/// Base62 characters of the CRC32 checksum: 62^6 > 2^32.
pub const CHECKSUM_LEN: usize = 6;
pub const SECRET_LEN: usize = SECRET_PREFIX.len() + SECRET_RANDOM_LEN + CHECKSUM_LEN;
pub const ACCESS_LEN: usize = ACCESS_PREFIX.len() + ACCESS_RANDOM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` uniformly random base62 characters, by rejection sampling so no character is favoured.
pub fn random_base62(n: usize, fill_random: &dyn Fn(&mut [u8])) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill_random(&mut buf);
        for &b in buf.iter() {
            // 248 = 62 * 4: bytes at or above it would bias the low characters.
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// The 6-character base62 checksum (most significant first) of the random part of a secret.
pub fn checksum(random_part: &str) -> String {
    let mut n = crc32fast::hash(random_part.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A key's secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A new random secret with its checksum.
    pub fn generate(fill_random: &dyn Fn(&mut [u8])) -> Self {
        let random = random_base62(SECRET_RANDOM_LEN, fill_random);
        let sum = checksum(&random);
        Secret(format!("{SECRET_PREFIX}{random}{sum}"))
    }

    /// Accept only a well-formed secret: prefix, exact length, base62 alphabet, matching checksum.
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(SECRET_PREFIX)?;
        if s.len() != SECRET_LEN || !is_base62(body) {
            return None;
        }
        let (random, sum) = body.split_at(SECRET_RANDOM_LEN);
        (checksum(random) == sum).then(|| Secret(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the whole secret: what the database stores.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }

    /// What a list may show: the prefix and the last four characters.
    pub fn hint(&self) -> String {
        format!("{SECRET_PREFIX}...{}", &self.0[self.0.len() - 4..])
    }
}

/// Hex SHA-256 of arbitrary bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    super::hex(&Sha256::digest(data))
}

/// Constant-time equality of two strings (of public length), for hashes and the admin token.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A new public access key.
pub fn generate_access_key(fill_random: &dyn Fn(&mut [u8])) -> String {
    format!(
        "{ACCESS_PREFIX}{}",
        random_base62(ACCESS_RANDOM_LEN, fill_random)
    )
}

/// Whether `s` has the shape of an access key.
pub fn is_access_key(s: &str) -> bool {
    s.len() == ACCESS_LEN && s.starts_with(ACCESS_PREFIX) && is_base62(&s[ACCESS_PREFIX.len()..])
}

/// Split a held token `<access_key>:<secret>` and check both halves' form. `None` for anything else.
pub fn parse_token(token: &str) -> Option<(String, Secret)> {
    let (access, secret) = token.split_once(':')?;
    if !is_access_key(access) {
        return None;
    }
    Some((access.to_owned(), Secret::parse(secret)?))
}

/// Replace every `kws_...` run of base62 characters with `kws_[redacted]`.
pub fn redact_secrets(s: &str) -> String {
    let prefix = SECRET_PREFIX;
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        out.push_str(prefix);
        out.push_str("[redacted]");
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_random(buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("os randomness");
    }

    #[test]
    fn prefixes_and_lengths_are_pinned_forever() {
        // Clients and secret scanners match on these; changing them breaks every issued key.
        assert_eq!(ACCESS_PREFIX, "kwa_");
        assert_eq!(SECRET_PREFIX, "kws_");
        assert_eq!(SECRET_LEN, 42);
        assert_eq!(ACCESS_LEN, 20);
    }

    #[test]
    fn checksum_is_pinned() {
        assert_eq!(checksum(""), "000000");
        // crc32("a") = 0xe8b7be43 = 3904355907
        assert_eq!(checksum("a"), "4GEHKN");
        assert_eq!(checksum("a").len(), CHECKSUM_LEN);
    }

    #[test]
    fn a_generated_secret_parses_and_carries_enough_randomness() {
        let s = Secret::generate(&os_random);
        assert_eq!(s.expose().len(), SECRET_LEN);
        assert_eq!(Secret::parse(s.expose()), Some(s.clone()));
        assert!(SECRET_RANDOM_LEN as f64 * 62f64.log2() >= 190.0);
        assert_ne!(Secret::generate(&os_random), s);
    }

    #[test]
    fn a_secret_with_a_wrong_checksum_is_rejected() {
        let s = Secret::generate(&os_random);
        let raw = s.expose();
        let last = raw.as_bytes()[raw.len() - 1];
        let swapped = if last == b'A' { 'B' } else { 'A' };
        let broken = format!("{}{}", &raw[..raw.len() - 1], swapped);
        assert_eq!(Secret::parse(&broken), None);
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        let good = Secret::generate(&os_random).expose().to_owned();
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("wrong prefix", good.replacen("kws_", "kwx_", 1)),
            ("too short", good[..good.len() - 1].to_owned()),
            ("too long", format!("{good}A")),
            ("trailing newline", format!("{good}\n")),
            ("trailing space", format!("{good} ")),
            ("nul inside", format!("{}\0{}", &good[..10], &good[11..])),
            ("non-base62", format!("{}-{}", &good[..10], &good[11..])),
            (
                "look-alike unicode",
                format!("{}\u{0430}{}", &good[..10], &good[12..]),
            ),
        ];
        for (why, s) in cases {
            assert_eq!(Secret::parse(&s), None, "{why} should be rejected");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::generate(&os_random);
        assert!(!format!("{s:?}").contains(&s.expose()[4..]));
    }

    #[test]
    fn the_hint_shows_only_the_last_four_characters() {
        let s = Secret::generate(&os_random);
        let hint = s.hint();
        assert!(hint.starts_with("kws_..."));
        assert_eq!(&hint[7..], &s.expose()[SECRET_LEN - 4..]);
    }

    #[test]
    fn tokens_need_both_halves_well_formed() {
        let a = generate_access_key(&os_random);
        let s = Secret::generate(&os_random);
        let token = format!("{a}:{}", s.expose());
        assert_eq!(parse_token(&token), Some((a.clone(), s.clone())));
        assert_eq!(parse_token(s.expose()), None);
        assert_eq!(parse_token(&format!("{a}{}", s.expose())), None);
        assert_eq!(parse_token(&format!("{a}x:{}", s.expose())), None);
        assert_eq!(parse_token(&format!(":{}", s.expose())), None);
    }
}
