//! Validated names and enumerations. Each constructor is the only validation; a value of these types
//! is known good everywhere else.

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
fn text(s: &str, min: usize, max: usize) -> Result<String, Invalid> {
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

/// A validated string newtype: `parse` is its only constructor, and the value inside can only be
/// read (or taken out with `into_string`).
macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

newtype!(
    /// A tenant's name: 1..=128 printable characters.
    TenantName
);
impl TenantName {
    pub const MAX: usize = 128;
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        text(s, 1, Self::MAX).map(TenantName)
    }
}

newtype!(
    /// A user key's description: 0..=256 printable characters.
    Description
);
impl Description {
    pub const MAX: usize = 256;
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        text(s, 0, Self::MAX).map(Description)
    }
}

newtype!(
    /// A gateway key's alias, which clients send as the `model` of a relay call: 1..=64 ASCII
    /// letters, digits and `._-` (nothing a URL, a header or a log line needs to escape).
    Alias
);
impl Alias {
    pub const MAX: usize = 64;
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.chars().count() > Self::MAX {
            return Err(format!("must be 1 to {} characters", Self::MAX));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err("may contain only letters, digits and . _ -".into());
        }
        Ok(Alias(s.to_owned()))
    }
}

newtype!(
    /// A provider's model name, as a connection (`llm_name`) or a gateway key (`model`) names it:
    /// 1..=128 characters, not blank, no control characters. Providers name models freely
    /// (`gpt-4o`, `models/gemini-1.5-pro`, `llama3.2:latest`), so nothing more is required.
    ModelName
);
impl ModelName {
    pub const MAX: usize = 128;
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.trim().is_empty() || s.chars().count() > Self::MAX {
            return Err(format!("must be 1 to {} characters", Self::MAX));
        }
        if has_control(s) {
            return Err("must not contain control characters".into());
        }
        Ok(ModelName(s.to_owned()))
    }
}

newtype!(
    /// A URL a tenant gives (a provider's base URL, an endpoint, a token URI): http or https
    /// only, a host, no userinfo, no query, no fragment, at most 2048 characters. Kept without a
    /// trailing slash so paths can be appended. Where it may point (public addresses only, not
    /// this deployment) is the egress policy's decision, at each call.
    BaseUrl
);
impl BaseUrl {
    pub const MAX: usize = 2048;
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.len() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must use http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if url.fragment().is_some() || url.query().is_some() {
            return Err("must not contain a query or fragment".into());
        }
        Ok(BaseUrl(url.as_str().trim_end_matches('/').to_owned()))
    }
}

pub use super::states::{Role, UserStatus};

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
        assert!(TenantName::parse("Acme, Inc. 'quoted' %_").is_ok());
        assert!(TenantName::parse("").is_err());
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse(&"x".repeat(129)).is_err());
        assert!(TenantName::parse("a\nb").is_err());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"é".repeat(256)).is_ok());
        assert!(Description::parse(&"é".repeat(257)).is_err());
    }

    #[test]
    fn a_model_name_has_one_rule_for_connections_and_gateway_keys() {
        for ok in [
            "gpt-4o",
            "models/gemini-1.5-pro",
            "llama3.2:latest",
            &"é".repeat(128),
        ] {
            assert_eq!(
                ModelName::parse(ok).map(ModelName::into_string).as_deref(),
                Ok(ok)
            );
        }
        assert_eq!(
            ModelName::parse(" ").unwrap_err(),
            "must be 1 to 128 characters"
        );
        assert_eq!(
            ModelName::parse(&"x".repeat(129)).unwrap_err(),
            "must be 1 to 128 characters"
        );
        assert_eq!(
            ModelName::parse("a\tb").unwrap_err(),
            "must not contain control characters"
        );
    }

    #[test]
    fn urls_are_http_with_a_host_and_nothing_hidden() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:1/v1/").unwrap().as_str(),
            "http://127.0.0.1:1/v1"
        );
        for (bad, why) in [
            ("ftp://h/x", "must use http or https"),
            ("https://u:p@h/", "must not contain a user name or password"),
            ("https://h/?a=1", "must not contain a query or fragment"),
            ("https://h/#f", "must not contain a query or fragment"),
        ] {
            assert_eq!(BaseUrl::parse(bad).unwrap_err(), why, "{bad}");
        }
        assert!(BaseUrl::parse(&format!("https://h/{}", "x".repeat(2048))).is_err());
    }
}
