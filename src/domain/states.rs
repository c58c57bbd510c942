//! The closed sets of a gateway key's state: its status and what the relay does over a limit.
//! Parsed once at the API boundary; every `match` on them is exhaustive, so a new value fails to
//! compile until each place handles it. The store keeps their text (`as_str`).

use serde::{Deserialize, Serialize};

/// Whether the relay uses a gateway key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Enabled,
    Disabled,
}

impl KeyStatus {
    pub const ALL: [KeyStatus; 2] = [KeyStatus::Enabled, KeyStatus::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Enabled => "enabled",
            KeyStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        KeyStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What the relay does with a request over a gateway key's per-request limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsagePolicy {
    /// Refuse it (400 on input, the output cap lowered to the limit).
    Reject,
    /// Send it on and mark the answer with the limit it went over.
    UseAnyway,
}

impl UsagePolicy {
    pub const ALL: [UsagePolicy; 2] = [UsagePolicy::Reject, UsagePolicy::UseAnyway];

    pub fn as_str(self) -> &'static str {
        match self {
            UsagePolicy::Reject => "reject",
            UsagePolicy::UseAnyway => "use_anyway",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        UsagePolicy::ALL.into_iter().find(|v| v.as_str() == s)
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
        for bad in ["", "Enabled", "on", "useAnyway", "use-anyway"] {
            assert_eq!(KeyStatus::parse(bad), None, "{bad}");
            assert_eq!(UsagePolicy::parse(bad), None, "{bad}");
        }
    }
}
