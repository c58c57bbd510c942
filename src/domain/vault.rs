//! The one place provider credentials are sealed and opened: connections' credentials and
//! gateway keys' provider keys go through [`Vault`], and [`Slot::aad`] alone decides what each
//! kind of row binds its ciphertext to.
//!
//! The layouts are those rows were sealed with before this module existed, so every stored
//! ciphertext keeps opening (the tests pin both against [`credential_aad`] and a fixed
//! ciphertext).

use super::crypto::{credential_aad, CryptoError, Keyring};

/// The factory slot of a gateway key's associated data. No catalog factory has this name, so a
/// gateway key's data can never equal a connection's.
pub const GATEWAY_KEY_KIND: &str = "ai_key";
/// The factory slot of a tenant webhook's signing secret (no catalog factory has this name).
pub const WEBHOOK_KIND: &str = "webhook";

/// The row a credential belongs to, naming everything its ciphertext is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// A provider connection's credential (the JSON of its secrets), bound to its tenant,
    /// factory, model and row: a moved or renamed row does not open.
    Connection {
        tenant_id: &'a str,
        factory: &'a str,
        llm_name: &'a str,
        id: &'a str,
    },
    /// A gateway key's provider key, bound to its tenant, row and the endpoint it was sealed for
    /// (in the model slot), so it opens only for that endpoint. Rows from before keys were bound
    /// have no endpoint and were sealed with `""` there; no endpoint is ever empty (a base URL
    /// always names a host), so the two layouts cannot meet.
    GatewayKey {
        tenant_id: &'a str,
        id: &'a str,
        endpoint: Option<&'a str>,
    },
    /// A tenant webhook's signing secret, bound to its tenant (a tenant has at most one).
    Webhook { tenant_id: &'a str },
}

impl Slot<'_> {
    /// The associated data for this row.
    pub fn aad(&self) -> String {
        match *self {
            Slot::Connection {
                tenant_id,
                factory,
                llm_name,
                id,
            } => credential_aad(tenant_id, factory, llm_name, id),
            Slot::GatewayKey {
                tenant_id,
                id,
                endpoint,
            } => credential_aad(tenant_id, GATEWAY_KEY_KIND, endpoint.unwrap_or(""), id),
            Slot::Webhook { tenant_id } => credential_aad(tenant_id, WEBHOOK_KIND, "", tenant_id),
        }
    }
}

/// Why a credential could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// The deployment has no `KEYWARD_ENCRYPTION_KEY`.
    NotConfigured,
    /// The stored key version is not a positive 32-bit number (a damaged row).
    BadVersion(i64),
    /// Tampered, moved, or sealed with a master key this deployment no longer holds.
    Open(CryptoError),
}

impl std::fmt::Display for VaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultError::NotConfigured => f.write_str("KEYWARD_ENCRYPTION_KEY is not configured"),
            VaultError::BadVersion(v) => write!(f, "key version {v} is not a valid version"),
            VaultError::Open(e) => e.fmt(f),
        }
    }
}

thread_local! {
    /// Credentials this thread (an isolate has one) tried to open, for [`opened_on_this_thread`].
    static OPENED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times [`Vault::open`] ran on this thread: the tests' view of how often a credential
/// is decrypted (the relay keeps what it opened, api/opened.rs).
pub fn opened_on_this_thread() -> u64 {
    OPENED.with(std::cell::Cell::get)
}

/// Seals and opens credentials with the deployment's keyring (if it has one).
#[derive(Debug, Clone, Copy)]
pub struct Vault<'k> {
    keyring: Option<&'k Keyring>,
}

impl<'k> Vault<'k> {
    pub fn new(keyring: Option<&'k Keyring>) -> Self {
        Vault { keyring }
    }

    fn keyring(&self) -> Result<&'k Keyring, VaultError> {
        self.keyring.ok_or(VaultError::NotConfigured)
    }

    /// Seal `plaintext` for `slot` under the current master key: `(key_version, sealed)` as the
    /// row stores them.
    pub fn seal(
        &self,
        slot: Slot<'_>,
        plaintext: &str,
        fill_random: &dyn Fn(&mut [u8]),
    ) -> Result<(i64, String), VaultError> {
        let (v, sealed) = self.keyring()?.seal(plaintext, &slot.aad(), fill_random);
        Ok((i64::from(v), sealed))
    }

    /// Open what `slot`'s row stores (`key_version`, `sealed`).
    pub fn open(
        &self,
        slot: Slot<'_>,
        key_version: i64,
        sealed: &str,
    ) -> Result<String, VaultError> {
        OPENED.with(|n| n.set(n.get() + 1));
        let keyring = self.keyring()?;
        let version =
            u32::try_from(key_version).map_err(|_| VaultError::BadVersion(key_version))?;
        keyring
            .open(version, sealed, &slot.aad())
            .map_err(VaultError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::crypto::MasterKey;

    fn keyring() -> Keyring {
        Keyring::new(MasterKey::new(1, [7u8; 32]), vec![])
    }
    fn zeros(b: &mut [u8]) {
        b.fill(0);
    }

    const CONN: Slot<'static> = Slot::Connection {
        tenant_id: "t1",
        factory: "OpenAI",
        llm_name: "gpt-4o",
        id: "c1",
    };

    #[test]
    fn each_kind_of_row_keeps_the_associated_data_it_was_sealed_with() {
        assert_eq!(CONN.aad(), credential_aad("t1", "OpenAI", "gpt-4o", "c1"));
        let bound = Slot::GatewayKey {
            tenant_id: "t1",
            id: "k1",
            endpoint: Some("https://api.openai.com/v1"),
        };
        assert_eq!(
            bound.aad(),
            "keyward/credential/v1\0t1\0ai_key\0https://api.openai.com/v1\0k1"
        );
        let unbound = Slot::GatewayKey {
            tenant_id: "t1",
            id: "k1",
            endpoint: None,
        };
        assert_eq!(unbound.aad(), "keyward/credential/v1\0t1\0ai_key\0\0k1");
    }

    #[test]
    fn a_credential_sealed_before_the_vault_still_opens_through_it() {
        // Sealed the old way, straight through the keyring with the hand-built data.
        let ring = keyring();
        let aad = credential_aad("t1", "ai_key", "https://api.openai.com/v1", "k1");
        let (v, sealed) = ring.seal("sk-old", &aad, &zeros);
        let slot = Slot::GatewayKey {
            tenant_id: "t1",
            id: "k1",
            endpoint: Some("https://api.openai.com/v1"),
        };
        let vault = Vault::new(Some(&ring));
        assert_eq!(
            vault.open(slot, i64::from(v), &sealed).as_deref(),
            Ok("sk-old")
        );
    }

    #[test]
    fn a_credential_opens_only_in_its_own_slot() {
        let ring = keyring();
        let vault = Vault::new(Some(&ring));
        let (v, sealed) = vault.seal(CONN, "{\"api_key\":\"sk\"}", &zeros).unwrap();
        assert!(vault.open(CONN, v, &sealed).is_ok());
        let moved = Slot::Connection {
            tenant_id: "t2",
            factory: "OpenAI",
            llm_name: "gpt-4o",
            id: "c1",
        };
        assert_eq!(
            vault.open(moved, v, &sealed),
            Err(VaultError::Open(CryptoError::Decrypt))
        );
        assert_eq!(
            vault.open(CONN, -1, &sealed),
            Err(VaultError::BadVersion(-1))
        );
        assert_eq!(
            Vault::new(None).open(CONN, v, &sealed),
            Err(VaultError::NotConfigured)
        );
    }
}
