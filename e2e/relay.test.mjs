// End to end: the OpenAI-compatible relay (`/v1/...`) against `wrangler dev` (real workerd, local D1
// and KV) and the provider stand-in (examples/provider_standin) on loopback. One worker and one
// stand-in for the whole file; tests run in order and share them (the setup test connects the models
// and creates the gateway keys the others use). Mirrors tests/relay.rs end to end, adds the official
// OpenAI Python SDK (e2e/openai_sdk.py) as a client, and ends with the secret-leak check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { freePort, PYTHON, ROOT, runPython, STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

const w = useWorker();
const standin = useStandIn();

const GOOD = STANDIN_GOOD_KEY;
// Configured without validation to make the stand-in refuse it; must never be seen again either.
const BAD = 'sk-bad-credential-1234567890';
const CREDENTIALS = [GOOD, BAD];
const COMPAT = 'OpenAI-API-Compatible';
const CHAT = 'standin-chat';
const CHAT_ID = `${CHAT}@${COMPAT}`;
const EMBED = 'standin-embed';
const EMBED_ID = `${EMBED}@${COMPAT}`;
const CLAUDE_ID = 'claude-sonnet-4-5@Anthropic';
const SDK_SCRIPT = join(ROOT, 'e2e/openai_sdk.py');
const SDK_TOOLS_SCRIPT = join(ROOT, 'e2e/openai_sdk_tools.py');

// Shared across tests.
const users = {}; // name -> {username, tenant_id, role, token}
const keys = {}; // alias -> gateway key record (as created)
// Usage of every call so far that reached standin-chat: per gateway key alias (null: by model id or
// default) as the relay reported it, for the counters test to check exactly.
const seen = { byAlias: {}, chatTotal: 0 };

/** Note a call's usage: on its gateway key (if any) and on standin-chat's used_token. */
function count(alias, usage) {
  assert.ok(usage && Number.isInteger(usage.prompt_tokens) && Number.isInteger(usage.completion_tokens), JSON.stringify(usage));
  if (alias) {
    const a = (seen.byAlias[alias] ??= { input: 0, output: 0, calls: 0 });
    a.input += usage.prompt_tokens;
    a.output += usage.completion_tokens;
    a.calls += 1;
  }
  seen.chatTotal += usage.prompt_tokens + usage.completion_tokens;
}

/**
 * The stand-in's usage for a chat call it answered (examples/provider_standin/server.rs: prompt =
 * whitespace words + 3 per message, completion = min(max_tokens, 5)), for streamed calls whose client
 * did not ask for the usage chunk.
 */
function standinUsage(messages, maxTokens) {
  const prompt = messages.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length + 3, 0);
  const completion = Math.min(maxTokens ?? 5, 5);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}
let sdkOutput = ''; // the SDK script's stdout and stderr, for the leak check
let sdkTraffic = ''; // every response the SDK received, headers and raw body bytes

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- helpers

/** Check a relay success: 200 with a JSON body; returns the body. */
function relayOk(r, what = '') {
  assert.equal(r.status, 200, `${what} expected 200, got ${r.status}: ${r.text}`);
  assert.ok(r.json, `${what} body is not JSON: ${r.text}`);
  assert.match(r.headers.get('content-type') || '', /^application\/json/, `${what} content-type`);
  return r.json;
}

/** Check an OpenAI-shaped relay error: real status, {error: {message, type, param, code}}; returns it. */
function relayFails(r, status, code, what = '') {
  assert.equal(r.status, status, `${what} expected ${status}, got ${r.status}: ${r.text}`);
  assert.ok(r.json, `${what} body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.json), ['error'], `${what} OpenAI error shape: ${r.text}`);
  const e = r.json.error;
  for (const k of ['message', 'type', 'code']) assert.ok(k in e, `${what} error has ${k}: ${r.text}`);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0, `${what} message must not be empty`);
  assert.equal(typeof e.type, 'string');
  if (code !== undefined) assert.equal(e.code, code, `${what} error.code: ${r.text}`);
  assert.match(r.headers.get('content-type') || '', /^application\/json/, `${what} content-type`);
  return e;
}

function as(name, method, path, body, opts = {}) {
  const u = users[name];
  assert.ok(u, `user ${name} was not created (the setup test failed)`);
  return w.call(method, path, { ...opts, token: u.token, body });
}

function chatBody(model, content, extra = {}) {
  const b = { messages: [{ role: 'user', content }], ...extra };
  if (model !== undefined) b.model = model;
  return b;
}

const chat = (who, model, content, extra) => as(who, 'POST', '/v1/chat/completions', chatBody(model, content, extra));

/** An OpenAI chat.completion answering `content` with the stand-in's echo. */
function assertCompletion(body, content, what = '') {
  assert.equal(body.object, 'chat.completion', `${what} object: ${JSON.stringify(body)}`);
  assert.equal(typeof body.id, 'string');
  assert.ok(Number.isInteger(body.created), `${what} created`);
  assert.equal(body.choices.length, 1, `${what} one choice`);
  assert.equal(body.choices[0].index, 0);
  assert.equal(body.choices[0].message.role, 'assistant');
  assert.equal(body.choices[0].message.content, `echo: ${content}`, `${what} echo`);
  assert.equal(body.choices[0].finish_reason, 'stop');
  const u = body.usage;
  assert.ok(u && Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `${what} usage: ${JSON.stringify(u)}`);
  assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens > 0, `${what} usage`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what} total_tokens`);
}

async function mkUser(username, extra = {}) {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username, ...extra }), `create user ${username}`);
  const k = ok(await w.admin('POST', `/api/v1/admin/users/${username}/api_key`, { description: 'relay e2e' }), `key for ${username}`);
  assert.match(k.token, /^kwa_[0-9A-Za-z]+:kws_[0-9A-Za-z]+$/);
  users[username] = { ...u, token: k.token };
  return users[username];
}

async function mkGatewayKey(alias, extra = {}) {
  const body = {
    alias, provider: COMPAT, model: CHAT, api_key: GOOD, input_limit: 0, status: 'enabled', ...extra,
  };
  const k = ok(await as('rl-owner', 'POST', '/api/v1/ai_keys', body), `create gateway key ${alias}`);
  assert.equal(k.alias, alias);
  assert.equal(k.status, body.status);
  assert.equal(k.used_input_tokens, 0);
  assert.equal(k.used_output_tokens, 0);
  assert.equal(k.last_used_at, null);
  assert.ok(!JSON.stringify(k).includes(GOOD), 'the record never shows the provider key');
  keys[alias] = k;
  return k;
}

/**
 * A streamed chat call with fetch, the body read incrementally: resolves with
 * {status, headers, reads: [{at, bytes, text}], text}. Recorded in w.responses for the leak check.
 */
async function streamChat(who, body) {
  const started = performance.now();
  const r = await fetch(`${w.base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${users[who].token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const reads = [];
  const decoder = new TextDecoder();
  let text = '';
  const reader = r.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const piece = decoder.decode(value, { stream: true });
    reads.push({ at: performance.now() - started, bytes: value.byteLength, text: piece });
    text += piece;
  }
  text += decoder.decode();
  w.record('POST', '/v1/chat/completions (stream)', r.status, r.headers, text);
  return { status: r.status, headers: r.headers, reads, text };
}

/** The `data:` payloads of an SSE text, in order. */
function sseData(text) {
  const out = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((l) => l.startsWith('data:'));
    if (lines.length) out.push(lines.map((l) => l.slice(5).replace(/^ /, '')).join('\n'));
  }
  return out;
}

/** Parse an OpenAI chat stream: {chunks, content, usage, done}. */
function parseChatStream(text, what = '') {
  const data = sseData(text);
  assert.ok(data.length > 0, `${what} no events: ${text}`);
  const done = data[data.length - 1] === '[DONE]';
  const chunks = data.filter((d) => d !== '[DONE]').map((d) => {
    try {
      return JSON.parse(d);
    } catch {
      assert.fail(`${what} event is not JSON: ${d}`);
    }
  });
  let content = '';
  let usage = null;
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk', `${what} chunk object: ${JSON.stringify(c)}`);
    assert.ok(!c.error, `${what} error event in the stream: ${JSON.stringify(c)}`);
    for (const ch of c.choices || []) if (ch.delta?.content) content += ch.delta.content;
    if (c.usage) usage = c.usage;
  }
  return { chunks, content, usage, done };
}

/** Poll `fn` (async, returns a value) until `pred(value)`; returns the last value. */
async function until(fn, pred, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  let v = await fn();
  while (!pred(v) && Date.now() < deadline) {
    await sleep(100);
    v = await fn();
  }
  return v;
}

function standinChatModel(who) {
  return as(who, 'GET', '/api/v1/models').then((r) => {
    const list = ok(r, 'list models');
    return (list[COMPAT]?.llm || []).find((m) => m.name === CHAT);
  });
}

/** Run e2e/openai_sdk.py (or `script`); resolves with {code, signal, stdout, stderr}. */
function runSdk(env, timeoutMs = 60_000, script = SDK_SCRIPT) {
  return runPython(script, [], { env, timeoutMs });
}

// ---------------------------------------------------------------- tests

test('setup: a tenant owner and member, a second tenant, three provider connections, gateway keys', async () => {
  const owner = await mkUser('rl-owner');
  assert.equal(owner.role, 'owner');
  const member = await mkUser('rl-member', { tenant_id: owner.tenant_id, role: 'member' });
  assert.equal(member.tenant_id, owner.tenant_id);
  const other = await mkUser('rl-other');
  assert.notEqual(other.tenant_id, owner.tenant_id);
  assert.ok(standin.port > 0, 'the stand-in is listening');

  const v1 = `${standin.base}/v1`;
  ok(await as('rl-owner', 'POST', '/api/v1/models', { llm_factory: COMPAT, llm_name: CHAT, base_url: v1, api_key: GOOD }), 'add standin-chat');
  ok(await as('rl-owner', 'POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: EMBED, model_type: 'embedding', base_url: v1, api_key: GOOD,
  }), 'add standin-embed');
  ok(await as('rl-owner', 'POST', '/api/v1/models', { llm_factory: 'Anthropic', api_key: GOOD, base_url: standin.base }), 'add Anthropic');
  const list = ok(await as('rl-owner', 'GET', '/api/v1/models'), 'list');
  assert.deepEqual(
    list[COMPAT].llm.map((m) => [m.name, m.type]).sort(),
    [[CHAT, 'chat'], [EMBED, 'embedding']],
    JSON.stringify(list),
  );
  assert.ok(list.Anthropic?.llm.some((m) => `${m.name}@Anthropic` === CLAUDE_ID), `Anthropic lists ${CLAUDE_ID}: ${JSON.stringify(list.Anthropic)}`);

  await mkGatewayKey('team-chat');
  await mkGatewayKey('tight', { input_limit: 10 });
  await mkGatewayKey('loose', { input_limit: 10, usage_limit_policy: 'use_anyway' });
  await mkGatewayKey('capped', { output_limit: 3 });
  await mkGatewayKey('off', { status: 'disabled' });
});

test('1. a non-streamed chat completion through each way of naming the model: alias, name@factory, default', async () => {
  // By gateway key alias.
  let r = await chat('rl-owner', 'team-chat', 'hello alias');
  let body = relayOk(r, 'alias');
  assertCompletion(body, 'hello alias', 'alias');
  assert.ok(Number(r.headers.get('x-keyward-input-tokens-estimate')) > 0, 'the input estimate header');
  assert.equal(r.headers.get('x-keyward-limit-exceeded'), null, 'no limit was exceeded');
  count('team-chat', body.usage);

  // By name@factory; the provider is asked for its own model name (the stand-in echoes it).
  r = await chat('rl-owner', CHAT_ID, 'hello by id');
  body = relayOk(r, 'name@factory');
  assertCompletion(body, 'hello by id', 'name@factory');
  assert.equal(body.model, CHAT, 'the provider got its own model name');
  count(null, body.usage);
  // A bare name works when it is unambiguous.
  body = relayOk(await chat('rl-owner', CHAT, 'bare name'), 'bare name');
  assertCompletion(body, 'bare name', 'bare name');
  count(null, body.usage);

  // Empty / default without a tenant default: a clear 400.
  let e = relayFails(await chat('rl-owner', '', 'no default yet'), 400, undefined, 'no default set');
  assert.match(e.message, /No default chat model/);
  assert.equal(e.type, 'invalid_request_error');

  ok(await as('rl-owner', 'POST', '/api/v1/models/default', { llm_id: CHAT_ID, embd_id: EMBED_ID }), 'set defaults');
  for (const model of ['', 'default', undefined]) {
    const content = `via default ${JSON.stringify(model ?? null)}`;
    body = relayOk(await chat('rl-owner', model, content), `model ${JSON.stringify(model)}`);
    assertCompletion(body, content, `model ${JSON.stringify(model)}`);
    count(null, body.usage);
  }

  // A member of the tenant uses the relay too.
  body = relayOk(await chat('rl-member', 'team-chat', 'member here'), 'member');
  assertCompletion(body, 'member here', 'member');
  count('team-chat', body.usage);

  // GET /v1/models lists configured models and enabled gateway keys (not disabled ones).
  const models = relayOk(await as('rl-owner', 'GET', '/v1/models'), 'GET /v1/models');
  assert.equal(models.object, 'list');
  const ids = models.data.map((m) => m.id);
  for (const id of [CHAT_ID, EMBED_ID, CLAUDE_ID, 'team-chat', 'tight', 'loose', 'capped']) {
    assert.ok(ids.includes(id), `/v1/models lists ${id}: ${JSON.stringify(ids)}`);
  }
  assert.ok(!ids.includes('off'), 'a disabled gateway key is not listed');
  for (const m of models.data) assert.equal(m.object, 'model');
});

test('2. a streamed chat completion arrives event by event and ends with [DONE]', async (t) => {
  const content = 'one two three four five six seven';
  const req = chatBody('team-chat', content, { stream: true });
  const s = await streamChat('rl-owner', req);
  t.diagnostic(`reads at ${s.reads.map((x) => `${x.at.toFixed(0)}ms/${x.bytes}B`).join(', ')}`);
  assert.equal(s.status, 200, s.text);
  assert.match(s.headers.get('content-type') || '', /^text\/event-stream/);
  assert.ok(s.reads.length >= 3, `at least 3 reads, got ${s.reads.length}: ${JSON.stringify(s.reads.map((x) => x.bytes))}`);
  const spread = s.reads[s.reads.length - 1].at - s.reads[0].at;
  assert.ok(
    spread >= 40,
    `chunks arrive over time, not buffered: first and last read ${spread.toFixed(1)} ms apart ` +
      `(reads at ${s.reads.map((x) => x.at.toFixed(0)).join(', ')} ms)`,
  );
  assert.match(s.text, /data: \[DONE\]\s*$/, 'ends with data: [DONE]');
  const p = parseChatStream(s.text, 'alias stream');
  assert.ok(p.done);
  assert.equal(p.content, `echo: ${content}`);
  assert.ok(p.chunks.length >= 3, `several chunks: ${p.chunks.length}`);
  assert.equal(p.chunks[p.chunks.length - 1].choices[0]?.finish_reason, 'stop');
  assert.equal(p.usage, null, 'the usage chunk the relay asked for is not shown to a client that did not ask');
  assert.ok(!s.text.includes('"prompt_tokens"'), 'no usage in the stream');
  // The client did not see the usage; the relay counts what the stand-in reported to it.
  count('team-chat', standinUsage(req.messages));

  // A client that asks for usage gets the usage chunk.
  const s2 = await streamChat('rl-owner', chatBody(CHAT_ID, 'count me', { stream: true, stream_options: { include_usage: true } }));
  assert.equal(s2.status, 200, s2.text);
  const p2 = parseChatStream(s2.text, 'stream with usage');
  assert.ok(p2.done);
  assert.equal(p2.content, 'echo: count me');
  assert.ok(p2.usage && p2.usage.prompt_tokens > 0 && p2.usage.completion_tokens > 0, JSON.stringify(p2.usage));
  assert.deepEqual(p2.usage, standinUsage([{ content: 'count me' }]), 'the stand-in’s usage, passed on');
  count(null, p2.usage);
});

test('3. embeddings by name, by name@factory and by default; a chat model is not an embedding model', async () => {
  for (const model of [EMBED, EMBED_ID, 'default', undefined]) {
    const body = { input: ['a b', 'c'] };
    if (model !== undefined) body.model = model;
    const e = relayOk(await as('rl-owner', 'POST', '/v1/embeddings', body), `embeddings ${model}`);
    assert.equal(e.object, 'list');
    assert.equal(e.data.length, 2, JSON.stringify(e));
    e.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0 && d.embedding.every((x) => typeof x === 'number'));
    });
    assert.ok(e.usage && e.usage.prompt_tokens > 0, JSON.stringify(e.usage));
  }
  // One string input.
  const one = relayOk(await as('rl-owner', 'POST', '/v1/embeddings', { model: EMBED, input: 'just one' }), 'one input');
  assert.equal(one.data.length, 1);
  // Different texts, different vectors; the same text, the same vector.
  const again = relayOk(await as('rl-owner', 'POST', '/v1/embeddings', { model: EMBED, input: ['just one', 'other'] }), 'again');
  assert.deepEqual(again.data[0].embedding, one.data[0].embedding);
  assert.notDeepEqual(again.data[1].embedding, one.data[0].embedding);

  relayFails(await as('rl-owner', 'POST', '/v1/embeddings', { model: CHAT, input: 'a' }), 404, 'model_not_found', 'chat model for embeddings');
  relayFails(await as('rl-owner', 'POST', '/v1/embeddings', { model: 'team-chat', input: 'a' }), 400, undefined, 'chat gateway key for embeddings');
});

test('4. gateway key limits: input reject / use_anyway, output cap, disabled key', async () => {
  const long = 'word '.repeat(50).trim();

  // Input over the limit under `reject`: 400 naming the estimate and the limit; nothing forwarded.
  let mark = standin.mark();
  let e = relayFails(await chat('rl-owner', 'tight', long), 400, 'input_limit_exceeded', 'tight');
  assert.equal(e.type, 'invalid_request_error');
  assert.match(e.message, /input limit of 10 tokens/, e.message);
  const m = /about (\d+) tokens/.exec(e.message);
  assert.ok(m, `the message names the estimate: ${e.message}`);
  assert.ok(Number(m[1]) > 10, `the estimate ${m[1]} is over the limit`);
  assert.ok(e.message.includes('tight'), `names the key: ${e.message}`);
  // Streamed too.
  relayFails(await chat('rl-owner', 'tight', long, { stream: true }), 400, 'input_limit_exceeded', 'tight stream');
  await sleep(200);
  assert.doesNotMatch(standin.logSince(mark), /chat\/completions/, 'nothing was forwarded');

  // Under the limit the same key works.
  let body = relayOk(await chat('rl-owner', 'tight', 'short'), 'tight short');
  assertCompletion(body, 'short', 'tight short');
  count('tight', body.usage);

  // `use_anyway`: answered, and marked.
  const r = await chat('rl-owner', 'loose', long);
  body = relayOk(r, 'loose');
  assertCompletion(body, long, 'loose');
  count('loose', body.usage);
  assert.equal(r.headers.get('x-keyward-limit-exceeded'), 'input');
  assert.ok(Number(r.headers.get('x-keyward-input-tokens-estimate')) > 10);

  // Output cap under `reject`: asking for more is a 400; within it is fine; no max_tokens gets the cap.
  e = relayFails(await chat('rl-owner', 'capped', 'x', { max_tokens: 10 }), 400, 'output_limit_exceeded', 'capped 10');
  assert.match(e.message, /max_tokens 10/);
  assert.match(e.message, /\b3\b/, `names the limit: ${e.message}`);
  relayFails(await chat('rl-owner', 'capped', 'x', { max_completion_tokens: 10 }), 400, 'output_limit_exceeded', 'capped mct 10');
  body = relayOk(await chat('rl-owner', 'capped', 'x', { max_tokens: 2 }), 'capped 2');
  assert.equal(body.usage.completion_tokens, 2);
  count('capped', body.usage);
  body = relayOk(await chat('rl-owner', 'capped', 'x'), 'capped default');
  assert.equal(body.usage.completion_tokens, 3, 'no max_tokens: the cap is applied upstream');
  count('capped', body.usage);

  // Disabled key.
  e = relayFails(await chat('rl-owner', 'off', 'x'), 403, 'key_disabled', 'disabled');
  assert.equal(e.type, 'permission_error');
  relayFails(await chat('rl-owner', 'off', 'x', { stream: true }), 403, 'key_disabled', 'disabled stream');
  // Enabled again with PUT, it works; disabled again, refused again.
  const id = keys.off.id;
  assert.equal(ok(await as('rl-owner', 'PUT', `/api/v1/ai_keys/${id}`, { status: 'enabled' }), 'enable').status, 'enabled');
  body = relayOk(await chat('rl-owner', 'off', 'now on'), 'enabled');
  assertCompletion(body, 'now on', 'enabled');
  count('off', body.usage);
  assert.equal(ok(await as('rl-owner', 'PUT', `/api/v1/ai_keys/${id}`, { status: 'disabled' }), 'disable').status, 'disabled');
  relayFails(await chat('rl-owner', 'off', 'x'), 403, 'key_disabled', 'disabled again');
});

test('5. counters: the gateway keys and the model count relay usage exactly, after the response', async () => {
  // 40 calls at once: the isolate gathers what they leave behind into shared batches
  // (src/store/write_behind.rs), and every one of them still counts exactly once.
  const mark = w.output.length;
  const atOnce = await Promise.all(Array.from({ length: 40 }, (_, i) => chat('rl-owner', 'team-chat', `at once ${i}`)));
  for (const [i, r] of atOnce.entries()) count('team-chat', relayOk(r, `call ${i} of 40 at once`).usage);
  // One more call right before reading: its usage is written after the response (waitUntil).
  const body = relayOk(await chat('rl-owner', 'team-chat', 'count this call too'), 'last call');
  count('team-chat', body.usage);

  const read = async (alias) => ok(await as('rl-owner', 'GET', `/api/v1/ai_keys/${keys[alias].id}`), `read ${alias}`);
  const started = Date.now();
  const k = await until(
    () => read('team-chat'),
    (k) => k.used_input_tokens >= seen.byAlias['team-chat'].input && k.used_output_tokens >= seen.byAlias['team-chat'].output,
  );
  const want = seen.byAlias['team-chat'];
  assert.ok(want.calls >= 4 && want.input > 0 && want.output > 0, JSON.stringify(want));
  assert.equal(k.used_input_tokens, want.input, `team-chat used_input_tokens after ${Date.now() - started} ms (${want.calls} calls)`);
  assert.equal(k.used_output_tokens, want.output, 'team-chat used_output_tokens');
  assert.equal(typeof k.last_used_at, 'string', `last_used_at: ${JSON.stringify(k)}`);
  assert.ok(!Number.isNaN(Date.parse(k.last_used_at)), k.last_used_at);
  assert.ok(Math.abs(Date.parse(k.last_used_at) - Date.now()) < 10 * 60_000, `last_used_at is recent: ${k.last_used_at}`);
  assert.ok(Date.parse(k.last_used_at) >= Date.parse(keys['team-chat'].create_date), 'last_used_at after the key was made');
  assert.ok(!JSON.stringify(k).includes(GOOD));
  // wrangler colours its own lines (`[ERROR]` with escapes inside the brackets): read them plain.
  // A request whose deferred work waits on another request's is cancelled by the runtime as hung.
  const since = w.output.slice(mark).replace(/\x1b\[[0-9;]*m/g, '');
  assert.doesNotMatch(since, /deferred write|different request|had hung|\[WARN\]|\[ERROR\]/, 'no write failed, hung or crossed requests badly');

  // Every other key counted exactly its successful calls; refused calls counted nothing.
  for (const alias of ['tight', 'loose', 'capped', 'off']) {
    const expected = seen.byAlias[alias];
    assert.ok(expected && expected.calls > 0, `${alias} had successful calls`);
    const got = await until(() => read(alias), (x) => x.used_input_tokens >= expected.input && x.used_output_tokens >= expected.output);
    assert.deepEqual(
      [got.used_input_tokens, got.used_output_tokens],
      [expected.input, expected.output],
      `${alias}: counters equal the usage of its ${expected.calls} successful call(s)`,
    );
    assert.equal(typeof got.last_used_at, 'string', `${alias} last_used_at`);
  }

  // The model's used_token counts calls by alias, by id and by default alike.
  const m = await until(() => standinChatModel('rl-owner'), (m) => m && m.used_token >= seen.chatTotal);
  assert.ok(m, 'standin-chat is listed');
  assert.ok(m.used_token > 0, `used_token ${m.used_token}`);
  assert.equal(m.used_token, seen.chatTotal, 'standin-chat used_token = the total tokens of every call it served');
  // The list's counter is what members see too.
  const mm = await standinChatModel('rl-member');
  assert.equal(mm.used_token, m.used_token);
});

test('6. Anthropic through the relay answers in OpenAI shapes, whole and streamed', async () => {
  let mark = standin.mark();
  const r = await as('rl-owner', 'POST', '/v1/chat/completions', {
    model: CLAUDE_ID,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'bonjour' }],
    max_tokens: 20,
  });
  const body = relayOk(r, 'anthropic');
  assertCompletion(body, 'bonjour', 'anthropic');
  assert.ok(await standin.waitForLog(/^standin: POST \/v1\/messages -> 200$/m, 5_000, mark), standin.logSince(mark));

  mark = standin.mark();
  const content = 'stream me please now';
  const s = await streamChat('rl-owner', {
    model: CLAUDE_ID, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content }],
  });
  assert.equal(s.status, 200, s.text);
  assert.match(s.headers.get('content-type') || '', /^text\/event-stream/);
  assert.doesNotMatch(s.text, /^event:/m, 'no Anthropic event names reach the client');
  assert.match(s.text, /data: \[DONE\]\s*$/);
  const p = parseChatStream(s.text, 'anthropic stream');
  assert.ok(p.done);
  assert.equal(p.content, `echo: ${content}`);
  assert.ok(p.usage && p.usage.total_tokens > 0, `usage: ${JSON.stringify(p.usage)}`);
  assert.equal(p.usage.total_tokens, p.usage.prompt_tokens + p.usage.completion_tokens);
  assert.ok(p.chunks.some((c) => c.choices?.[0]?.finish_reason), 'a chunk carries the finish reason');
  assert.ok(s.reads.length >= 3, `read incrementally: ${s.reads.length} reads`);
  assert.ok(await standin.waitForLog(/^standin: POST \/v1\/messages -> 200$/m, 5_000, mark), standin.logSince(mark));

  // Without include_usage: no usage chunk.
  const s2 = await streamChat('rl-owner', { model: CLAUDE_ID, stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const p2 = parseChatStream(s2.text, 'anthropic stream without usage');
  assert.equal(p2.content, 'echo: hi');
  assert.ok(p2.done);

  // Anthropic serves no embeddings.
  relayFails(await as('rl-owner', 'POST', '/v1/embeddings', { model: CLAUDE_ID, input: 'x' }), 404, 'model_not_found', 'anthropic embeddings');
});

test('7. another tenant cannot use the first tenant’s alias or models', async () => {
  relayFails(await chat('rl-other', 'team-chat', 'x'), 404, 'model_not_found', 'foreign alias');
  relayFails(await chat('rl-other', CHAT_ID, 'x'), 404, 'model_not_found', 'foreign model id');
  relayFails(await as('rl-other', 'POST', '/v1/embeddings', { model: EMBED, input: 'x' }), 404, 'model_not_found', 'foreign embedding');
  // Its own default is unset; the first tenant's does not apply.
  const e = relayFails(await chat('rl-other', 'default', 'x'), 400, undefined, 'no default for the other tenant');
  assert.match(e.message, /No default chat model/);
  const models = relayOk(await as('rl-other', 'GET', '/v1/models'), 'other /v1/models');
  const ids = models.data.map((m) => m.id);
  for (const id of ['team-chat', CHAT_ID, EMBED_ID, CLAUDE_ID]) assert.ok(!ids.includes(id), `${id} not listed for the other tenant`);
  // The other tenant's failed calls did not count on the first tenant's key.
  const before = ok(await as('rl-owner', 'GET', `/api/v1/ai_keys/${keys['team-chat'].id}`));
  await sleep(300);
  const after = ok(await as('rl-owner', 'GET', `/api/v1/ai_keys/${keys['team-chat'].id}`));
  assert.equal(after.used_input_tokens, before.used_input_tokens);
});

test('8. relay errors are OpenAI-shaped: no credential, wrong content type, bad JSON, unknown model, wrong method', async () => {
  // One auth failure only (the brute-force limiter counts them).
  const r = await w.call('POST', '/v1/chat/completions', { body: chatBody(CHAT, 'x') });
  const e = relayFails(r, 401, 'invalid_api_key', 'no credential');
  assert.equal(e.type, 'invalid_request_error');
  assert.match(r.headers.get('www-authenticate') || '', /^Bearer/);

  const tok = users['rl-owner'].token;
  relayFails(await w.call('POST', '/v1/chat/completions', {
    token: tok, body: '{}', headers: { 'content-type': 'text/plain' },
  }), 415, undefined, 'text/plain');
  const bad = relayFails(await w.call('POST', '/v1/chat/completions', {
    token: tok, body: '{"model":', headers: { 'content-type': 'application/json' },
  }), 400, undefined, 'broken JSON');
  assert.equal(bad.type, 'invalid_request_error');
  relayFails(await chat('rl-owner', 'no-such-model', 'x'), 404, 'model_not_found', 'unknown model');
  relayFails(await as('rl-owner', 'POST', '/v1/chat/completions', { model: 7, messages: [] }), 400, undefined, 'model not a string');
  const big = ' '.repeat(1024 * 1024 + 1);
  relayFails(await w.call('POST', '/v1/chat/completions', {
    token: tok, body: big, headers: { 'content-type': 'application/json' },
  }), 413, undefined, 'over 1 MiB');
  const g = await as('rl-owner', 'GET', '/v1/chat/completions');
  assert.equal(g.status, 405, g.text);
});

test('9. the official OpenAI Python SDK works against the relay: chat, stream, embeddings, NotFoundError', { timeout: 90_000 }, async (t) => {
  assert.ok(existsSync(PYTHON), `${PYTHON} exists (run \`make setup\`)`);
  const started = Date.now();
  const trafficFile = join(w.dir, 'sdk-traffic.txt');
  const res = await runSdk({
    KEYWARD_SDK_TRAFFIC: trafficFile,
    KEYWARD_BASE_URL: `${w.base}/v1`,
    KEYWARD_TOKEN: users['rl-owner'].token,
    KEYWARD_CHAT_MODEL: 'team-chat',
    KEYWARD_EMBED_MODEL: EMBED_ID,
    KEYWARD_MISSING_MODEL: 'no-such-model@OpenAI-API-Compatible',
  });
  // What the SDK printed, unscrubbed, and every response it received (headers and raw bytes).
  sdkTraffic = existsSync(trafficFile) ? readFileSync(trafficFile, 'utf8') : '';
  sdkOutput = res.stdout + res.stderr;
  const what = `openai_sdk.py exited ${res.code ?? res.signal} after ${Date.now() - started} ms\n--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
  let out;
  try {
    out = JSON.parse(res.stdout.trim().split('\n').pop());
  } catch {
    assert.fail(`stdout is not one JSON object: ${what}`);
  }
  t.diagnostic(`openai_sdk.py (${Date.now() - started} ms): ${res.stdout.trim()}`);
  assert.deepEqual(out.errors, {}, what);
  assert.equal(res.code, 0, what);
  assert.equal(out.sdk_version, '3.54.0', 'the pinned SDK (e2e/requirements.txt)');

  assert.equal(out.chat.type, 'ChatCompletion');
  assert.equal(out.chat.object, 'chat.completion');
  assert.equal(out.chat.content, 'echo: hello from the python sdk');
  assert.equal(out.chat.role, 'assistant');
  assert.equal(out.chat.finish_reason, 'stop');
  assert.ok(out.chat.usage.prompt_tokens > 0 && out.chat.usage.completion_tokens > 0, JSON.stringify(out.chat.usage));

  assert.equal(out.stream.content, 'echo: hello from the python sdk streamed');
  assert.ok(out.stream.chunks >= 3, `chunks: ${out.stream.chunks}`);
  assert.deepEqual(out.stream.objects, ['chat.completion.chunk']);
  assert.equal(out.stream.finish_reason, 'stop');
  assert.ok(out.stream.usage && out.stream.usage.total_tokens > 0, `stream usage: ${JSON.stringify(out.stream.usage)}`);

  assert.equal(out.embeddings.object, 'list');
  assert.equal(out.embeddings.count, 2);
  assert.deepEqual(out.embeddings.indexes, [0, 1]);
  assert.ok(out.embeddings.dims.every((d) => d > 0));
  assert.equal(out.embeddings.all_floats, true);

  assert.equal(out.not_found.raised, 'NotFoundError', JSON.stringify(out.not_found));
  assert.equal(out.not_found.status_code, 404);
  assert.equal(out.not_found.code, 'model_not_found');

  // The recording holds the SDK's real traffic: each call's response, the streamed events as bytes.
  for (const [what, re] of [
    // Header names as the worker sent them (any case).
    ['the chat answer', /--- POST \/v1\/chat\/completions -> 200\n[^]*content-type: application\/json[^]*"object":"chat\.completion"/i],
    ['the streamed events', /content-type: text\/event-stream[^]*data: \{[^]*"chat\.completion\.chunk"[^]*data: \[DONE\]/i],
    ['the embeddings', /--- POST \/v1\/embeddings -> 200\n/],
    ['the 404', /--- POST \/v1\/chat\/completions -> 404\n[^]*model_not_found/],
  ]) {
    assert.match(sdkTraffic, re, `the SDK traffic recording holds ${what}:\n${sdkTraffic.slice(0, 2000)}`);
  }
  const token = users['rl-owner'].token;
  for (const s of [token, token.split(':')[1]]) {
    assert.ok(!sdkOutput.includes(s), 'the SDK script never prints the token');
    assert.ok(!sdkTraffic.includes(s), 'no response the SDK received carries the token');
  }
});

test('9b. the OpenAI Python SDK makes an Anthropic tool call round trip through the relay, whole and streamed', { timeout: 90_000 }, async (t) => {
  assert.ok(existsSync(PYTHON), `${PYTHON} exists (run \`make setup\`)`);
  const mark = standin.mark();
  const res = await runSdk({
    KEYWARD_BASE_URL: `${w.base}/v1`,
    KEYWARD_TOKEN: users['rl-owner'].token,
    KEYWARD_CHAT_MODEL: CLAUDE_ID,
  }, 60_000, SDK_TOOLS_SCRIPT);
  sdkOutput += res.stdout + res.stderr;
  const what = `openai_sdk_tools.py exited ${res.code ?? res.signal}\n--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
  let out;
  try {
    out = JSON.parse(res.stdout.trim().split('\n').pop());
  } catch {
    assert.fail(`stdout is not one JSON object: ${what}`);
  }
  t.diagnostic(`openai_sdk_tools.py: ${res.stdout.trim()}`);
  assert.deepEqual(out.errors, {}, what);
  assert.equal(res.code, 0, what);

  // Whole: one call with parseable arguments; the stand-in refuses a tool_result whose id it did
  // not hand out, so the final answer shows the id and the turns came back intact.
  assert.equal(out.whole.finish_reason, 'tool_calls', what);
  assert.equal(out.whole.calls.length, 1, what);
  assert.equal(out.whole.calls[0].type, 'function');
  assert.equal(out.whole.calls[0].name, 'get_weather');
  assert.match(out.whole.calls[0].id, /^toolu_/);
  assert.deepEqual(out.whole.parsed_arguments, [{ city: 'Paris' }]);
  assert.equal(out.whole.final_content, 'echo: tool result: 18 C, sunny');
  assert.equal(out.whole.final_finish_reason, 'stop');

  // Streamed: the call assembled from several deltas of tool call 0, then the streamed answer.
  assert.equal(out.streamed.finish_reason, 'tool_calls', what);
  assert.deepEqual(out.streamed.indexes, [0]);
  assert.ok(out.streamed.tool_call_deltas >= 3, `tool-call deltas: ${out.streamed.tool_call_deltas}`);
  assert.equal(out.streamed.calls[0].name, 'get_weather');
  assert.match(out.streamed.calls[0].id, /^toolu_/);
  assert.deepEqual(out.streamed.parsed_arguments, [{ city: 'Paris' }]);
  assert.equal(out.streamed.final_content, 'echo: tool result: 18 C, sunny');
  assert.equal(out.streamed.final_finish_reason, 'stop');
  assert.ok(await standin.waitForLog(/^standin: POST \/v1\/messages -> 200$/m, 5_000, mark), standin.logSince(mark));
  assert.doesNotMatch(standin.logSince(mark), /\/v1\/messages -> 400/, 'the provider refused nothing the relay sent');

  // What Anthropic cannot do is a 400 in OpenAI's shape saying why, and never reaches it.
  const e = relayFails(await as('rl-owner', 'POST', '/v1/chat/completions', {
    model: CLAUDE_ID, n: 2, messages: [{ role: 'user', content: 'x' }],
  }), 400, null, 'n > 1 for Anthropic');
  assert.equal(e.type, 'invalid_request_error');
  assert.match(e.message, /^n: Anthropic models return one choice per request/);
  const img = relayOk(await as('rl-owner', 'POST', '/v1/chat/completions', {
    model: CLAUDE_ID,
    messages: [{ role: 'user', content: [
      { type: 'text', text: 'look' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
    ] }],
  }), 'anthropic image part');
  assert.equal(img.choices[0].message.content, 'echo: look (+1 image)');
});

test('10. upstream failures become OpenAI errors without the credential; Ollama; an expired gateway key', { timeout: 60_000 }, async () => {
  const add = async (body, what) => ok(await as('rl-owner', 'POST', '/api/v1/models', { llm_factory: COMPAT, verify: false, ...body }), what);
  // The provider refuses the configured key: 502 upstream_auth_failed (not 401: the caller's key is fine).
  await add({ llm_name: 'badkey', base_url: `${standin.base}/v1`, api_key: BAD }, 'add badkey');
  let r = await chat('rl-owner', 'badkey', 'x');
  let e = relayFails(r, 502, 'upstream_auth_failed', 'bad provider key');
  assert.equal(e.type, 'upstream_error');
  for (const needle of [BAD, BAD.slice(3, -4)]) assert.ok(!r.text.includes(needle), `the 502 shows no credential: ${r.text}`);
  // Streamed: the same error, before any event.
  r = await chat('rl-owner', 'badkey', 'x', { stream: true });
  relayFails(r, 502, 'upstream_auth_failed', 'bad provider key, streamed');

  // Nobody listening: 502.
  const closed = await freePort();
  await add({ llm_name: 'down', base_url: `http://127.0.0.1:${closed}/v1`, api_key: GOOD }, 'add down');
  e = relayFails(await chat('rl-owner', 'down', 'x'), 502, undefined, 'unreachable provider');
  assert.equal(e.type, 'upstream_error');
  // Not JSON: 502.
  await add({ llm_name: 'junk', base_url: `${standin.base}/garbage/v1`, api_key: GOOD }, 'add junk');
  relayFails(await chat('rl-owner', 'junk', 'x'), 502, undefined, 'garbage answer');
  // Too slow (the stand-in waits 15 s; PROVIDER_TIMEOUT_MS is 10 s): 504 upstream_timeout.
  await add({ llm_name: 'slow', base_url: `${standin.base}/slow/v1`, api_key: GOOD }, 'add slow');
  const t0 = Date.now();
  e = relayFails(await chat('rl-owner', 'slow', 'x'), 504, 'upstream_timeout', 'slow provider');
  assert.ok(Date.now() - t0 < 14_000, `answered at the relay's timeout, not the stand-in's: ${Date.now() - t0} ms`);

  // An Ollama model is reached through its OpenAI-compatible /v1 API (the stand-in's keyless /open).
  ok(await as('rl-owner', 'POST', '/api/v1/models', { llm_factory: 'Ollama', llm_name: 'llama3.2', base_url: `${standin.base}/open` }), 'add Ollama');
  const mark = standin.mark();
  assertCompletion(relayOk(await chat('rl-owner', 'llama3.2@Ollama', 'hi ollama'), 'ollama'), 'hi ollama', 'ollama');
  assert.ok(await standin.waitForLog(/^standin: POST \/open\/v1\/chat\/completions -> 200$/m, 5_000, mark), standin.logSince(mark));

  // A gateway key past its expire_time is refused with key_expired; the cron then disables it.
  const expires = new Date(Math.ceil((Date.now() + 3_000) / 1000) * 1000);
  const k = await mkGatewayKey('soon', { expire_time: expires.toISOString().replace(/\.\d{3}Z$/, 'Z') });
  assertCompletion(relayOk(await chat('rl-owner', 'soon', 'before expiry'), 'before expiry'), 'before expiry', 'soon');
  await sleep(Math.max(0, expires.getTime() - Date.now()) + 500);
  e = relayFails(await chat('rl-owner', 'soon', 'x'), 403, 'key_expired', 'expired');
  assert.equal(e.type, 'permission_error');
  const from = w.output.length;
  const cron = await w.scheduled();
  assert.equal(cron.status, 200, cron.text);
  assert.ok(await w.waitForOutput(/disabled 1 expired gateway key/, 10_000, from), `purge log line:\n${w.output.slice(from)}`);
  const after = ok(await as('rl-owner', 'GET', `/api/v1/ai_keys/${k.id}`), 'read soon');
  assert.equal(after.status, 'disabled', 'kept, disabled');
  assert.ok(after.used_input_tokens > 0, 'its counters are kept');
  relayFails(await chat('rl-owner', 'soon', 'x'), 403, undefined, 'expired and disabled');
});

test('11. no provider key or user secret is ever seen again: not in a later response or the worker log', async () => {
  // Read everything once more, so there are later responses that could leak.
  for (const who of Object.keys(users)) {
    ok(await as(who, 'GET', '/api/v1/models?include_details=true'));
    ok(await as(who, 'GET', '/api/v1/ai_keys'));
    relayOk(await as(who, 'GET', '/v1/models'));
  }
  for (const k of Object.values(keys)) ok(await as('rl-owner', 'GET', `/api/v1/ai_keys/${k.id}`));
  ok(await w.admin('GET', '/api/v1/admin/audit?limit=1000'));
  await sleep(500); // let the last log lines arrive

  // No provider key or user secret in a later response, the worker log or the SDK script's output.
  const { problems, issued } = leakProblems(w, { credentials: CREDENTIALS, texts: { 'the SDK script output': sdkOutput, "the SDK's received traffic": sdkTraffic } });
  assert.equal(issued.length, Object.keys(users).length, 'one key per user was issued');
  const rows = await w.sql('SELECT * FROM ai_keys');
  assert.ok(rows.length >= 5, `the gateway keys are in D1: ${rows.length}`);
  for (const c of CREDENTIALS) if (JSON.stringify(rows).includes(c)) problems.push('provider key in plaintext in D1 ai_keys');

  assert.deepEqual(problems, []);
  // The scanned log is the worker's: the runtime's line for each recent request, and its own lines.
  assert.deepEqual(workerLogProblems(w, { own: [/\[WARN\] relay answered 50\d: /] }), []);
  assert.ok(w.responses.some((r) => r.path.includes('(stream)')), 'streamed bodies were checked too');
});
