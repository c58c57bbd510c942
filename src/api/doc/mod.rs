//! The OpenAPI document, generated natively from the route table and the body types: each route's
//! declaration in [`routes!`](super::routes) carries an [`OpDoc`] naming its request and answer
//! types, and every schema of a body comes from its Rust type (schemars, a native-only
//! dependency, so the Worker does not carry it). What no type carries (the error responses'
//! prose, shared parameters and headers, security schemes, and the OpenAI wire shapes the relay
//! passes on) is in `frame.json`. `tests/openapi.rs` regenerates the document and fails on any
//! difference from the committed `src/api/openapi.json`; `make openapi` rewrites it.

pub mod scalars;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use super::routes::{Auth, Method, RouteDef, ROUTES};

/// What no Rust type carries, written once.
const FRAME: &str = include_str!("frame.json");

/// A schema of a type, put into (or referenced from) a generator's definitions.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// Where a body's schema comes from: a Rust type, or a schema of the frame by name (the OpenAI
/// wire shapes the relay passes on; `tests/openapi.rs` checks every `$ref` resolves).
#[derive(Clone, Copy)]
enum Source {
    Type(SchemaFn),
    Frame(&'static str),
}

impl Source {
    fn schema(self, g: &mut SchemaGenerator) -> Value {
        match self {
            Source::Type(f) => value(f(g)),
            Source::Frame(name) => r("schemas", name),
        }
    }
}

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn name_of<T: JsonSchema>() -> String {
    T::schema_name().into_owned()
}

/// Error answers a route has beyond those its auth kind, path and body imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// 400 from a query parameter or a rule beyond the body's shape.
    BadRequest,
    /// 403 for a reason other than the role (self-service keys off, a key's own limits).
    Forbidden,
    /// 403: the caller's role may not change the tenant's models or gateway keys.
    RoleForbidden,
    /// 404 of a resource named in the body rather than the path.
    NotFound,
    /// 409: a uniqueness rule, or an Idempotency-Key reused for another request.
    Conflict,
    /// 422: the provider refused the credential.
    ProviderRejected,
    /// 502: the provider was unreachable or answered garbage.
    ProviderUnavailable,
}

impl Fail {
    fn entry(self) -> (&'static str, &'static str) {
        match self {
            Fail::BadRequest => ("400", "BadRequest"),
            Fail::Forbidden => ("403", "Forbidden"),
            Fail::RoleForbidden => ("403", "RoleForbidden"),
            Fail::NotFound => ("404", "NotFound"),
            Fail::Conflict => ("409", "Conflict"),
            Fail::ProviderRejected => ("422", "ProviderRejected"),
            Fail::ProviderUnavailable => ("502", "ProviderUnavailable"),
        }
    }
}

/// What a successful call answers.
#[derive(Clone)]
enum Answer {
    /// The `{code: 0, data, message}` envelope around `data`, named `name`.
    Envelope {
        name: String,
        data: Data,
        description: &'static str,
    },
    /// A body of its own shape (the relay, health).
    Plain {
        schema: Source,
        description: &'static str,
    },
    /// Any JSON object (this document).
    AnyObject { description: &'static str },
    /// Bytes of the media types [`OpDoc::also`] lists, no JSON (audio).
    Media { description: &'static str },
}

/// The `data` of an envelope.
#[derive(Clone)]
enum Data {
    One(SchemaFn),
    List(SchemaFn, Option<&'static str>),
    Map(SchemaFn, &'static str),
    True,
}

/// The document of one operation, beyond what its route line says.
#[derive(Clone)]
pub struct OpDoc {
    body: Option<(Source, &'static str)>,
    body_required: bool,
    message: &'static str,
    answer: Answer,
    fails: Vec<Fail>,
    params: Vec<&'static str>,
    paged: bool,
    headers: Vec<&'static str>,
    stream: Option<&'static str>,
    /// The request body's media type.
    body_media: &'static str,
    /// Further media types of the successful answer, each a string so described.
    also: Vec<(&'static str, &'static str)>,
}

/// An operation answering the envelope around a `T`.
pub fn answer<T: JsonSchema>(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Envelope {
        name: format!("{}Envelope", name_of::<T>()),
        data: Data::One(schema_of::<T>),
        description,
    })
}

/// An operation answering the envelope around a list of `T`.
pub fn list<T: JsonSchema>(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Envelope {
        name: format!("{}ListEnvelope", name_of::<T>()),
        data: Data::List(schema_of::<T>, None),
        description,
    })
}

/// An operation answering the envelope around a list of `T`, saying what the list holds.
pub fn list_of<T: JsonSchema>(description: &'static str, data: &'static str) -> OpDoc {
    OpDoc::new(Answer::Envelope {
        name: format!("{}ListEnvelope", name_of::<T>()),
        data: Data::List(schema_of::<T>, Some(data)),
        description,
    })
}

/// An operation answering the envelope around an object of `T` by name, named `name`.
pub fn map_of<T: JsonSchema>(
    name: &'static str,
    description: &'static str,
    data: &'static str,
) -> OpDoc {
    OpDoc::new(Answer::Envelope {
        name: name.into(),
        data: Data::Map(schema_of::<T>, data),
        description,
    })
}

/// An operation answering the envelope around `true`.
pub fn done(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Envelope {
        name: "TrueEnvelope".into(),
        data: Data::True,
        description,
    })
}

/// An operation answering a `T` as it is, without the envelope.
pub fn plain<T: JsonSchema>(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Plain {
        schema: Source::Type(schema_of::<T>),
        description,
    })
}

/// An operation answering some JSON object.
pub fn any_object(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::AnyObject { description })
}

impl OpDoc {
    fn new(answer: Answer) -> Self {
        OpDoc {
            body: None,
            body_required: true,
            message: "success",
            answer,
            fails: Vec::new(),
            params: Vec::new(),
            paged: false,
            headers: Vec::new(),
            stream: None,
            body_media: "application/json",
            also: Vec::new(),
        }
    }

    /// The request body, a JSON `T` (read by its `Deserialize`).
    pub fn body<T: JsonSchema>(mut self, description: &'static str) -> Self {
        self.body = Some((Source::Type(schema_of::<T>), description));
        self
    }

    /// A request body that may be left out (every field has a default).
    pub fn optional_body<T: JsonSchema>(mut self, description: &'static str) -> Self {
        self.body = Some((Source::Type(schema_of::<T>), description));
        self.body_required = false;
        self
    }

    /// The envelope's `message` on success, when it is not `success`.
    pub fn message(mut self, message: &'static str) -> Self {
        self.message = message;
        self
    }

    /// A request body whose schema is one of the frame's (the relay's OpenAI wire shapes).
    pub fn wire_body(mut self, schema: &'static str, description: &'static str) -> Self {
        self.body = Some((Source::Frame(schema), description));
        self
    }

    /// A `multipart/form-data` request body whose schema is one of the frame's.
    pub fn form_body(mut self, schema: &'static str, description: &'static str) -> Self {
        self.body = Some((Source::Frame(schema), description));
        self.body_media = "multipart/form-data";
        self
    }

    /// Another media type the successful answer may come in, its body a string so described.
    pub fn also(mut self, media: &'static str, description: &'static str) -> Self {
        self.also.push((media, description));
        self
    }

    /// Error answers beyond those the route's auth kind, path and body imply.
    pub fn fails(mut self, fails: &[Fail]) -> Self {
        self.fails.extend_from_slice(fails);
        self
    }

    /// Parameters (query or header) from the frame's `components.parameters`, in order.
    pub fn params(mut self, names: &[&'static str]) -> Self {
        self.params.extend_from_slice(names);
        self
    }

    /// Cursor paging: `limit` and `cursor`, the `Link` and `X-Next-Cursor` headers, and 400.
    pub fn paged(mut self) -> Self {
        self.paged = true;
        self
    }

    /// An `Idempotency-Key` header, replayed answers and 409 for a reused key.
    pub fn idempotent(mut self) -> Self {
        self.params.push("IdempotencyKey");
        self
    }

    /// Response headers of the successful answer: (header name, frame `components.headers` name).
    pub fn headers(mut self, names: &[&'static str]) -> Self {
        self.headers.extend_from_slice(names);
        self
    }

    /// With `stream: true` the answer is `text/event-stream`, described so.
    pub fn stream(mut self, description: &'static str) -> Self {
        self.stream = Some(description);
        self
    }
}

/// An answer of bytes in the media types [`OpDoc::also`] adds (the relay's audio).
pub fn media_answer(description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Media { description })
}

/// The relay's answers in OpenAI's wire shapes, named from the frame.
pub fn wire_answer(schema: &'static str, description: &'static str) -> OpDoc {
    OpDoc::new(Answer::Plain {
        schema: Source::Frame(schema),
        description,
    })
}

fn settings(deserialize: bool) -> SchemaGenerator {
    let s = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "#/components/schemas/".into();
        s.meta_schema = None;
    });
    if deserialize {
        s.for_deserialize().into_generator()
    } else {
        s.for_serialize().into_generator()
    }
}

fn r(kind: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{kind}/{name}") })
}

fn value(s: Schema) -> Value {
    let mut v = s.to_value();
    tidy(&mut v);
    v
}

/// A doc comment as prose: its wrapped lines joined into paragraphs. A blank line ends a
/// paragraph and a line starting with `- ` is a list item, as in Markdown.
fn paragraphs(doc: &str) -> String {
    let mut out = String::new();
    for line in doc.lines().map(str::trim) {
        if out.is_empty() || out.ends_with('\n') {
            out.push_str(line);
        } else if line.is_empty() {
            out.push_str("\n\n");
        } else if line.starts_with("- ") {
            out.push('\n');
            out.push_str(line);
        } else {
            out.push(' ');
            out.push_str(line);
        }
    }
    out
}

/// What the derive leaves for the document to say: every object of a body is closed (the views
/// never carry other fields and the requests refuse them), and an absent optional field is not
/// documented as defaulting to `null`.
fn tidy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            if m.get("default") == Some(&Value::Null) {
                m.remove("default");
            }
            if let Some(Value::String(d)) = m.get_mut("description") {
                *d = paragraphs(d);
            }
            m.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// The OpenAPI document of every route, as `src/api/openapi.json` holds it.
pub fn document() -> Value {
    let mut doc: Value = serde_json::from_str(FRAME).expect("frame.json is valid JSON");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let mut requests = settings(true);
    let mut answers = settings(false);
    let mut envelopes: Vec<(String, Value)> = Vec::new();
    // The error bodies are types too.
    answers.subschema_for::<super::error::ErrorEnvelope>();
    answers.subschema_for::<crate::relay::ErrorBody<'static>>();

    let mut paths = Map::new();
    for def in ROUTES {
        let op = operation(def, &mut requests, &mut answers, &mut envelopes);
        let item = paths
            .entry(def.path)
            .or_insert_with(|| path_item(def))
            .as_object_mut()
            .expect("a path item is an object");
        item.insert(method_key(def.method).into(), op);
    }
    // The document's own order: the paths before the components they refer to.
    let Value::Object(mut frame) = doc else {
        unreachable!("frame.json is an object")
    };
    let components = frame
        .remove("components")
        .expect("frame.json has components");
    frame.insert("paths".into(), Value::Object(paths));
    frame.insert("webhooks".into(), webhooks(&mut answers));
    frame.insert("components".into(), components);
    let mut doc = Value::Object(frame);

    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("frame.json has components.schemas");
    for (name, s) in requests
        .take_definitions(true)
        .into_iter()
        .chain(answers.take_definitions(true))
        .chain(envelopes)
    {
        let mut s = s;
        tidy(&mut s);
        match schemas.get(&name) {
            Some(old) if *old != s => panic!(
                "two schemas named {name}:\n{old}\n{s}\n(a type read and written differently needs two names)"
            ),
            _ => {
                schemas.insert(name, s);
            }
        }
    }
    doc
}

/// What keyward posts to a tenant's webhook (OpenAPI's `webhooks`): the event, its headers.
fn webhooks(answers: &mut SchemaGenerator) -> Value {
    use super::webhooks::{
        Event, BUDGET_EVENT, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER,
    };
    let event = answers.subschema_for::<Event<'static>>();
    let header = |name: &str, description: &str| {
        json!({
            "name": name, "in": "header", "required": true,
            "description": description, "schema": {"type": "string"}
        })
    };
    json!({
        "budgetAlert": {
            "post": {
                "operationId": "budgetAlert",
                "tags": ["Alerts"],
                "summary": "A budget reached 80% or 100% of itself in its period",
                "description": paragraphs(&format!(
                    "Posted to the tenant's webhook once per threshold of a budget per period                      (`{BUDGET_EVENT}`), and by `POST /api/v1/tenant/webhook/test`                      (`webhook.test`). A receiver that does not answer 2xx within 10 s is tried                      again after `WEBHOOK_RETRY_SECONDS` (30 by default), then twice, four and                      eight times that, five attempts in all; every retry carries the same event                      id. Redirects are not followed."
                )),
                "parameters": [
                    header(SIGNATURE_HEADER, "`t=<Unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under the webhook's secret>`. Compare in constant time; refuse a `t` more than a few minutes from now."),
                    header(EVENT_ID_HEADER, "The event's id, as in the body: the same on every retry."),
                    header(EVENT_TYPE_HEADER, "The event's type, as in the body."),
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": event}}
                },
                "responses": {
                    "2XX": {"description": "Received; anything else (or no answer) is retried."}
                }
            }
        }
    })
}

fn method_key(m: Method) -> &'static str {
    match m {
        Method::Get => "get",
        Method::Post => "post",
        Method::Put => "put",
        Method::Patch => "patch",
        Method::Delete => "delete",
    }
}

/// A path item with the path's own parameters (its captures, from the frame by name).
fn path_item(def: &RouteDef) -> Value {
    let params: Vec<Value> = def
        .captures
        .iter()
        .map(|c| r("parameters", capture_param(def.path, c)))
        .collect();
    if params.is_empty() {
        json!({})
    } else {
        json!({ "parameters": params })
    }
}

fn capture_param(path: &str, capture: &str) -> &'static str {
    match capture {
        "tenant_id" => "TenantIdPath",
        "username" => "UsernamePath",
        "id" if path.starts_with("/api/v1/ai_keys/") => "AiKeyIdPath",
        "id" => "KeyIdPath",
        other => panic!("{path}: no parameter documents the capture {other}"),
    }
}

fn operation(
    def: &RouteDef,
    requests: &mut SchemaGenerator,
    answers: &mut SchemaGenerator,
    envelopes: &mut Vec<(String, Value)>,
) -> Value {
    let d = (def.doc)();
    let relay = def.auth == Auth::RelayKey;
    let mut op = Map::new();
    op.insert("operationId".into(), json!(def.operation_id));
    op.insert("summary".into(), json!(def.summary));
    let description = paragraphs(&def.description.join("\n"));
    if !description.is_empty() {
        op.insert("description".into(), json!(description));
    }
    op.insert("tags".into(), json!([def.tag]));
    op.insert(
        "security".into(),
        match def.auth {
            Auth::Public => json!([]),
            Auth::Admin => json!([{ "adminToken": [] }]),
            Auth::Key | Auth::RelayKey => json!([{ "userKey": [] }, { "userBasic": [] }]),
        },
    );
    let mut params: Vec<Value> = d.params.iter().map(|p| r("parameters", p)).collect();
    if d.paged {
        params.push(r("parameters", "PageLimit"));
        params.push(r("parameters", "PageCursor"));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some((schema, description)) = d.body {
        op.insert(
            "requestBody".into(),
            json!({
                "required": d.body_required,
                "description": description,
                "content": { d.body_media: { "schema": schema.schema(requests) } }
            }),
        );
    }

    let mut ok = Map::new();
    let content = match &d.answer {
        Answer::Envelope {
            name,
            data,
            description,
        } => {
            ok.insert("description".into(), json!(description));
            let data = match data {
                Data::One(s) => value(s(answers)),
                Data::List(s, what) => {
                    let mut v = json!({ "type": "array", "items": value(s(answers)) });
                    if let Some(what) = what {
                        v["description"] = json!(what);
                    }
                    v
                }
                Data::Map(s, what) => json!({
                    "type": "object",
                    "description": what,
                    "additionalProperties": value(s(answers)),
                }),
                Data::True => json!({ "type": "boolean", "const": true }),
            };
            let envelope = json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["code", "data", "message"],
                "properties": {
                    "code": { "type": "integer", "const": 0 },
                    "data": data,
                    "message": { "type": "string", "description": format!("`{}`", d.message) }
                }
            });
            if !envelopes.iter().any(|(n, _)| n == name) {
                envelopes.push((name.clone(), envelope));
            }
            r("schemas", name.as_str())
        }
        Answer::Plain {
            schema,
            description,
        } => {
            ok.insert("description".into(), json!(description));
            schema.schema(answers)
        }
        Answer::AnyObject { description } => {
            ok.insert("description".into(), json!(description));
            json!({ "type": "object" })
        }
        Answer::Media { description } => {
            ok.insert("description".into(), json!(description));
            Value::Null
        }
    };
    let mut headers = Map::new();
    if d.paged {
        headers.insert("Link".into(), r("headers", "NextLink"));
        headers.insert("X-Next-Cursor".into(), r("headers", "NextCursor"));
    }
    for h in &d.headers {
        headers.insert(header_name(h).into(), r("headers", h));
    }
    if !headers.is_empty() {
        ok.insert("headers".into(), Value::Object(headers));
    }
    let mut types = Map::new();
    if !content.is_null() {
        types.insert("application/json".into(), json!({ "schema": content }));
    }
    for (media, description) in &d.also {
        types.insert(
            (*media).into(),
            json!({ "schema": { "type": "string", "description": description } }),
        );
    }
    if let Some(s) = d.stream {
        types.insert(
            "text/event-stream".into(),
            json!({ "schema": { "type": "string", "description": s } }),
        );
    }
    ok.insert("content".into(), Value::Object(types));

    let mut responses = Map::new();
    responses.insert("200".into(), Value::Object(ok));
    for (status, name) in error_responses(def, &d, relay) {
        responses.insert(status.into(), r("responses", name));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn header_name(component: &str) -> &'static str {
    match component {
        "InputTokensEstimate" => "x-keyward-input-tokens-estimate",
        "LimitExceeded" => "x-keyward-limit-exceeded",
        other => panic!("no header component {other}"),
    }
}

/// Every error answer of an operation, by status: what its auth kind, path and body imply,
/// then its own.
fn error_responses(def: &RouteDef, d: &OpDoc, relay: bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    let has_body = d.body.is_some();
    if relay {
        let post = def.method == Method::Post;
        if post {
            out.push(("400", "RelayBadRequest"));
        }
        out.push(("401", "RelayUnauthorized"));
        if post {
            out.push(("403", "RelayForbidden"));
            out.push(("404", "RelayNotFound"));
        }
        out.push(("405", "RelayMethodNotAllowed"));
        if post {
            out.push(("413", "RelayPayloadTooLarge"));
            out.push(("415", "RelayUnsupportedMediaType"));
        }
        out.push(("429", "RelayTooManyRequests"));
        if post {
            out.push(("4XX", "RelayUpstreamClientError"));
        }
        out.push(("500", "RelayInternalError"));
        if post {
            out.push(("502", "RelayBadGateway"));
            out.push(("504", "RelayGatewayTimeout"));
        }
        out.push(("508", "RelayLoopDetected"));
        return out;
    }
    let public = def.auth == Auth::Public;
    if has_body || d.paged || d.fails.contains(&Fail::BadRequest) {
        out.push(("400", "BadRequest"));
    }
    if !public {
        out.push(("401", "Unauthorized"));
    }
    if def.auth == Auth::Admin || d.fails.contains(&Fail::Forbidden) {
        out.push(("403", "Forbidden"));
    } else if d.fails.contains(&Fail::RoleForbidden) {
        out.push(("403", "RoleForbidden"));
    }
    if !def.captures.is_empty() || d.fails.contains(&Fail::NotFound) {
        out.push(("404", "NotFound"));
    }
    out.push(("405", "MethodNotAllowed"));
    if d.fails.contains(&Fail::Conflict) || d.params.contains(&"IdempotencyKey") {
        out.push(("409", "Conflict"));
    }
    if has_body {
        out.push(("413", "PayloadTooLarge"));
        out.push(("415", "UnsupportedMediaType"));
    }
    if d.fails.contains(&Fail::ProviderRejected) {
        out.push(Fail::ProviderRejected.entry());
    }
    if !public {
        out.push(("429", "TooManyRequests"));
        out.push(("500", "InternalError"));
    }
    if d.fails.contains(&Fail::ProviderUnavailable) {
        out.push(Fail::ProviderUnavailable.entry());
    }
    out.push(("508", "LoopDetected"));
    out
}

/// The document as `src/api/openapi.json` stores it: two-space indents, a final newline.
pub fn rendered() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("a document serializes");
    s.push('\n');
    s
}
