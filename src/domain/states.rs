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
    (
        $(#[doc = $d:literal])*
        $(#[schema = $schema:literal])?
        pub enum $name:ident { $($(#[doc = $vd:literal])* $v:ident = $s:literal),+ $(,)? }
    ) => {
        $(#[doc = $d])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[doc = $vd])* #[serde(rename = $s)] $v),+
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

        impl $crate::domain::states::ClosedSet for $name {
            const NAME: &'static str = stringify!($name);
            fn text(self) -> &'static str {
                self.as_str()
            }
            fn from_text(s: &str) -> Option<Self> {
                Self::parse(s)
            }
        }

        // The document's schema: the values and the type's own doc comment, one paragraph.
        #[cfg(not(target_arch = "wasm32"))]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                [stringify!($name) $(, $schema)?][[stringify!($name) $(, $schema)?].len() - 1].into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let description = [$($d),*].map(str::trim).join(" ");
                schemars::json_schema!({
                    "type": "string",
                    "enum": [$($s),+],
                    "description": description,
                })
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
    /// Whether the relay accepts the key. A disabled key is refused with 403 `key_disabled`; the
    /// cron disables keys whose `expire_time` has passed.
    #[schema = "AiKeyStatus"]
    pub enum KeyStatus {
        Enabled = "enabled",
        Disabled = "disabled",
    }
}

closed_set! {
    /// What the relay does with a request over a limit: `reject` refuses it (400
    /// `input_limit_exceeded` / `output_limit_exceeded`); `use_anyway` forwards it (an output cap
    /// lowered to the limit) and marks the answer with `x-keyward-limit-exceeded`.
    #[schema = "UsageLimitPolicy"]
    pub enum UsagePolicy {
        /// Refuse it (400 on input, the output cap lowered to the limit).
        Reject = "reject",
        /// Send it on and mark the answer with the limit it went over.
        UseAnyway = "use_anyway",
    }
}

closed_set! {
    /// The period a token budget counts over, in UTC: a calendar day, an ISO week (from Monday
    /// 00:00), a calendar month, or `total` (no reset).
    #[schema = "BudgetPeriod"]
    pub enum BudgetPeriod {
        Day = "day",
        Week = "week",
        Month = "month",
        Total = "total",
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
    /// Whether the user's keys work; a disabled user's keys stop working at once.
    pub enum UserStatus {
        Active = "active",
        Disabled = "disabled",
    }
}

closed_set! {
    /// The connection's state. Every connection is validated live against its provider before
    /// it is saved, so the one state a stored connection has is `valid`.
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
