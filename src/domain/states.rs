//! The closed sets of keyward's state: roles and user status, a gateway key's status and what the
//! relay does over a limit, a connection's status. Parsed once at the boundary (request bodies by
//! serde, rows by the store's strict decoding); every `match` on them is exhaustive, so a new
//! value fails to compile until each place handles it. The store keeps their text (`as_str`).

/// A closed set of values that travel as text (in JSON and in D1): the enum, its serde names, every
/// value (`ALL`), its text (`as_str`) and the strict inverse (`parse`, exact spelling), declared
/// once. Matching on it is exhaustive everywhere, so a new value fails to compile until each
/// place handles it.
#[macro_export]
macro_rules! closed_set {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$v),+];

            /// The value's text, as serde writes it and the database stores it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }

            /// The value with exactly this text, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$v),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::domain::states::ClosedSet for $name {
            const NAME: &'static str = stringify!($name);
            fn text(self) -> &'static str {
                self.as_str()
            }
            fn from_text(s: &str) -> Option<Self> {
                Self::parse(s)
            }
        }
    };
}

/// What the store needs of a [`closed_set!`] type to decode a column strictly.
pub trait ClosedSet: Copy + Sized + 'static {
    /// The type's name, for decode errors.
    const NAME: &'static str;
    fn text(self) -> &'static str;
    fn from_text(s: &str) -> Option<Self>;
}

closed_set! {
    /// Whether the relay uses a gateway key.
    pub enum KeyStatus {
        Enabled = "enabled",
        Disabled = "disabled",
    }
}

closed_set! {
    /// What the relay does with a request over a gateway key's per-request limit.
    pub enum UsagePolicy {
        /// Refuse it (400 on input, the output cap lowered to the limit).
        Reject = "reject",
        /// Send it on and mark the answer with the limit it went over.
        UseAnyway = "use_anyway",
    }
}

closed_set! {
    /// A user's role inside their tenant.
    pub enum Role {
        Owner = "owner",
        Admin = "admin",
        Member = "member",
    }
}

impl Role {
    /// Owners and admins manage the tenant's providers, defaults and gateway keys.
    pub fn can_manage(self) -> bool {
        match self {
            Role::Owner | Role::Admin => true,
            Role::Member => false,
        }
    }
}

closed_set! {
    /// Whether a user may authenticate.
    pub enum UserStatus {
        Active = "active",
        Disabled = "disabled",
    }
}

closed_set! {
    /// The state of a provider connection. Every connection is validated live against its
    /// provider before it is saved, so the one state a stored connection has today is `valid`.
    pub enum ConnectionStatus {
        Valid = "valid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_parses_from_the_text_it_writes_and_serde_agrees() {
        for s in KeyStatus::ALL {
            assert_eq!(KeyStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for p in UsagePolicy::ALL {
            assert_eq!(UsagePolicy::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for u in UserStatus::ALL {
            assert_eq!(UserStatus::parse(u.as_str()), Some(u));
            assert_eq!(serde_json::to_value(u).unwrap(), u.as_str());
        }
        for c in ConnectionStatus::ALL {
            assert_eq!(ConnectionStatus::parse(c.as_str()), Some(c));
        }
        for bad in [
            "",
            "Enabled",
            "on",
            "useAnyway",
            "use-anyway",
            "Owner",
            "ACTIVE",
        ] {
            assert_eq!(KeyStatus::parse(bad), None, "{bad}");
            assert_eq!(UsagePolicy::parse(bad), None, "{bad}");
            assert_eq!(Role::parse(bad), None, "{bad}");
            assert_eq!(UserStatus::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<Role>("\"Owner\"").is_err());
    }
}
