// End to end: the provider catalog, a tenant's model connections and its default models against
// `wrangler dev` (real workerd, local D1 and KV) and the provider stand-in
// (examples/provider_standin) on loopback. One worker and one stand-in for the whole file; tests run
// in order and share them (connections made early are listed, defaulted and removed later). The
// last test is the secret-leak check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fails, leakProblems, ok, workerLogProblems } from './checks.mjs';
import { ROOT, STANDIN_GOOD_KEY, freePort, kv, kvGet, kvList, useStandIn, useWorker } from './harness.mjs';

const w = useWorker();
const standin = useStandIn();

const GOOD = STANDIN_GOOD_KEY;
const BAD = 'sk-standin-bad-9876543210zyxw';
// Sent to a factory that takes no key: refused, and never to be seen again either.
const STRAY = 'sk-stray-ollama-key-5647382910';
const CREDENTIALS = [GOOD, BAD, STRAY];

const COMPAT = 'OpenAI-API-Compatible';
const CHAT = 'standin-chat';
const CHAT_ID = `${CHAT}@${COMPAT}`;
const EMBD = '@cf/baai/bge-base-en-v1.5';
const EMBD_ID = `${EMBD}@Builtin`;
const DEFAULT_FIELDS = ['llm_id', 'embd_id', 'asr_id', 'img2txt_id', 'rerank_id', 'tts_id'];
const ALL_NULL = Object.fromEntries(DEFAULT_FIELDS.map((f) => [f, null]));

/** The Builtin models this deployment enables (wrangler.toml [vars] BUILTIN_MODELS). */
const ENABLED_BUILTIN = (() => {
  const m = /^\s*BUILTIN_MODELS\s*=\s*"([^"]*)"/m.exec(readFileSync(join(ROOT, 'wrangler.toml'), 'utf8'));
  assert.ok(m, 'wrangler.toml has a BUILTIN_MODELS var');
  return m[1].split(',').map((s) => s.trim()).filter(Boolean).sort();
})();

// Users made by the first test, shared by the others.
const users = {}; // name -> {username, tenant_id, role, token}

// ---------------------------------------------------------------- helpers

/** A request as one of the users made by the first test. */
function as(name, method, path, body) {
  const u = users[name];
  assert.ok(u, `user ${name} was not created (the first test failed)`);
  return w.call(method, path, { token: u.token, body });
}

async function mkUser(username, extra = {}) {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username, ...extra }), `create user ${username}`);
  const r = await w.admin('POST', `/api/v1/admin/users/${username}/api_key`, { description: 'models e2e' });
  const k = ok(r, `issue a key for ${username}`);
  assert.match(k.token, /^kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38}$/);
  users[username] = { ...u, token: k.token };
  return users[username];
}

/** The compatible model of the stand-in, as RAGFlow's client sends it. */
function compatBody(extra = {}) {
  return { llm_factory: COMPAT, llm_name: CHAT, base_url: `${standin.base}/v1`, api_key: GOOD, ...extra };
}

const listModels = (who, details = false) =>
  as(who, 'GET', `/api/v1/models${details ? '?include_details=true' : ''}`);
const getDefaults = (who) => as(who, 'GET', '/api/v1/models/default');
const setDefaults = (who, body) => as(who, 'POST', '/api/v1/models/default', body);

/** The tenant's defaults version in D1 (names the KV entry the worker caches its defaults under). */
async function defaultsVersion(tenantId) {
  const rows = await w.sql(`SELECT defaults_version AS v FROM tenants WHERE id = '${tenantId}'`);
  assert.equal(rows.length, 1, `tenant ${tenantId} in D1`);
  return rows[0].v;
}

/** No provider credential in a text. The middle part alone counts too (a hint shows at most the ends). */
function assertNoCredential(text, where) {
  for (const c of CREDENTIALS) {
    assert.ok(!text.includes(c), `${where} contains a provider credential: ${text.slice(0, 2000)}`);
    assert.ok(!text.includes(c.slice(3, -4)), `${where} contains most of a provider credential: ${text.slice(0, 2000)}`);
  }
}

/** Shape of GET /api/v1/models: {factory: {tags, llm: [{type, name, used_token, ...details}]}}. */
function assertListShape(data, details) {
  assert.ok(data && typeof data === 'object' && !Array.isArray(data), `list is an object: ${JSON.stringify(data)}`);
  const base = ['name', 'type', 'used_token'];
  const withDetails = [...base, 'api_base', 'max_tokens', 'status'].sort();
  for (const [factory, entry] of Object.entries(data)) {
    assert.deepEqual(Object.keys(entry).sort(), ['llm', 'tags'], `${factory} entry keys`);
    assert.equal(typeof entry.tags, 'string', `${factory} tags`);
    assert.ok(Array.isArray(entry.llm), `${factory} llm`);
    for (const m of entry.llm) {
      const keys = Object.keys(m).sort();
      if (details) {
        // A masked credential hint may be shown as well; nothing else.
        const extra = keys.filter((k) => !withDetails.includes(k));
        assert.ok(extra.every((k) => k === 'credential_hint'), `${factory}/${m.name} unexpected keys ${extra}`);
        for (const k of withDetails) assert.ok(k in m, `${factory}/${m.name} has ${k} with details`);
        assert.equal(typeof m.status, 'string');
        assert.ok(m.max_tokens === null || Number.isInteger(m.max_tokens), `${factory}/${m.name} max_tokens`);
        assert.ok(m.api_base === null || typeof m.api_base === 'string', `${factory}/${m.name} api_base`);
      } else {
        assert.deepEqual(keys, base, `${factory}/${m.name} keys without details`);
      }
      assert.equal(typeof m.name, 'string');
      assert.ok(['chat', 'embedding', 'rerank', 'speech2text', 'image2text', 'tts'].includes(m.type), `${m.name} type ${m.type}`);
      assert.ok(Number.isInteger(m.used_token) && m.used_token >= 0, `${m.name} used_token`);
    }
  }
}

const strip = (m) => ({ type: m.type, name: m.name, used_token: m.used_token });
const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

// ---------------------------------------------------------------- tests

test('setup: an owner (own tenant), a member of that tenant, and a second tenant owner', async () => {
  const owner = await mkUser('mo-owner');
  assert.equal(owner.role, 'owner');
  const member = await mkUser('mo-member', { tenant_id: owner.tenant_id, role: 'member' });
  assert.equal(member.tenant_id, owner.tenant_id);
  assert.equal(member.role, 'member');
  const other = await mkUser('mo-other');
  assert.notEqual(other.tenant_id, owner.tenant_id);
  assert.equal(other.role, 'owner');
  assert.ok(standin.port > 0, 'the stand-in is listening');
});

test('1. GET /api/v1/factories lists the catalog: OpenAI, Ollama, Builtin with enabled flags', async () => {
  const list = ok(await as('mo-owner', 'GET', '/api/v1/factories'));
  assert.ok(Array.isArray(list), 'a list');
  const byF = new Map(list.map((f) => [f.name, f]));
  for (const name of ['OpenAI', 'Ollama', 'Builtin', COMPAT]) assert.ok(byF.has(name), `catalog has ${name}`);
  for (const f of list) {
    for (const k of ['name', 'tags', 'model_types', 'auth', 'models']) assert.ok(k in f, `${f.name} has ${k}`);
    assert.equal(typeof f.tags, 'string');
    assert.ok(Array.isArray(f.model_types) && Array.isArray(f.models));
    for (const m of f.models) {
      assert.equal(typeof m.name, 'string');
      assert.ok(f.model_types.includes(m.type), `${f.name}/${m.name} type ${m.type} is one of the factory's`);
      assert.ok(Number.isInteger(m.max_tokens) && m.max_tokens > 0, `${f.name}/${m.name} max_tokens`);
    }
  }
  const openai = byF.get('OpenAI');
  assert.ok(openai.models.some((m) => m.name === 'gpt-4o' && m.type === 'chat'), 'OpenAI lists gpt-4o');
  assert.ok(openai.model_types.includes('embedding'));
  const ollama = byF.get('Ollama');
  assert.ok(ollama.model_types.includes('chat'));
  assert.deepEqual(ollama.models, [], 'Ollama has no catalog models (added by name)');

  const builtin = byF.get('Builtin');
  assert.ok(builtin.models.length > ENABLED_BUILTIN.length, 'some Builtin models are not enabled here');
  for (const m of builtin.models) assert.equal(typeof m.enabled, 'boolean', `Builtin ${m.name} has an enabled flag`);
  assert.deepEqual(builtin.models.filter((m) => m.enabled).map((m) => m.name).sort(), ENABLED_BUILTIN);
  assert.ok(builtin.models.some((m) => m.name === EMBD && m.type === 'embedding' && m.enabled));
  assert.ok(builtin.models.some((m) => m.name === '@cf/openai/whisper' && !m.enabled));

  // Any authenticated user reads it; nobody else.
  ok(await as('mo-member', 'GET', '/api/v1/factories'));
  fails(await w.call('GET', '/api/v1/factories'), 401, 109, 'no credential');
});

test('2. connect an OpenAI-API-Compatible model: validated live against the stand-in, stored sealed', async () => {
  const mark = standin.mark();
  const r = await as('mo-owner', 'POST', '/api/v1/models', compatBody());
  assert.equal(ok(r, 'add compatible'), true);
  assert.ok(
    await standin.waitForLog(/^standin: GET \/v1\/models -> 200$/m, 5_000, mark),
    `the stand-in saw the validation call:\n${standin.logSince(mark)}`,
  );
  // At rest the credential is sealed: the row holds no plaintext key.
  const rows = await w.sql(
    `SELECT factory, llm_name, model_type, api_base, credential, credential_hint, settings FROM provider_connections WHERE tenant_id = '${users['mo-owner'].tenant_id}'`,
  );
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0].factory, COMPAT);
  assert.equal(rows[0].llm_name, CHAT);
  assert.equal(rows[0].model_type, 'chat');
  assert.equal(rows[0].api_base, `${standin.base}/v1`);
  assert.ok(rows[0].credential, 'a sealed credential is stored');
  assertNoCredential(JSON.stringify(rows), 'provider_connections row');
});

test('3. connect an Ollama-style model: no key; verify: true probes /api/tags', async () => {
  let mark = standin.mark();
  const body = { llm_factory: 'Ollama', llm_name: 'llama3.2', base_url: standin.base, model_type: 'chat' };
  assert.equal(ok(await as('mo-owner', 'POST', '/api/v1/models', body), 'add Ollama'), true);
  await new Promise((res) => setTimeout(res, 200));
  assert.doesNotMatch(standin.logSince(mark), /\/api\/tags/, 'a self-deployed factory is not probed unless asked');

  mark = standin.mark();
  assert.equal(ok(await as('mo-owner', 'POST', '/api/v1/models', { ...body, verify: true }), 'add Ollama verified'), true);
  assert.ok(
    await standin.waitForLog(/^standin: GET \/api\/tags -> 200$/m, 5_000, mark),
    `verify: true probed the Ollama server:\n${standin.logSince(mark)}`,
  );

  // A second model of the same factory (removed with the factory later).
  const embed = { llm_factory: 'Ollama', llm_name: 'nomic-embed-text', base_url: standin.base, model_type: 'embedding' };
  assert.equal(ok(await as('mo-owner', 'POST', '/api/v1/models', embed), 'add Ollama embedding'), true);

  // Ollama takes no key: one sent is refused by name and not echoed.
  const msg = fails(await as('mo-owner', 'POST', '/api/v1/models', { ...body, api_key: STRAY }), 400, 101, 'Ollama with a key');
  assert.match(msg, /api_key/);
  assert.ok(!msg.includes(STRAY), msg);
  // base_url is required for it.
  const m2 = fails(
    await as('mo-owner', 'POST', '/api/v1/models', { llm_factory: 'Ollama', llm_name: 'x', model_type: 'chat' }),
    400, 101, 'Ollama without base_url',
  );
  assert.match(m2, /base_url/);
});

test('4. failed validation: bad key is 422/102 without the key; unreachable base_url is 502/105', async () => {
  const before = ok(await listModels('mo-owner', true));

  let mark = standin.mark();
  let r = await as('mo-owner', 'POST', '/api/v1/models', compatBody({ api_key: BAD }));
  let msg = fails(r, 422, 102, 'bad key');
  assert.ok(msg.startsWith('Fail to access model('), msg);
  assert.ok(msg.includes(CHAT), `names the model: ${msg}`);
  assertNoCredential(r.text, 'the 422 body');
  assert.ok(
    await standin.waitForLog(/^standin: GET \/v1\/models -> 401$/m, 5_000, mark),
    `the stand-in refused the bad key:\n${standin.logSince(mark)}`,
  );

  const closed = await freePort(); // free a moment ago, nobody listens
  mark = standin.mark();
  r = await as('mo-owner', 'POST', '/api/v1/models', compatBody({ base_url: `http://127.0.0.1:${closed}/v1` }));
  msg = fails(r, 502, 105, 'unreachable base_url');
  assert.ok(msg.startsWith('Fail to access model('), msg);
  assertNoCredential(r.text, 'the 502 body');
  assert.equal(standin.logSince(mark), '', 'the stand-in was not called');

  // Neither failure replaced the working connection.
  assert.deepEqual(ok(await listModels('mo-owner', true)), before, 'the failed adds changed nothing');
  const rows = await w.sql(
    `SELECT api_base FROM provider_connections WHERE tenant_id = '${users['mo-owner'].tenant_id}' AND factory = '${COMPAT}'`,
  );
  assert.deepEqual(rows, [{ api_base: `${standin.base}/v1` }]);
});

test('5. list without and with include_details: RAGFlow shape, details, never a credential', async () => {
  const plain = ok(await listModels('mo-owner'));
  assertListShape(plain, false);
  for (const f of ['Builtin', COMPAT, 'Ollama']) assert.ok(f in plain, `list has ${f}: ${JSON.stringify(plain)}`);
  assert.ok(!('OpenAI' in plain), 'a factory the tenant has not connected is not listed');

  const factories = ok(await as('mo-owner', 'GET', '/api/v1/factories'));
  const tags = Object.fromEntries(factories.map((f) => [f.name, f.tags]));
  for (const f of Object.keys(plain)) assert.equal(plain[f].tags, tags[f], `${f} tags as in the catalog`);

  assert.deepEqual(plain[COMPAT].llm, [{ type: 'chat', name: CHAT, used_token: 0 }]);
  assert.deepEqual(plain.Ollama.llm.map(strip).sort(byName), [
    { type: 'chat', name: 'llama3.2', used_token: 0 },
    { type: 'embedding', name: 'nomic-embed-text', used_token: 0 },
  ]);
  assert.deepEqual(plain.Builtin.llm.map((m) => m.name).sort(), ENABLED_BUILTIN, 'Builtin lists the enabled models');

  const detailed = ok(await listModels('mo-owner', true));
  assertListShape(detailed, true);
  assert.deepEqual(Object.keys(detailed).sort(), Object.keys(plain).sort());
  for (const f of Object.keys(plain)) {
    assert.deepEqual(detailed[f].llm.map(strip).sort(byName), plain[f].llm.slice().sort(byName), `${f}: details only add fields`);
  }
  const chat = detailed[COMPAT].llm[0];
  assert.equal(chat.api_base, `${standin.base}/v1`);
  assert.equal(chat.status, 'valid');
  if (chat.credential_hint != null) {
    assert.equal(typeof chat.credential_hint, 'string');
    assert.notEqual(chat.credential_hint, GOOD);
    assert.ok(chat.credential_hint.length < GOOD.length, `the hint is masked: ${chat.credential_hint}`);
  }
  for (const m of detailed.Ollama.llm) {
    assert.equal(m.api_base, standin.base);
    assert.equal(m.status, 'valid');
    assert.ok(m.credential_hint == null, 'a keyless connection has no hint');
  }
  for (const m of detailed.Builtin.llm) {
    assert.equal(m.status, 'valid');
    assert.ok(Number.isInteger(m.max_tokens) && m.max_tokens > 0, `Builtin ${m.name} max_tokens`);
  }

  // "false" is the default; anything but a boolean is refused.
  assert.deepEqual(ok(await as('mo-owner', 'GET', '/api/v1/models?include_details=false')), plain);
  fails(await as('mo-owner', 'GET', '/api/v1/models?include_details=maybe'), 400, 101, 'bad include_details');

  // A member reads the same list.
  assert.deepEqual(ok(await listModels('mo-member', true)), detailed);

  // No response so far carries a provider credential.
  for (const resp of w.responses) assertNoCredential(resp.text, `response #${resp.seq} ${resp.method} ${resp.path}`);
});

test('6. defaults: set, read back (cached in KV), invalid ids change nothing, clear, members read only', async () => {
  const owner = users['mo-owner'];
  assert.deepEqual(ok(await getDefaults('mo-owner')), ALL_NULL, 'nothing set yet');

  const v0 = await defaultsVersion(owner.tenant_id);
  assert.equal(ok(await setDefaults('mo-owner', { llm_id: CHAT_ID, embd_id: EMBD })), true);
  const v1 = await defaultsVersion(owner.tenant_id);
  assert.ok(v1 > v0, `a change moves the defaults version (${v0} -> ${v1})`);

  const expected = { ...ALL_NULL, llm_id: CHAT_ID, embd_id: EMBD_ID };
  const got = ok(await getDefaults('mo-owner'));
  assert.deepEqual(Object.keys(got).sort(), DEFAULT_FIELDS.slice().sort(), 'all six fields');
  assert.deepEqual(got, expected, 'canonical ids, null for the rest');
  assert.deepEqual(ok(await getDefaults('mo-owner')), expected, 'a second read (from KV) agrees');

  // The read cached the defaults in KV under defaults:<tenant>:<version>, value = that JSON.
  const prefix = `defaults:${owner.tenant_id}:`;
  const keys = (await kvList(w, prefix)).map((k) => k.name);
  assert.ok(keys.includes(`${prefix}${v1}`), `KV has ${prefix}${v1}: ${JSON.stringify(keys)}`);
  for (const k of keys) assert.match(k, new RegExp(`^${prefix}\\d+$`), `KV key shape ${k}`);
  const cached = await kvGet(w, `${prefix}${v1}`);
  assert.ok(cached !== null, 'the KV entry has a value');
  assert.deepEqual(JSON.parse(cached), expected, `KV value: ${cached}`);
  assertNoCredential(cached, 'the KV entry');

  // One invalid id rejects the whole request, listing every invalid one; nothing changes.
  const r = await setDefaults('mo-owner', {
    llm_id: 'nope-model@OpenAI-API-Compatible', // not configured
    embd_id: CHAT_ID, // a chat model, not an embedding model
    asr_id: '@cf/openai/whisper', // a Builtin model not enabled here
    rerank_id: '@cf/baai/bge-reranker-base', // valid on its own
  });
  const msg = fails(r, 400, 101, 'invalid defaults');
  for (const bad of ['nope-model', CHAT, '@cf/openai/whisper']) assert.ok(msg.includes(bad), `message lists ${bad}: ${msg}`);
  for (const field of ['llm_id', 'embd_id', 'asr_id']) assert.ok(msg.includes(field), `message names ${field}: ${msg}`);
  assert.ok(!msg.includes('rerank_id'), `the valid field is not listed: ${msg}`);
  assert.equal(await defaultsVersion(owner.tenant_id), v1, 'the version did not move');
  assert.deepEqual(ok(await getDefaults('mo-owner')), expected, 'nothing changed (rerank_id not set either)');
  fails(await setDefaults('mo-owner', {}), 400, 101, 'no field');
  fails(await setDefaults('mo-owner', { llm: CHAT_ID }), 400, 101, 'unknown field');
  fails(await setDefaults('mo-owner', { llm_id: 'gpt-4o@OpenAI' }), 400, 101, 'factory not connected');
  assert.deepEqual(ok(await getDefaults('mo-owner')), expected, 'still nothing changed');

  // null clears a field; fields not sent stay; "" clears too.
  assert.equal(ok(await setDefaults('mo-owner', { embd_id: null })), true);
  const afterClear = { ...expected, embd_id: null };
  assert.deepEqual(ok(await getDefaults('mo-owner')), afterClear);
  assert.equal(ok(await setDefaults('mo-owner', { rerank_id: '@cf/baai/bge-reranker-base' })), true);
  assert.deepEqual(ok(await getDefaults('mo-owner')), { ...afterClear, rerank_id: '@cf/baai/bge-reranker-base@Builtin' });
  assert.equal(ok(await setDefaults('mo-owner', { rerank_id: '' })), true);
  assert.deepEqual(ok(await getDefaults('mo-owner')), afterClear);
  const v2 = await defaultsVersion(owner.tenant_id);
  assert.deepEqual(JSON.parse(await kvGet(w, `${prefix}${v2}`)), afterClear, 'the newest KV entry is the current JSON');

  // A member reads the tenant's defaults and models but may change neither.
  assert.deepEqual(ok(await getDefaults('mo-member')), afterClear);
  fails(await setDefaults('mo-member', { embd_id: EMBD }), 403, 108, 'member sets defaults');
  fails(await as('mo-member', 'POST', '/api/v1/models', compatBody({ llm_name: 'member-model' })), 403, 108, 'member adds');
  fails(await as('mo-member', 'DELETE', '/api/v1/models', { llm_factory: COMPAT, llm_name: CHAT }), 403, 108, 'member removes');
  assert.deepEqual(ok(await getDefaults('mo-owner')), afterClear, 'the member changed nothing');
  assert.ok(ok(await listModels('mo-owner'))[COMPAT], 'the member removed nothing');
});

test('7. removing the compatible model clears the default pointing at it at once; again is 404', async () => {
  const owner = users['mo-owner'];
  const prefix = `defaults:${owner.tenant_id}:`;
  const vBefore = await defaultsVersion(owner.tenant_id);
  assert.equal(ok(await getDefaults('mo-owner')).llm_id, CHAT_ID, 'precondition: llm_id set (test 6)');
  assert.ok((await kvGet(w, `${prefix}${vBefore}`)) !== null, 'precondition: cached in KV');

  const r = await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: COMPAT, llm_name: CHAT });
  assert.equal(ok(r, 'remove compatible'), true);

  // At once: the answer must not come from the cached entry of the old version.
  const now = ok(await getDefaults('mo-owner'));
  assert.deepEqual(now, ALL_NULL, 'llm_id cleared (embd_id was cleared in test 6)');
  assert.deepEqual(ok(await getDefaults('mo-member')), ALL_NULL, 'the member sees it too');
  const vAfter = await defaultsVersion(owner.tenant_id);
  assert.ok(vAfter > vBefore, `the removal moved the defaults version (${vBefore} -> ${vAfter})`);
  assert.deepEqual(JSON.parse(await kvGet(w, `${prefix}${vAfter}`)), ALL_NULL, 'the new KV entry');
  // The old version's entry may remain (it expires by TTL); if so it still names the removed model,
  // which shows the answer above did not come from it.
  const stale = await kvGet(w, `${prefix}${vBefore}`);
  if (stale !== null) assert.equal(JSON.parse(stale).llm_id, CHAT_ID, `old entry: ${stale}`);
  assert.equal((await w.sql(`SELECT COUNT(*) AS n FROM tenant_defaults WHERE tenant_id = '${owner.tenant_id}'`))[0].n, 0);

  const list = ok(await listModels('mo-owner'));
  assert.ok(!(COMPAT in list) || !list[COMPAT].llm.some((m) => m.name === CHAT), `gone from the list: ${JSON.stringify(list)}`);
  assert.ok(list.Ollama, 'the other factory stays');

  const msg = fails(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: COMPAT, llm_name: CHAT }), 404, 404, 'remove again');
  assert.ok(msg.includes(CHAT), msg);
  fails(await setDefaults('mo-owner', { llm_id: CHAT_ID }), 400, 101, 'a removed model is no valid default');
  fails(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: 'Builtin' }), 400, 101, 'Builtin cannot be removed');
  fails(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: 'NoSuchFactory' }), 400, 101, 'unknown factory');
});

test('8. removing the whole Ollama factory removes all its models; again is 404', async () => {
  const before = ok(await listModels('mo-owner'));
  assert.equal(before.Ollama?.llm.length, 2, `precondition: two Ollama models: ${JSON.stringify(before)}`);
  assert.equal(ok(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: 'Ollama' }), 'remove Ollama'), true);
  const after = ok(await listModels('mo-owner'));
  assert.ok(!('Ollama' in after), `Ollama is gone: ${JSON.stringify(after)}`);
  assert.ok('Builtin' in after, 'Builtin always stays');
  const detailed = ok(await listModels('mo-owner', true));
  assert.ok(!('Ollama' in detailed));
  fails(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: 'Ollama' }), 404, 404, 'remove Ollama again');
  fails(await as('mo-owner', 'DELETE', '/api/v1/models', { llm_factory: 'Ollama', llm_name: 'llama3.2' }), 404, 404, 'a model of it');
  const rows = await w.sql(`SELECT COUNT(*) AS n FROM provider_connections WHERE tenant_id = '${users['mo-owner'].tenant_id}'`);
  assert.equal(rows[0].n, 0, 'no connection rows left');
});

test('9. a second tenant sees none of the first tenant’s connections or defaults and cannot remove them', async () => {
  // The first tenant connects again and sets a default.
  const mark = standin.mark();
  const c2 = 'standin-chat-2';
  assert.equal(ok(await as('mo-owner', 'POST', '/api/v1/models', compatBody({ llm_name: c2 }))), true);
  assert.ok(await standin.waitForLog(/^standin: GET \/v1\/models -> 200$/m, 5_000, mark), standin.logSince(mark));
  const ollama = { llm_factory: 'Ollama', llm_name: 'llama3.2', base_url: standin.base, model_type: 'chat' };
  assert.equal(ok(await as('mo-owner', 'POST', '/api/v1/models', ollama)), true);
  assert.equal(ok(await setDefaults('mo-owner', { llm_id: `${c2}@${COMPAT}`, embd_id: EMBD })), true);
  const ownerDefaults = { ...ALL_NULL, llm_id: `${c2}@${COMPAT}`, embd_id: EMBD_ID };
  assert.deepEqual(ok(await getDefaults('mo-owner')), ownerDefaults);
  const ownerList = ok(await listModels('mo-owner', true));
  assert.ok(ownerList[COMPAT] && ownerList.Ollama);

  // The other tenant: only Builtin, no defaults.
  for (const details of [false, true]) {
    const list = ok(await listModels('mo-other', details));
    assertListShape(list, details);
    assert.deepEqual(Object.keys(list), ['Builtin'], `other tenant's list: ${JSON.stringify(list)}`);
    assert.ok(!JSON.stringify(list).includes(standin.base), 'no trace of the first tenant’s base URL');
  }
  assert.deepEqual(ok(await getDefaults('mo-other')), ALL_NULL);
  const msg = fails(await setDefaults('mo-other', { llm_id: `${c2}@${COMPAT}` }), 400, 101, 'other tenant defaults to a foreign model');
  assert.ok(msg.includes(c2), msg);
  fails(await setDefaults('mo-other', { llm_id: 'llama3.2' }), 400, 101, 'bare name of a foreign model');
  fails(await as('mo-other', 'DELETE', '/api/v1/models', { llm_factory: COMPAT, llm_name: c2 }), 404, 404, 'delete a foreign model');
  fails(await as('mo-other', 'DELETE', '/api/v1/models', { llm_factory: COMPAT }), 404, 404, 'delete a foreign factory');
  fails(await as('mo-other', 'DELETE', '/api/v1/models', { llm_factory: 'Ollama' }), 404, 404, 'delete foreign Ollama');
  fails(await as('mo-other', 'DELETE', '/api/v1/models', { llm_factory: 'Ollama', llm_name: 'llama3.2' }), 404, 404, 'foreign Ollama model');

  // Its own default (a Builtin) lives under its own KV key and does not touch the first tenant's.
  assert.equal(ok(await setDefaults('mo-other', { embd_id: EMBD })), true);
  assert.deepEqual(ok(await getDefaults('mo-other')), { ...ALL_NULL, embd_id: EMBD_ID });
  const other = users['mo-other'];
  const vOther = await defaultsVersion(other.tenant_id);
  assert.deepEqual(JSON.parse(await kvGet(w, `defaults:${other.tenant_id}:${vOther}`)), { ...ALL_NULL, embd_id: EMBD_ID });

  // The first tenant still has everything.
  assert.deepEqual(ok(await listModels('mo-owner', true)), ownerList);
  assert.deepEqual(ok(await getDefaults('mo-owner')), ownerDefaults);
});

test('10. no provider key or user secret is ever seen again: not in a later response, KV or the worker log', async () => {
  // Read everything once more, so there are later responses that could leak.
  for (const who of Object.keys(users)) {
    ok(await listModels(who, true));
    ok(await getDefaults(who));
    ok(await as(who, 'GET', '/api/v1/me'));
  }
  ok(await w.admin('GET', '/api/v1/admin/audit?limit=1000'));
  ok(await w.admin('GET', '/api/v1/admin/users'));
  await new Promise((r) => setTimeout(r, 500)); // let the last log lines arrive

  // Provider credentials only ever travel in requests; every user secret is only in the response
  // that created it: no later response, no log line (checks.mjs), no KV value, no D1 row in plaintext.
  const { problems, issued } = leakProblems(w, { credentials: CREDENTIALS });
  assert.equal(issued.length, Object.keys(users).length, 'one key per user was issued');
  const kvKeys = await kvList(w);
  assert.ok(kvKeys.length >= 2, `the defaults of both tenants were cached: ${JSON.stringify(kvKeys)}`);
  for (const k of kvKeys) {
    const v = await kv(w, 'key', 'get', k.name, '--text');
    for (const c of CREDENTIALS) if (v.includes(c)) problems.push(`provider key in KV ${k.name}`);
  }
  const rows = await w.sql('SELECT * FROM provider_connections');
  for (const c of CREDENTIALS) if (JSON.stringify(rows).includes(c)) problems.push('provider key in plaintext in D1');

  assert.deepEqual(problems, []);
  // The scanned log is the worker's: the runtime's line for each recent request, and its own lines.
  assert.deepEqual(workerLogProblems(w, { own: [] }), []);
});
