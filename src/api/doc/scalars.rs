//! The scalars the document names: ids, names, hints and limits that travel as plain strings and
//! integers but have a shape of their own (a pattern, a length, a range). Fields refer to them
//! with `schemars(with = ...)`; the request validators in `domain::names` and the handlers enforce
//! the same rules, and `tests/answers.rs` checks real answers against these patterns.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

macro_rules! scalar {
    ($(#[doc = $d:literal])* $name:ident $inline:literal $schema:tt) => {
        $(#[doc = $d])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                $inline
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

scalar! {
    TenantId false {
        "type": "string",
        "pattern": "^[0-9a-f]{32}$",
        "description": "A tenant id: 32 lowercase hex characters.",
        "examples": [
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        ]
    }
}

scalar! {
    KeyId false {
        "type": "string",
        "pattern": "^[0-9a-f]{32}$",
        "description": "A user API key's id: 32 lowercase hex characters."
    }
}

scalar! {
    Username false {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": "^[A-Za-z0-9._@+-]+$",
        "description": "1 to 128 letters, digits and . _ @ + - (e-mail addresses fit). Compared without regard to letter case: `Alice@Example.com` and `alice@example.com` are one user, shown with the spelling it was created with.",
        "examples": [
            "alice@example.com"
        ]
    }
}

scalar! {
    AccessKey false {
        "type": "string",
        "pattern": "^kwa_[0-9A-Za-z]{16}$",
        "description": "The public half of a key: `kwa_` and 16 base62 characters."
    }
}

scalar! {
    SecretHint false {
        "type": "string",
        "pattern": "^kws_\\.\\.\\.[0-9A-Za-z]{4}$",
        "description": "The secret's prefix and its last four characters, e.g. `kws_...a1B2`."
    }
}

scalar! {
    KeyDescription false {
        "type": "string",
        "minLength": 0,
        "maxLength": 256,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        "description": "Free text of at most 256 characters without control characters."
    }
}

scalar! {
    AiKeyId false {
        "type": "string",
        "pattern": "^[0-9a-f]{32}$",
        "description": "A gateway key's id: 32 lowercase hex characters."
    }
}

scalar! {
    AiKeyAlias false {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9._-]{1,64}$",
        "description": "The key's name, unique within the tenant: 1 to 64 ASCII letters, digits and `. _ -`. The relay's `model` field names a gateway key by its alias.",
        "examples": [
            "prod-gpt4o"
        ]
    }
}

scalar! {
    AiKeyProvider false {
        "type": "string",
        "minLength": 1,
        "description": "The provider: a factory exactly as `GET /api/v1/factories` names it (case-sensitive), except `Builtin` (its models take no key). Anything else is a 400.",
        "examples": [
            "OpenAI"
        ]
    }
}

scalar! {
    AiKeyModel false {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        "description": "The model the key calls, as the provider names it: 1 to 128 characters, not only whitespace, no control characters. It must be one the relay can reach: a catalog model of the provider or a model added for the tenant with `POST /api/v1/models`. For factories reached only through the tenant's connection (Azure-OpenAI (the deployment), OpenAI-API-Compatible, Ollama, LocalAI, Xinference, VertexAI) it must have been added. Otherwise a 400.",
        "examples": [
            "gpt-4o"
        ]
    }
}

scalar! {
    ProviderKey true {
        "type": "string",
        "minLength": 8,
        "maxLength": 16384,
        "description": "A provider key: 8 characters to 16 KiB, no control characters. Encrypted at rest; never returned."
    }
}

scalar! {
    TokenLimit false {
        "type": "integer",
        "minimum": 0,
        "maximum": 10000000,
        "description": "Tokens per request, 0 to 10000000; 0 means unlimited."
    }
}

scalar! {
    /// An RFC 3339 time in UTC, written inline where a field holds one.
    DateTime true {
        "type": "string",
        "format": "date-time"
    }
}
