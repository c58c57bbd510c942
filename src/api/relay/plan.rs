//! What a relay call reads beside the caller's key, decided from the request alone, so the reads
//! ride in the key's verification round trip: every relay route is one D1 request (a batch)
//! however its `model` resolves. The request is parsed once, here, before the key is checked; its
//! errors are still answered after verification, as before.

use super::{wanted_type, RResult};
use crate::api::error::ApiError;
use crate::api::http::Request;
use crate::api::routes::Operation;
use crate::api::App;
use crate::catalog::ModelType;
use crate::domain::states::KeyStatus;
use crate::relay::{Call, Endpoint};
use crate::store::ai_keys::{self, AiKey};
use crate::store::providers::{self, Connection};
use crate::store::{defaults, CallerTenant, Platform, Row, Stmt};

/// The most gateway keys `GET /v1/models` lists (one page, not counted).
pub(super) const LISTED_KEYS: i64 = 100;

/// What a relay route looks up for the model it names.
#[derive(Debug, Clone, Default, PartialEq)]
enum Lookup {
    /// Nothing beside the key (not a relay route, or a request that does not parse: its error
    /// is answered once the key is verified).
    #[default]
    Nothing,
    /// `GET /v1/models`: every connection and the first enabled gateway keys.
    Models,
    /// `default` or no model: the tenant's default of the type and the connections for it.
    Default(ModelType),
    /// `name@factory`: the connections that can provide it.
    Named,
    /// A name without `@`: the gateway key with that alias and its model's connections, or,
    /// when there is no such key, the connections that can provide the bare name.
    AliasOrBare,
    /// A name whose `@` names no factory: the connections that can provide the bare name.
    Bare,
}

/// A relay call's request, parsed before verification, and the rows read with the key.
#[derive(Default)]
pub(crate) struct Plan {
    /// The parsed call and its `model`; `None` for `GET /v1/models` and non-relay routes.
    request: Option<RResult<(Call, String)>>,
    lookup: Lookup,
    rows: Vec<Vec<Row>>,
}

/// The rows of a [`Plan`], decoded.
pub(super) enum Found {
    Models {
        connections: Vec<Connection>,
        keys: Vec<AiKey>,
    },
    /// The default's `(factory, llm_name)`, `None` when the tenant has none of the type.
    Default {
        default: Option<(String, String)>,
        connections: Vec<Connection>,
    },
    Named(Vec<Connection>),
    AliasOrBare {
        /// Boxed: a gateway key row is large beside the other variants.
        key: Option<Box<AiKey>>,
        key_connections: Vec<Connection>,
        bare: Vec<Connection>,
    },
    Bare(Vec<Connection>),
}

impl Plan {
    /// The statements to read with the caller's key for `operation`, and the plan that will
    /// take their rows ([`Plan::with_rows`]).
    pub(crate) fn prepare<P: Platform>(
        operation: &Operation,
        req: &Request,
        tenant: &CallerTenant,
    ) -> (Plan, Vec<Stmt>) {
        let endpoint = match operation {
            Operation::RelayListModels {} => {
                let stmts = vec![
                    providers::list_for_caller(tenant),
                    ai_keys::page_for_caller(tenant, KeyStatus::Enabled, LISTED_KEYS),
                ];
                let plan = Plan {
                    lookup: Lookup::Models,
                    ..Plan::default()
                };
                return (plan, stmts);
            }
            Operation::RelayChatCompletions {} => Endpoint::Chat,
            Operation::RelayEmbeddings {} => Endpoint::Embeddings,
            Operation::RelayRerank {} => Endpoint::Rerank,
            Operation::RelayTranscription {} => Endpoint::Transcription,
            Operation::RelaySpeech {} => Endpoint::Speech,
            _ => return (Plan::default(), Vec::new()),
        };
        let request = App::<P>::relay_request(req, endpoint);
        let (lookup, stmts) = match &request {
            Err(_) => (Lookup::Nothing, Vec::new()),
            Ok((_, model)) => lookup_of(model, endpoint, tenant),
        };
        let plan = Plan {
            request: Some(request),
            lookup,
            rows: Vec::new(),
        };
        (plan, stmts)
    }

    /// The plan with the rows its statements read.
    pub(crate) fn with_rows(mut self, rows: Vec<Vec<Row>>) -> Plan {
        self.rows = rows;
        self
    }

    /// The parsed call, or `None` when it was not parsed ahead (then the caller parses it).
    pub(super) fn take_request(&mut self) -> Option<RResult<(Call, String)>> {
        self.request.take()
    }

    /// The decoded rows, `None` when nothing was read ahead.
    pub(super) fn found(&mut self) -> Result<Option<Found>, ApiError> {
        let rows = std::mem::take(&mut self.rows);
        let mut rows = rows.iter();
        let mut next = || {
            rows.next()
                .ok_or_else(|| ApiError::Internal("a relay read is missing its rows".into()))
        };
        Ok(Some(match self.lookup {
            Lookup::Nothing => return Ok(None),
            Lookup::Models => Found::Models {
                connections: providers::decode(next()?)?,
                keys: ai_keys::decode(next()?)?,
            },
            Lookup::Default(_) => {
                let default = defaults::decode(next()?)?
                    .into_iter()
                    .next()
                    .map(|d| (d.factory, d.llm_name));
                Found::Default {
                    default,
                    connections: providers::decode(next()?)?,
                }
            }
            Lookup::Named => Found::Named(providers::decode(next()?)?),
            Lookup::AliasOrBare => Found::AliasOrBare {
                key: ai_keys::decode(next()?)?.into_iter().next().map(Box::new),
                key_connections: providers::decode(next()?)?,
                bare: providers::decode(next()?)?,
            },
            Lookup::Bare => Found::Bare(providers::decode(next()?)?),
        }))
    }
}

/// How `model` resolves (see [`super::App::relay_target`]) and the reads that resolving needs.
fn lookup_of(model: &str, endpoint: Endpoint, tenant: &CallerTenant) -> (Lookup, Vec<Stmt>) {
    if model.is_empty() || model == "default" {
        let want = wanted_type(endpoint);
        let stmts = vec![
            defaults::for_caller(tenant, want),
            providers::for_default_of_caller(tenant, want),
        ];
        return (Lookup::Default(want), stmts);
    }
    if !model.contains('@') {
        let stmts = vec![
            ai_keys::by_alias_for_caller(tenant, model),
            providers::for_alias_of_caller(tenant, model),
            providers::bare_for_caller(tenant, model),
        ];
        return (Lookup::AliasOrBare, stmts);
    }
    match crate::api::defaults::split_id(model) {
        (name, Some(factory)) => (
            Lookup::Named,
            vec![providers::named_for_caller(tenant, factory, name)],
        ),
        // An alias has no `@` (names::Alias), so the bare read's alias guard never holds here.
        (name, None) => (Lookup::Bare, vec![providers::bare_for_caller(tenant, name)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(model: &str) -> (Lookup, usize) {
        let t = CallerTenant::Known("t");
        let (l, stmts) = lookup_of(model, Endpoint::Chat, &t);
        (l, stmts.len())
    }

    #[test]
    fn each_kind_of_model_name_plans_the_reads_its_resolution_needs() {
        assert_eq!(kinds(""), (Lookup::Default(ModelType::Chat), 2));
        assert_eq!(kinds("default"), (Lookup::Default(ModelType::Chat), 2));
        assert_eq!(kinds("team-chat"), (Lookup::AliasOrBare, 3));
        assert_eq!(kinds("gpt-4o@OpenAI"), (Lookup::Named, 1));
        assert_eq!(
            kinds("@cf/meta/llama-3.1-8b-instruct@Builtin"),
            (Lookup::Named, 1)
        );
        assert_eq!(kinds("gpt-4o@NoSuchFactory"), (Lookup::Bare, 1));
        let t = CallerTenant::Known("t");
        let (_, stmts) = lookup_of("", Endpoint::Embeddings, &t);
        assert_eq!(stmts[0].params[4], "embedding".into());
    }
}
