//! Validated names and enumerations. Each constructor is the only validation; a value of these types
//! is known good everywhere else.

use serde::{Deserialize, Serialize};

/// Why a value was refused, phrased for a client: the caller prefixes the field name.
pub type Invalid = String;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A username: 1..=128 characters of letters, digits and `._@+-` (e-mail addresses fit).
/// Usernames are compared without regard to letter case (`Alice@Example.com` is
/// `alice@example.com`); the database folds them with SQLite's `lower()`, which folds ASCII only,
/// and that is complete because a username is ASCII (a test pins it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MAX: usize = 128;
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
        {
            return Err("may contain only letters, digits and . _ @ + -".into());
        }
        Ok(Username(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text with a length bound and no control characters (names, descriptions).
pub fn text(s: &str, min: usize, max: usize) -> Result<String, Invalid> {
    let n = s.chars().count();
    if n < min || s.trim().chars().count() < min {
        return Err("must not be empty".into());
    }
    if n > max {
        return Err(format!("must be at most {max} characters"));
    }
    if has_control(s) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

/// A tenant's name: 1..=128 printable characters.
pub fn tenant_name(s: &str) -> Result<String, Invalid> {
    text(s, 1, 128)
}

/// A key's description: 0..=256 printable characters.
pub fn description(s: &str) -> Result<String, Invalid> {
    text(s, 0, 256)
}

/// A user's role inside their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
    /// Owners and admins manage the tenant's providers, defaults and gateway keys.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Whether a user may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_accept_emails_and_refuse_the_rest() {
        assert!(Username::parse("alice@example.com").is_ok());
        assert!(Username::parse("bob_1.x+y-z").is_ok());
        for (why, bad) in [
            ("empty", String::new()),
            ("space", "a b".to_owned()),
            ("slash", "a/b".to_owned()),
            ("sql", "a';--".to_owned()),
            ("percent", "a%".to_owned()),
            ("unicode look-alike", "\u{0430}lice".to_owned()),
            ("too long", "a".repeat(129)),
        ] {
            assert!(Username::parse(&bad).is_err(), "{why}");
        }
    }

    /// The database folds usernames with SQLite's `lower()`, which knows ASCII letters only. That
    /// is a complete case fold only while every character a username may hold is ASCII; allowing
    /// any other must come with another fold (and a migration), and this test says so.
    #[test]
    fn every_character_a_username_may_hold_is_ascii_so_lower_folds_it_completely() {
        let accepted: Vec<char> = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .filter(|c| Username::parse(&c.to_string()).is_ok())
            .collect();
        assert!(accepted.len() > 60, "letters, digits and ._@+- at least");
        let beyond: Vec<char> = accepted.iter().copied().filter(|c| !c.is_ascii()).collect();
        assert!(
            beyond.is_empty(),
            "non-ASCII username characters: {beyond:?}"
        );
    }

    #[test]
    fn text_fields_bound_length_and_refuse_control_characters() {
        assert!(tenant_name("Acme, Inc. 'quoted' %_").is_ok());
        assert!(tenant_name("").is_err());
        assert!(tenant_name("   ").is_err());
        assert!(tenant_name(&"x".repeat(129)).is_err());
        assert!(tenant_name("a\nb").is_err());
        assert!(description("").is_ok());
        assert!(description(&"é".repeat(256)).is_ok());
        assert!(description(&"é".repeat(257)).is_err());
    }
}
