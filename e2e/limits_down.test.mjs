// End to end: when the limits objects cannot be reached (here a deployment whose LIMITS Durable
// Object binding is missing, on real workerd), a call of a gateway key or a tenant with limits
// over time gets 503 `limits_unavailable` with Retry-After and nothing is forwarded to the
// provider or spent; a key without limits over time in a tenant without them is relayed as
// always.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leakProblems, ok } from './checks.mjs';
import { STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

const w = useWorker({ withoutLimitsObjects: true });
const standin = useStandIn();
const COMPAT = 'OpenAI-API-Compatible';
const GOOD = STANDIN_GOOD_KEY;
let token = null;
let tenantId = null;

const as = (method, path, body) => w.call(method, path, { token, body });
const chat = (model) =>
  as('POST', '/v1/chat/completions', { model, max_tokens: 5, messages: [{ role: 'user', content: 'hello' }] });

test('setup: an owner with a chat model and two gateway keys, one with limits over time', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'limits-down' }), 'user');
  tenantId = u.tenant_id;
  token = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, {}), 'key').token;
  ok(await as('POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: 'standin-chat', base_url: `${standin.base}/v1`, api_key: GOOD,
  }), 'chat model');
  for (const [alias, extra] of [['limited', { rpm_limit: 100 }], ['plain', {}]]) {
    ok(await as('POST', '/api/v1/ai_keys', {
      alias, provider: COMPAT, model: 'standin-chat', api_key: GOOD, input_limit: 0, status: 'enabled', ...extra,
    }), alias);
  }
});

test('a key with limits fails closed: 503 limits_unavailable, Retry-After, nothing forwarded', async () => {
  const mark = standin.mark();
  const r = await chat('limited');
  assert.equal(r.status, 503, r.text);
  const body = JSON.parse(r.text);
  assert.equal(body.error.code, 'limits_unavailable');
  assert.equal(r.headers.get('retry-after'), '5');
  assert.equal(standin.logSince(mark), '', 'the provider was called');
  const key = ok(await as('GET', '/api/v1/ai_keys?search=limited'), 'list').items[0];
  assert.equal(key.used_input_tokens + key.used_output_tokens, 0);
});

test('a key without limits is relayed as always; a tenant with limits fails closed for it too', async () => {
  const mark = standin.mark();
  const r = await chat('plain');
  assert.equal(r.status, 200, r.text);
  assert.ok(await standin.waitForLog(/POST \/v1\/chat\/completions -> 200/, 2_000, mark));
  ok(await w.admin('PUT', `/api/v1/admin/tenants/${tenantId}/limits`, { token_budget: 1000000 }), 'tenant limits');
  const after = standin.mark();
  const refused = await chat('plain');
  assert.equal(refused.status, 503, refused.text);
  assert.equal(JSON.parse(refused.text).error.code, 'limits_unavailable');
  assert.equal(standin.logSince(after), '');
});

test('no provider key is seen', () => {
  assert.deepEqual(leakProblems(w, { credentials: [GOOD] }).problems, []);
});
