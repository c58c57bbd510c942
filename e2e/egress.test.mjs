// End to end: where requests and stored credentials may go, against `wrangler dev` (real workerd,
// local D1 and KV) and two provider stand-ins on loopback (examples/provider_standin). Mirrors
// tests/egress.rs on the real runtime:
// - the loop as reported (a connection whose base_url is this worker's own /v1, a keyward token as
//   its api_key, verify: false, a model resolving to itself): refused when saved; and, with such a
//   row put straight into local D1, a relayed call that ends at once with 508 after a bounded
//   number of nested requests (counted in wrangler's request log), /health still fast;
// - the hop header refused on arrival, in both shapes;
// - a provider redirect (307, 302) never followed: 502 naming it, the second server reached by
//   nothing (so by no credential header either), in validation and relay, whole and streamed;
// - the re-pointing attack: an admin re-adding the owner's connection with their own URL never
//   receives the owner's gateway key.
// The worker allows loopback in provider URLs (the harness's default var), as `make dev` does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fails, leakProblems, ok } from './checks.mjs';
import { ROOT, STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

const w = useWorker();
const provider = useStandIn();
const other = useStandIn();

const GOOD = STANDIN_GOOD_KEY;
const ADMIN_OWN_KEY = 'sk-e2e-admin-own-key-00000000';
const COMPAT = 'OpenAI-API-Compatible';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const users = {}; // name -> {username, tenant_id, role, token}

async function mkUser(username, extra = {}) {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username, ...extra }), `create user ${username}`);
  const k = ok(await w.admin('POST', `/api/v1/admin/users/${username}/api_key`, { description: 'egress e2e' }), `key for ${username}`);
  users[username] = { ...u, token: k.token };
  return users[username];
}

const as = (name, method, path, body, opts = {}) => w.call(method, path, { ...opts, token: users[name].token, body });

function chatBody(model, stream = false) {
  return { model, stream, messages: [{ role: 'user', content: 'hello' }] };
}

/** A relay error in OpenAI's shape; returns error. */
function relayFails(r, status, code, what = '') {
  assert.equal(r.status, status, `${what} expected ${status}, got ${r.status}: ${r.text}`);
  assert.ok(r.json && r.json.error, `${what} OpenAI error shape: ${r.text}`);
  assert.deepEqual(Object.keys(r.json), ['error'], `${what}: ${r.text}`);
  if (code !== undefined) assert.equal(r.json.error.code, code, `${what}: ${r.text}`);
  return r.json.error;
}

/** `KEY=value` from .dev.vars. */
function devVar(name) {
  for (const line of readFileSync(join(ROOT, '.dev.vars'), 'utf8').split(/\r?\n/)) {
    const m = new RegExp(`^\\s*${name}\\s*=\\s*(.*?)\\s*$`).exec(line);
    if (m) return m[1].replace(/^(['"])(.*)\1$/, '$2');
  }
  throw new Error(`.dev.vars has no ${name}`);
}

/**
 * A provider connection's row as the worker would write it (src/providers/mod.rs connection_id,
 * src/domain/crypto.rs credential_aad and the sealed layout base64(nonce || ciphertext || tag)),
 * sealed with this worker's master key, as an INSERT statement.
 */
function connectionRow({ tenant, factory, llmName, apiBase, secrets }) {
  const id = createHash('sha256').update(`${tenant}\0${factory}\0${llmName}`).digest('hex').slice(0, 32);
  const key = Buffer.from(devVar('KEYWARD_ENCRYPTION_KEY'), 'base64');
  assert.equal(key.length, 32, 'KEYWARD_ENCRYPTION_KEY is 32 bytes');
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(`keyward/credential/v1\0${tenant}\0${factory}\0${llmName}\0${id}`));
  const ct = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
  const sealed = Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString('base64');
  const q = (s) => `'${String(s).replace(/'/g, "''")}'`;
  const now = Date.now();
  return `INSERT INTO provider_connections (id, tenant_id, factory, llm_name, model_type, api_base, settings, \
key_version, credential, credential_hint, max_tokens, status, create_date, update_date) VALUES (${q(id)}, \
${q(tenant)}, ${q(factory)}, ${q(llmName)}, 'chat', ${q(apiBase)}, '{}', 1, ${q(sealed)}, '****', NULL, 'valid', ${now}, ${now})`;
}

/** A base URL on stand-in `first` answering `status` with a Location on `second` + `path`. */
function redirecting(first, status, second, path) {
  return `${first.base}/redirect/${status}/${encodeURIComponent(`${second.base}${path}`)}`;
}

/** wrangler's request lines (`[wrangler:info] POST /v1/chat/completions 508 ...`) since `from`. */
function requestLines(from, re) {
  return w.output.slice(from).split('\n').filter((l) => /\[wrangler:info\]/.test(l) && re.test(l));
}

async function healthMs(n = 10) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await w.call('GET', '/health');
    times.push(performance.now() - t0);
    assert.equal(r.status, 200);
  }
  return Math.max(...times);
}

// ---------------------------------------------------------------- tests

test('setup: an owner, an admin of the same tenant', async () => {
  const owner = await mkUser('eg-owner');
  await mkUser('eg-admin', { tenant_id: owner.tenant_id, role: 'admin' });
  assert.ok(provider.port > 0 && other.port > 0, 'both stand-ins are listening');
});

test('the hop header is refused on arrival with 508, in OpenAI shape on /v1 and the envelope elsewhere', async () => {
  const hop = { 'x-keyward-hop': '1' };
  const mark = w.output.length;
  let r = await as('eg-owner', 'POST', '/v1/chat/completions', chatBody('x'), { headers: hop });
  const e = relayFails(r, 508, 'loop_detected', 'relay');
  assert.equal(e.type, 'invalid_request_error');
  r = await as('eg-owner', 'GET', '/api/v1/me', undefined, { headers: hop });
  assert.match(fails(r, 508, 508, 'envelope'), /Loop detected/);
  r = await w.call('GET', '/api/v1/me', { headers: hop }); // no credential at all: still 508, not 401
  fails(r, 508, 508, 'without a credential');
  assert.ok(
    await w.waitForOutput(/refused GET \/api\/v1\/me: it carries x-keyward-hop/, 10_000, mark),
    `a warning line names the refusal:\n${w.output.slice(mark)}`,
  );
});

test('the loop as reported is refused when saved: a base_url naming this worker, in several spellings', async () => {
  const { token } = users['eg-owner'];
  for (const base of [
    `${w.base}/v1`,
    `http://localhost:${w.port}/v1`,
    `http://LOCALHOST.:${w.port}/v1/`,
    `http://[::ffff:127.0.0.1]:${w.port}/v1`,
    `http://2130706433:${w.port}/v1`,
    `http://0x7f.1:${w.port}/v1`,
  ]) {
    const r = await as('eg-owner', 'POST', '/api/v1/models', {
      llm_factory: COMPAT, llm_name: 'loop', base_url: base, api_key: token, verify: false,
    });
    const m = fails(r, 400, 101, base);
    assert.match(m, /^base_url: .* is this keyward deployment itself/, base);
  }
  const rows = await w.sql("SELECT COUNT(*) AS n FROM provider_connections WHERE llm_name = 'loop'");
  assert.equal(rows[0].n, 0, 'nothing was stored');
  // A private address is refused too (only loopback is allowed on this worker).
  const r = await as('eg-owner', 'POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: 'lan', base_url: 'http://192.168.1.20:8000/v1', verify: false,
  });
  assert.match(fails(r, 400, 101, 'private'), /is a private address/);
});

test('a stored loop row: the relayed call ends at once with 508 after at most 2 nested requests, /health stays fast', async () => {
  const owner = users['eg-owner'];
  // The row the save refuses, written as an older version (or a direct write) would have.
  await w.sql(connectionRow({
    tenant: owner.tenant_id, factory: COMPAT, llmName: 'loop', apiBase: `${w.base}/v1`,
    secrets: { api_key: owner.token },
  }));
  const before = await healthMs();
  for (const stream of [false, true]) {
    const mark = w.output.length;
    const t0 = performance.now();
    const r = await as('eg-owner', 'POST', '/v1/chat/completions', chatBody(`loop@${COMPAT}`, stream));
    const took = performance.now() - t0;
    const e = relayFails(r, 508, 'loop_detected', `stream=${stream}`);
    assert.equal(e.type, 'upstream_error');
    assert.ok(took < 5_000, `answered in ${took.toFixed(0)} ms`);
    assert.ok(await w.waitForOutput(/refused POST \/v1\/chat\/completions: it carries x-keyward-hop/, 10_000, mark),
      `the nested request was refused by its hop header:\n${w.output.slice(mark)}`);
    await sleep(1_500); // anything still looping would keep logging meanwhile
    const nested = requestLines(mark, /POST \/v1\/chat\/completions/);
    assert.ok(nested.length >= 1 && nested.length <= 2, `nested requests (stream=${stream}): ${nested.length}\n${nested.join('\n')}`);
    assert.ok(nested.every((l) => / 508 /.test(l)), nested.join('\n'));
    process.stderr.write(`egress e2e: loop (stream=${stream}) ended with 508 in ${took.toFixed(0)} ms after ${nested.length} POST /v1/chat/completions (client's and nested)\n`);
  }
  const after = await healthMs();
  assert.ok(after < 2_000, `/health slowest of 10 after the loop: ${after.toFixed(0)} ms (before: ${before.toFixed(0)} ms)`);
  process.stderr.write(`egress e2e: /health slowest of 10: ${before.toFixed(0)} ms before, ${after.toFixed(0)} ms after\n`);
});

test('a redirect is never followed: validation and relay, whole and streamed, answer 502 naming it; the target receives nothing', async () => {
  const mark = other.mark();
  for (const status of [307, 302]) {
    // Validation, for each way a credential travels (Authorization, x-api-key, api-key).
    for (const body of [
      { llm_factory: 'OpenAI', base_url: redirecting(provider, status, other, '/v1'), api_key: GOOD },
      { llm_factory: 'Anthropic', base_url: redirecting(provider, status, other, ''), api_key: GOOD },
      { llm_factory: 'Azure-OpenAI', endpoint: redirecting(provider, status, other, ''), deployment: 'gpt4o', api_key: GOOD },
    ]) {
      const r = await as('eg-owner', 'POST', '/api/v1/models', body);
      const m = fails(r, 502, 105, `${status} ${body.llm_factory}`);
      assert.match(m, new RegExp(`answered with a redirect \\(HTTP ${status}\\); keyward does not follow redirects with a credential`), m);
    }
    // The relay, over rows saved without validation.
    const name = `redir-${status}`;
    ok(await as('eg-owner', 'POST', '/api/v1/models', {
      llm_factory: COMPAT, llm_name: name, base_url: redirecting(provider, status, other, '/v1'), api_key: GOOD, verify: false,
    }), `save ${name}`);
    ok(await as('eg-owner', 'POST', '/api/v1/models', {
      llm_factory: 'Anthropic', llm_name: `claude-${status}`, base_url: redirecting(provider, status, other, ''), api_key: GOOD, verify: false,
    }), `save claude-${status}`);
    for (const model of [`${name}@${COMPAT}`, `claude-${status}@Anthropic`]) {
      for (const stream of [false, true]) {
        const r = await as('eg-owner', 'POST', '/v1/chat/completions', chatBody(model, stream));
        const e = relayFails(r, 502, 'upstream_redirect', `${model} stream=${stream}`);
        assert.match(e.message, new RegExp(`answered with a redirect \\(HTTP ${status}\\)`));
      }
    }
  }
  assert.ok(await provider.waitForLog(/\/redirect\/302\/.*-> 302/, 5_000), 'the first server answered the redirects');
  await sleep(500);
  assert.equal(other.logSince(mark), '', 'the redirect target received a request (and so the credential headers)');
});

test('the re-pointing attack: an admin re-adding the connection with their own URL never receives the owner\'s gateway key', async () => {
  ok(await as('eg-owner', 'POST', '/api/v1/models', { llm_factory: 'OpenAI', base_url: `${provider.base}/v1`, api_key: GOOD }), 'owner connects OpenAI');
  const k = ok(await as('eg-owner', 'POST', '/api/v1/ai_keys', {
    alias: 'owners-key', provider: 'OpenAI', model: 'gpt-4o', api_key: GOOD, input_limit: 0, status: 'enabled',
  }), 'owner creates a gateway key');
  assert.equal(k.endpoint_host, `127.0.0.1:${provider.port}`);
  ok(await as('eg-admin', 'POST', '/api/v1/models', {
    llm_factory: 'OpenAI', base_url: `${other.base}/v1`, api_key: ADMIN_OWN_KEY, verify: false,
  }), 'the admin re-points OpenAI at their own server');
  const mark = other.mark();
  const pmark = provider.mark();
  for (const stream of [false, true]) {
    const r = await as('eg-admin', 'POST', '/v1/chat/completions', chatBody('owners-key', stream));
    assert.equal(r.status, 200, `through the owner's key (stream=${stream}): ${r.text}`);
  }
  await sleep(500);
  assert.equal(other.logSince(mark), '', 'the admin\'s server received the owner\'s calls');
  const served = provider.logSince(pmark).split('\n').filter((l) => /POST \/v1\/chat\/completions -> 200/.test(l));
  assert.equal(served.length, 2, `both calls went where the key was stored for:\n${provider.logSince(pmark)}`);
  const audit = await w.sql(`SELECT detail FROM audit WHERE action = 'model.add' AND tenant_id = '${users['eg-owner'].tenant_id}' AND target = 'OpenAI/' ORDER BY id`);
  assert.deepEqual(
    audit.map((a) => a.detail).slice(-2),
    [`verified=true endpoint=127.0.0.1:${provider.port}`, `verified=false endpoint=127.0.0.1:${provider.port}->127.0.0.1:${other.port}`],
  );
});

test('no token, admin token or provider key in any response or the worker log', async () => {
  await sleep(500);
  const { problems } = leakProblems(w, { credentials: [GOOD, ADMIN_OWN_KEY] });
  assert.deepEqual(problems, []);
  assert.match(w.output, /refused POST \/v1\/chat\/completions: it carries x-keyward-hop/, 'the worker log holds its own lines');
});
