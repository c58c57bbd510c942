//! Encryption at rest for provider API keys and credentials (SECURITY.md promise 1).
//!
//! Each secret is sealed with AES-256-GCM under a master key taken from a Worker secret. The stored
//! form is the key version (its own column) plus base64 of `nonce || ciphertext || tag`, where the
//! 96-bit nonce is fresh randomness for every seal (NIST SP 800-38D §8.2.2: random 96-bit nonces are
//! safe for up to 2^32 seals per key). The associated data built by [`credential_aad`] binds each
//! ciphertext to its tenant, factory, model and row, so a ciphertext copied to another row or tenant
//! does not open. Secrets are shown only through [`mask`].
//!
//! # Configuration
//!
//! - `KEYWARD_ENCRYPTION_KEY`: base64 (standard alphabet, padding optional) of 32 random bytes, e.g.
//!   `openssl rand -base64 32`.
//! - `KEYWARD_ENCRYPTION_KEY_VERSION`: its version, an integer of at least 1.
//! - `KEYWARD_ENCRYPTION_KEYS_OLDER`: comma-separated `VERSION:BASE64KEY` entries of retired keys
//!   still accepted for opening; empty when there are none.
//!
//! # Rotating the master key
//!
//! 1. Generate a new key: `openssl rand -base64 32`.
//! 2. Move the current key into `KEYWARD_ENCRYPTION_KEYS_OLDER` as `VERSION:KEY`, using its current
//!    version (append with a comma if the list already has entries), e.g. `1:oldkeybase64...`.
//! 3. Set `KEYWARD_ENCRYPTION_KEY` to the new key and increment `KEYWARD_ENCRYPTION_KEY_VERSION`
//!    (e.g. 1 to 2). Deploy all three secrets together (`wrangler secret put` each, or
//!    `wrangler secret bulk`), so no instance ever sees a version without its key.
//! 4. From then on every seal uses the new key; rows sealed under the old one still open because their
//!    stored version finds the old key. A row is re-sealed with the current key when it is next written
//!    ([`Keyring::reseal`] does this for a row whose plaintext is not being replaced).
//! 5. Only once no row still carries the old version (for example
//!    `SELECT COUNT(*) ... WHERE key_version = 1` returns 0) remove it from
//!    `KEYWARD_ENCRYPTION_KEYS_OLDER`; a row still sealed under a removed key answers
//!    [`CryptoError::UnknownVersion`] and its credential must be entered again.
//!
//! A leaked master key is rotated the same way, followed by re-sealing every row and then dropping
//! the leaked key; until then rows under it stay readable by whoever holds it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// AES-256 key length in bytes.
pub const KEY_LEN: usize = 32;
/// GCM nonce length: 96 bits, the size GCM is defined for without extra hashing (SP 800-38D).
pub const NONCE_LEN: usize = 12;
/// GCM authentication tag length: the full 128 bits.
pub const TAG_LEN: usize = 16;

/// Config keys may be given padded or not; whatever the operator pasted should work.
const CONFIG_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key could not be loaded or a credential not opened. No variant carries key material or
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// No master key is configured.
    NoKey,
    /// The key configuration is malformed; the text names what is wrong, never the key itself.
    BadKey(String),
    /// The row was sealed under a key version this keyring does not hold.
    UnknownVersion(u32),
    /// The ciphertext was tampered with, moved to another row or tenant, or sealed under a different
    /// key. Deliberately one variant with no detail, so failures cannot be told apart.
    Decrypt,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::NoKey => f.write_str("no encryption key is configured"),
            CryptoError::BadKey(why) => write!(f, "bad encryption key configuration: {why}"),
            CryptoError::UnknownVersion(v) => write!(f, "no encryption key of version {v}"),
            CryptoError::Decrypt => f.write_str("credential could not be decrypted"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// A master key with its version number (stored beside every ciphertext so keys can rotate).
/// Its `Debug` shows the version only.
#[derive(Clone)]
pub struct MasterKey {
    version: u32,
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MasterKey {
    pub fn new(version: u32, key: [u8; KEY_LEN]) -> MasterKey {
        MasterKey { version, key }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }
}

/// The current key (used to seal) plus older keys still accepted to open. Its `Debug` shows versions
/// only.
#[derive(Clone)]
pub struct Keyring {
    current: MasterKey,
    older: Vec<MasterKey>,
    /// Which keyring of this isolate this is (see [`Keyring::instance`]).
    instance: u64,
}

/// Keyrings made so far in this isolate (the next one's [`Keyring::instance`]).
static KEYRINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let older: Vec<u32> = self.older.iter().map(|k| k.version).collect();
        f.debug_struct("Keyring")
            .field("current_version", &self.current.version)
            .field("older_versions", &older)
            .finish()
    }
}

/// Decode one configured key. Errors say which key (`what`) and what is wrong; the base64 crate's own
/// error is dropped because it quotes the offending byte.
fn decode_key(what: &str, b64: &str) -> Result<[u8; KEY_LEN], CryptoError> {
    let bytes = CONFIG_BASE64
        .decode(b64.trim())
        .map_err(|_| CryptoError::BadKey(format!("{what} is not valid base64")))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        CryptoError::BadKey(format!(
            "{what} decodes to {} bytes, expected {KEY_LEN}",
            bytes.len()
        ))
    })
}

impl Keyring {
    /// Parse from config: `current` is base64 (standard, padded or not) of exactly 32 bytes;
    /// `current_version` >= 1; `older` is a comma-separated list of `VERSION:BASE64KEY` (may be
    /// empty; empty entries such as a trailing comma are ignored). Versions must be distinct.
    /// Errors name what is wrong without echoing key material.
    pub fn from_config(
        current: &str,
        current_version: u32,
        older: &str,
    ) -> Result<Keyring, CryptoError> {
        if current.trim().is_empty() {
            return Err(CryptoError::NoKey);
        }
        if current_version == 0 {
            return Err(CryptoError::BadKey(
                "current key version must be at least 1".into(),
            ));
        }
        let current = MasterKey::new(current_version, decode_key("current key", current)?);
        let mut older_keys: Vec<MasterKey> = Vec::new();
        for (i, entry) in older.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let n = i + 1;
            let (version, b64) = entry.split_once(':').ok_or_else(|| {
                CryptoError::BadKey(format!("older key entry {n} is not VERSION:KEY"))
            })?;
            let version: u32 = version.trim().parse().map_err(|_| {
                CryptoError::BadKey(format!(
                    "older key entry {n} has a version that is not a positive integer"
                ))
            })?;
            if version == 0 {
                return Err(CryptoError::BadKey(format!(
                    "older key entry {n} has version 0; versions start at 1"
                )));
            }
            if version == current_version || older_keys.iter().any(|k| k.version == version) {
                return Err(CryptoError::BadKey(format!(
                    "key version {version} is configured more than once"
                )));
            }
            let key = decode_key(&format!("older key entry {n} (version {version})"), b64)?;
            older_keys.push(MasterKey::new(version, key));
        }
        Ok(Keyring::new(current, older_keys))
    }

    pub fn new(current: MasterKey, older: Vec<MasterKey>) -> Keyring {
        let instance = KEYRINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Keyring {
            current,
            older,
            instance,
        }
    }

    /// A number no other keyring made in this isolate has (its clones share it): what a cache of
    /// opened credentials is keyed by, so a new configuration never meets what an old one opened.
    /// Says nothing about the keys.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The version every new seal is stored with.
    pub fn current_version(&self) -> u32 {
        self.current.version
    }

    fn key(&self, version: u32) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(self.older.iter())
            .find(|k| k.version == version)
    }

    /// Encrypt with the current key. `aad` binds the ciphertext to its row (build it with
    /// [`credential_aad`]). The 96-bit nonce comes from `fill_random`. Returns
    /// `(key_version, base64 of nonce || ciphertext || tag)`.
    pub fn seal(
        &self,
        plaintext: &str,
        aad: &str,
        fill_random: &dyn Fn(&mut [u8]),
    ) -> (u32, String) {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM refuses only messages over 2^36 - 32 bytes (P_MAX), far beyond any credential
            // and beyond what a Worker's 128 MB of memory can hold.
            .expect("AES-GCM encryption cannot fail below its 64 GiB message limit");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        (self.current.version, STANDARD.encode(blob))
    }

    /// Decrypt with the key of `version`. Any tampering, malformed or truncated input, a different
    /// `aad` (ciphertext moved to another row or tenant) or a wrong key is [`CryptoError::Decrypt`];
    /// a version this keyring does not hold is [`CryptoError::UnknownVersion`].
    pub fn open(&self, version: u32, sealed: &str, aad: &str) -> Result<String, CryptoError> {
        let key = self
            .key(version)
            .ok_or(CryptoError::UnknownVersion(version))?;
        let blob = STANDARD.decode(sealed).map_err(|_| CryptoError::Decrypt)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = key
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
    }

    /// Re-seal a stored credential under the current key. The ciphertext is always opened first, so
    /// a broken row is reported rather than skipped. `Ok(None)` when it is already under the current
    /// version (nothing to write); otherwise the new `(key_version, sealed)` to store.
    pub fn reseal(
        &self,
        version: u32,
        sealed: &str,
        aad: &str,
        fill_random: &dyn Fn(&mut [u8]),
    ) -> Result<Option<(u32, String)>, CryptoError> {
        let plaintext = self.open(version, sealed, aad)?;
        if version == self.current.version {
            return Ok(None);
        }
        Ok(Some(self.seal(&plaintext, aad, fill_random)))
    }
}

/// The associated data binding a credential to its place:
/// `"keyward/credential/v1\0{tenant_id}\0{factory}\0{model}\0{row_id}"`. NUL separators keep fields
/// from shifting across boundaries (the callers' ids and names never contain NUL); the version
/// label lets the layout change later without ambiguity.
pub fn credential_aad(tenant_id: &str, factory: &str, model: &str, row_id: &str) -> String {
    format!("keyward/credential/v1\0{tenant_id}\0{factory}\0{model}\0{row_id}")
}

/// Most characters of a secret a hint may show: this fraction (a quarter), and at most 7.
pub const MASK_REVEAL_DIVISOR: usize = 4;

/// A masked hint safe to show, never more than a quarter of the secret: up to the last 4 and the
/// first 3 characters around `...` (`"sk-...wxyz"` from 28 characters on), fewer for shorter
/// secrets (a 12-character key shows only its last 3), and `"****"` below 4 characters. Counts
/// characters, not bytes, so multibyte input cannot split a char.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let budget = (chars.len() / MASK_REVEAL_DIVISOR).min(7);
    let tail = budget.min(4);
    let head = (budget - tail).min(3);
    if tail == 0 {
        return "****".to_owned();
    }
    let first: String = chars[..head].iter().collect();
    let last: String = chars[chars.len() - tail..].iter().collect();
    format!("{first}...{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_random(buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("os randomness");
    }

    fn ring(version: u32, byte: u8) -> Keyring {
        Keyring::new(MasterKey::new(version, [byte; KEY_LEN]), Vec::new())
    }

    fn aad() -> String {
        credential_aad("tenant-a", "OpenAI", "gpt-4o", "row-1")
    }

    const SECRET: &str = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz";

    fn random_key_b64() -> String {
        let mut k = [0u8; KEY_LEN];
        os_random(&mut k);
        STANDARD.encode(k)
    }

    /// Every 6-character window of `key`: if any shows up in `text`, key material leaked.
    fn leaks(text: &str, key: &str) -> bool {
        let chars: Vec<char> = key.chars().collect();
        chars
            .windows(6)
            .any(|w| text.contains(&w.iter().collect::<String>()))
    }

    #[test]
    fn a_sealed_credential_opens_to_the_same_plaintext() {
        let k = ring(1, 7);
        for plaintext in [
            SECRET,
            "",
            "ключ-🔑-密钥",
            "{\"access_key\":\"a\",\"secret\":\"b\"}",
        ] {
            let (version, sealed) = k.seal(plaintext, &aad(), &os_random);
            assert_eq!(version, 1);
            assert!(!sealed.contains(plaintext) || plaintext.is_empty());
            assert_eq!(k.open(version, &sealed, &aad()).as_deref(), Ok(plaintext));
        }
    }

    #[test]
    fn the_sealed_form_is_nonce_then_ciphertext_then_tag() {
        let k = ring(1, 7);
        let (_, sealed) = k.seal(SECRET, &aad(), &|b| b.fill(0xAB));
        let blob = STANDARD.decode(&sealed).expect("base64");
        assert_eq!(blob.len(), NONCE_LEN + SECRET.len() + TAG_LEN);
        assert_eq!(&blob[..NONCE_LEN], &[0xAB; NONCE_LEN]);
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let k = ring(1, 7);
        let (_, a) = k.seal(SECRET, &aad(), &os_random);
        let (_, b) = k.seal(SECRET, &aad(), &os_random);
        assert_ne!(a, b);
        assert_ne!(a[..16], b[..16], "the nonce prefix must differ");
    }

    #[test]
    fn tampering_with_any_byte_of_the_sealed_blob_fails() {
        let k = ring(1, 7);
        let (v, sealed) = k.seal(SECRET, &aad(), &os_random);
        let blob = STANDARD.decode(&sealed).expect("base64");
        for i in 0..blob.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = blob.clone();
                bad[i] ^= bit;
                let bad = STANDARD.encode(&bad);
                assert_eq!(
                    k.open(v, &bad, &aad()),
                    Err(CryptoError::Decrypt),
                    "byte {i}"
                );
            }
        }
        // Also at the text level: any changed base64 character, and appended or dropped characters.
        let text = sealed.as_bytes();
        for i in 0..text.len() {
            let mut bad = text.to_vec();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).expect("ascii");
            assert_eq!(
                k.open(v, &bad, &aad()),
                Err(CryptoError::Decrypt),
                "char {i}"
            );
        }
        assert_eq!(
            k.open(v, &format!("{sealed}AAAA"), &aad()),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            k.open(v, &format!(" {sealed}"), &aad()),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(k.open(v, "not base64!", &aad()), Err(CryptoError::Decrypt));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_or_tenant_fails() {
        let k = ring(1, 7);
        let (v, sealed) = k.seal(SECRET, &aad(), &os_random);
        let elsewhere = [
            (
                "other tenant",
                credential_aad("tenant-b", "OpenAI", "gpt-4o", "row-1"),
            ),
            (
                "other factory",
                credential_aad("tenant-a", "Azure-OpenAI", "gpt-4o", "row-1"),
            ),
            (
                "other model",
                credential_aad("tenant-a", "OpenAI", "gpt-4o-mini", "row-1"),
            ),
            (
                "other row",
                credential_aad("tenant-a", "OpenAI", "gpt-4o", "row-2"),
            ),
            ("no aad", String::new()),
            (
                "fields shifted across a boundary",
                credential_aad("tenant-aOpenAI", "", "gpt-4o", "row-1"),
            ),
        ];
        for (why, other) in elsewhere {
            assert_eq!(
                k.open(v, &sealed, &other),
                Err(CryptoError::Decrypt),
                "{why}"
            );
        }
        assert_eq!(k.open(v, &sealed, &aad()).as_deref(), Ok(SECRET));
    }

    #[test]
    fn the_aad_layout_is_pinned() {
        // Changing this layout makes every stored credential unreadable.
        assert_eq!(
            credential_aad("t", "f", "m", "r"),
            "keyward/credential/v1\0t\0f\0m\0r"
        );
    }

    #[test]
    fn opening_with_a_keyring_lacking_that_version_is_unknown_version() {
        let (v, sealed) = ring(2, 7).seal(SECRET, &aad(), &os_random);
        assert_eq!(
            ring(1, 7).open(v, &sealed, &aad()),
            Err(CryptoError::UnknownVersion(2))
        );
        assert_eq!(
            ring(2, 7).open(99, &sealed, &aad()),
            Err(CryptoError::UnknownVersion(99))
        );
    }

    #[test]
    fn opening_with_a_different_key_of_the_same_version_fails() {
        let (v, sealed) = ring(1, 7).seal(SECRET, &aad(), &os_random);
        assert_eq!(
            ring(1, 8).open(v, &sealed, &aad()),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn an_older_key_still_opens_after_rotation_and_reseal_moves_it_to_the_current_version() {
        let old = MasterKey::new(1, [1; KEY_LEN]);
        let before = Keyring::new(old.clone(), Vec::new());
        let (v1, sealed1) = before.seal(SECRET, &aad(), &os_random);
        assert_eq!(v1, 1);

        let after = Keyring::new(MasterKey::new(2, [2; KEY_LEN]), vec![old]);
        assert_eq!(after.current_version(), 2);
        assert_eq!(after.open(v1, &sealed1, &aad()).as_deref(), Ok(SECRET));

        let (v2, sealed2) = after
            .reseal(v1, &sealed1, &aad(), &os_random)
            .expect("opens")
            .expect("moved to the current key");
        assert_eq!(v2, 2);
        assert_eq!(after.open(v2, &sealed2, &aad()).as_deref(), Ok(SECRET));
        assert_eq!(after.reseal(v2, &sealed2, &aad(), &os_random), Ok(None));

        // New seals use the current key, which the pre-rotation keyring cannot open.
        let (v, fresh) = after.seal(SECRET, &aad(), &os_random);
        assert_eq!(v, 2);
        assert_eq!(
            before.open(v, &fresh, &aad()),
            Err(CryptoError::UnknownVersion(2))
        );

        // Once the old key is dropped, rows still under it report their version.
        let dropped = Keyring::new(MasterKey::new(2, [2; KEY_LEN]), Vec::new());
        assert_eq!(
            dropped.open(v1, &sealed1, &aad()),
            Err(CryptoError::UnknownVersion(1))
        );
    }

    #[test]
    fn reseal_reports_a_broken_row_instead_of_skipping_it() {
        let k = ring(1, 7);
        let (v, sealed) = k.seal(SECRET, &aad(), &os_random);
        let other = credential_aad("tenant-b", "OpenAI", "gpt-4o", "row-1");
        assert_eq!(
            k.reseal(v, &sealed, &other, &os_random),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            k.reseal(5, &sealed, &aad(), &os_random),
            Err(CryptoError::UnknownVersion(5))
        );
    }

    #[test]
    fn from_config_accepts_padded_and_unpadded_keys_and_an_older_list() {
        let cur = random_key_b64();
        let old1 = random_key_b64();
        let old2 = random_key_b64();
        let older = format!("1:{old1}, 2:{} ,", old2.trim_end_matches('='));
        let k = Keyring::from_config(cur.trim_end_matches('='), 3, &older).expect("valid");
        assert_eq!(k.current_version(), 3);
        assert_eq!(
            format!("{k:?}"),
            "Keyring { current_version: 3, older_versions: [1, 2] }"
        );

        let padded = Keyring::from_config(&format!("{cur}\n"), 3, "").expect("valid");
        let (v, sealed) = padded.seal(SECRET, &aad(), &os_random);
        assert_eq!(k.open(v, &sealed, &aad()).as_deref(), Ok(SECRET));

        let under_old = Keyring::from_config(&old2, 2, "").expect("valid");
        let (v, sealed) = under_old.seal(SECRET, &aad(), &os_random);
        assert_eq!(k.open(v, &sealed, &aad()).as_deref(), Ok(SECRET));
    }

    #[test]
    fn from_config_rejects_bad_configuration_without_echoing_key_material() {
        let good = random_key_b64();
        let short = STANDARD.encode([9u8; 16]);
        let long = STANDARD.encode([9u8; 33]);
        let bad_b64 = format!("{}!{}", &good[..10], &good[11..]);
        let cases: Vec<(&str, String, u32, String, CryptoError)> = vec![
            (
                "empty current",
                String::new(),
                1,
                String::new(),
                CryptoError::NoKey,
            ),
            (
                "blank current",
                "  \n".into(),
                1,
                String::new(),
                CryptoError::NoKey,
            ),
            (
                "too short",
                short.clone(),
                1,
                String::new(),
                CryptoError::BadKey("current key decodes to 16 bytes, expected 32".into()),
            ),
            (
                "too long",
                long.clone(),
                1,
                String::new(),
                CryptoError::BadKey("current key decodes to 33 bytes, expected 32".into()),
            ),
            (
                "bad base64",
                bad_b64.clone(),
                1,
                String::new(),
                CryptoError::BadKey("current key is not valid base64".into()),
            ),
            (
                "url-safe alphabet",
                "-_".repeat(22),
                1,
                String::new(),
                CryptoError::BadKey("current key is not valid base64".into()),
            ),
            (
                "version 0",
                good.clone(),
                0,
                String::new(),
                CryptoError::BadKey("current key version must be at least 1".into()),
            ),
            (
                "older entry without colon",
                good.clone(),
                2,
                good.clone(),
                CryptoError::BadKey("older key entry 1 is not VERSION:KEY".into()),
            ),
            (
                "older entry with non-numeric version",
                good.clone(),
                2,
                format!("v1:{good}"),
                CryptoError::BadKey(
                    "older key entry 1 has a version that is not a positive integer".into(),
                ),
            ),
            (
                "older entry with negative version",
                good.clone(),
                2,
                format!("-1:{good}"),
                CryptoError::BadKey(
                    "older key entry 1 has a version that is not a positive integer".into(),
                ),
            ),
            (
                "older entry with version 0",
                good.clone(),
                2,
                format!("0:{good}"),
                CryptoError::BadKey("older key entry 1 has version 0; versions start at 1".into()),
            ),
            (
                "older version equal to current",
                good.clone(),
                2,
                format!("2:{good}"),
                CryptoError::BadKey("key version 2 is configured more than once".into()),
            ),
            (
                "older version repeated",
                good.clone(),
                3,
                format!("1:{good},1:{good}"),
                CryptoError::BadKey("key version 1 is configured more than once".into()),
            ),
            (
                "older entry with bad base64",
                good.clone(),
                3,
                format!("1:{good},2:{bad_b64}"),
                CryptoError::BadKey("older key entry 2 (version 2) is not valid base64".into()),
            ),
            (
                "older entry of wrong length",
                good.clone(),
                3,
                format!("1:{short}"),
                CryptoError::BadKey(
                    "older key entry 1 (version 1) decodes to 16 bytes, expected 32".into(),
                ),
            ),
            (
                "older entry with empty key",
                good.clone(),
                3,
                "1:".into(),
                CryptoError::BadKey(
                    "older key entry 1 (version 1) decodes to 0 bytes, expected 32".into(),
                ),
            ),
        ];
        for (why, current, version, older, expected) in cases {
            let err = Keyring::from_config(&current, version, &older).expect_err(why);
            assert_eq!(err, expected, "{why}");
            let shown = format!("{err} {err:?}");
            for key in [&good, &short, &long, &bad_b64, &current] {
                assert!(
                    !leaks(&shown, key),
                    "{why}: error shows key material: {shown}"
                );
            }
        }
    }

    #[test]
    fn debug_output_shows_versions_but_never_key_bytes() {
        let cur = random_key_b64();
        let old = random_key_b64();
        let k = Keyring::from_config(&cur, 2, &format!("1:{old}")).expect("valid");
        let shown = format!("{k:?} {k:#?}");
        assert!(!leaks(&shown, &cur) && !leaks(&shown, &old), "{shown}");

        let mk = MasterKey::new(4, [0x5A; KEY_LEN]);
        let shown = format!("{mk:?}");
        assert_eq!(shown, "MasterKey { version: 4, key: \"<redacted>\" }");
        assert!(!shown.contains("90") && !shown.contains("5A") && !shown.contains("5a"));
    }

    #[test]
    fn a_mask_never_reveals_more_than_a_quarter_of_the_secret() {
        let cases = [
            ("", "****"),
            ("abc", "****"),
            ("abcd", "...d"),
            ("short", "...t"),
            ("elevenchars", "...rs"),
            ("twelve-chars", "...ars"),
            ("sixteen-chars-16", "...s-16"),
            ("twenty-characters-20", "t...s-20"),
            ("sk-abcdefghijklmnopqrstuvwxyz", "sk-...wxyz"),
            ("ключ-ключ-ключ", "...люч"),
            ("🔑🔑🔑abcdefg🔑🔑🔑🔑", "...🔑🔑🔑"),
            // Combining marks count as characters: cut by char, even inside a grapheme.
            (
                "e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}",
                "...\u{301}e\u{301}",
            ),
        ];
        for (secret, expected) in cases {
            let m = mask(secret);
            assert_eq!(m, expected, "{secret:?}");
            let revealed = m.chars().count() - if m == "****" { 4 } else { 3 };
            let n = secret.chars().count();
            assert!(revealed * 4 <= n, "{secret:?} reveals {revealed} of {n}");
            assert!(revealed <= 7, "{secret:?} reveals {revealed}");
        }
        // Every length, with a secret whose characters are all distinct enough to tell apart.
        let long: String = (0..200u32)
            .map(|i| char::from_u32(0x4e00 + i).unwrap())
            .collect();
        for n in 0..200 {
            let s: String = long.chars().take(n).collect();
            let m = mask(&s);
            let shown = m.replace("...", "").replace("****", "");
            assert!(shown.chars().count() * 4 <= n, "{n}: {m}");
        }
    }
}
