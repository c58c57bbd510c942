// End to end: the deployment's default provider (DEFAULT_LLM_* vars and the DEFAULT_LLM_API_KEY
// secret, RAGFlow's user_default_llm) on `wrangler dev` (real workerd, local D1 and KV) with the
// provider stand-in on loopback. A user created without a tenant signs in and relays a chat through
// the connection their tenant was created with, with no setup of their own; an invalid
// configuration refuses tenant creation with the misconfigured 500 and a log line, and writes
// nothing. One worker (started after the stand-in, whose port DEFAULT_LLM_BASE_URL names) for the
// file, and a second one, misconfigured, for the last test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { STANDIN_GOOD_KEY, startStandIn, Worker } from './harness.mjs';

const GOOD = STANDIN_GOOD_KEY;

const w = new Worker();
let standin = null;
let bad = null;
before(async () => {
  standin = await startStandIn();
  await w.start({
    vars: {
      DEFAULT_LLM_FACTORY: 'OpenAI',
      DEFAULT_LLM_BASE_URL: `${standin.base}/v1`,
      DEFAULT_LLM_MODELS: 'llm_id=gpt-4o-mini,embd_id=text-embedding-3-small',
      // A secret in a deployment (`wrangler secret put`); wrangler dev hands --var values to the
      // worker the same way.
      DEFAULT_LLM_API_KEY: GOOD,
    },
  });
}, { timeout: 15 * 60_000 });
after(async () => {
  await w.stop();
  if (bad) await bad.stop();
  if (standin) await standin.stop();
}, { timeout: 30_000 });

let token = null;
let tenantId = null;

test('a user created without a tenant finds the seeded connection under Added models and relays a chat through it', async () => {
  const mark = standin.mark();
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'first-signin@example.com' }), 'create user');
  tenantId = u.tenant_id;
  const k = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, { description: 'seeded e2e' }), 'key');
  token = k.token;
  // Nothing was called to seed it.
  assert.equal(standin.logSince(mark), '', 'seeding made a provider call');

  const models = ok(await w.call('GET', '/api/v1/models?include_details=true', { token }), 'models');
  const llm = models.OpenAI?.llm ?? [];
  const mini = llm.find((m) => m.name === 'gpt-4o-mini');
  assert.ok(mini, JSON.stringify(models));
  assert.equal(mini.type, 'chat');
  assert.equal(mini.status, 'valid');
  assert.equal(mini.credential_hint, 'sk...6789');
  assert.equal(mini.api_base, `${standin.base}/v1`);
  const defaults = ok(await w.call('GET', '/api/v1/models/default', { token }), 'defaults');
  assert.equal(defaults.llm_id, 'gpt-4o-mini@OpenAI');
  assert.equal(defaults.embd_id, 'text-embedding-3-small@OpenAI');

  // The relay's default chat model is the seeded one, called with the deployment's key.
  const r = await w.call('POST', '/v1/chat/completions', {
    token,
    body: { model: 'default', messages: [{ role: 'user', content: 'hello' }] },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'chat.completion');
  assert.match(r.json.choices[0].message.content, /hello/);
  assert.ok(await standin.waitForLog(/POST \/v1\/chat\/completions -> 200/, 2_000, mark), standin.logSince(mark));
  // And by its id, as any model of the tenant.
  const byId = await w.call('POST', '/v1/chat/completions', {
    token,
    body: { model: 'gpt-4o-mini@OpenAI', messages: [{ role: 'user', content: 'again' }] },
  });
  assert.equal(byId.status, 200, byId.text);
  const list = await w.call('GET', '/v1/models', { token });
  assert.equal(list.status, 200, list.text);
  assert.ok(list.json.data.some((m) => m.id === 'gpt-4o-mini@OpenAI'), list.text);
});

test('the connection and defaults are in D1 with the tenant, sealed, and the seeding is audited', async () => {
  const rows = await w.sql(
    `SELECT factory, llm_name, credential, credential_hint FROM provider_connections WHERE tenant_id = '${tenantId}'`,
  );
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0].factory, 'OpenAI');
  assert.equal(rows[0].llm_name, '');
  assert.ok(rows[0].credential && !rows[0].credential.includes(GOOD), 'not sealed');
  const audit = ok(await w.admin('GET', `/api/v1/admin/audit?tenant_id=${tenantId}`), 'audit');
  const actions = audit.map((e) => `${e.action} ${e.actor_kind}`).sort();
  assert.deepEqual(actions, ['api_key.create admin', 'defaults.set admin', 'model.add admin', 'tenant.create admin', 'user.create admin']);
  const status = ok(await w.admin('GET', '/api/v1/admin/default_provider'), 'status');
  assert.equal(status.configured, true);
  assert.equal(status.problem, null);
  assert.equal(status.factory, 'OpenAI');
  assert.equal(status.credential_hint, 'sk...6789');
});

test('a tenant the admin API creates has it too (applying again is a 409); a tenant that removed it is given it again on purpose', async () => {
  // A tenant the admin API creates gets it too; the apply route then refuses a second one.
  const t = ok(await w.admin('POST', '/api/v1/admin/tenants', { name: 'later' }), 'tenant');
  const again = await w.admin('POST', `/api/v1/admin/tenants/${t.id}/default_provider`);
  assert.equal(again.status, 409, again.text);
  assert.match(again.json.message, /already has a connection to OpenAI/);
  // The first tenant removes it and has it applied again by the operator.
  ok(await w.call('DELETE', '/api/v1/models', { token, body: { llm_factory: 'OpenAI' } }), 'remove');
  const none = ok(await w.call('GET', '/api/v1/models', { token }), 'models');
  assert.equal(none.OpenAI, undefined);
  const applied = ok(await w.admin('POST', `/api/v1/admin/tenants/${tenantId}/default_provider`), 'apply');
  assert.equal(applied.factory, 'OpenAI');
  assert.equal(applied.defaults.llm_id, 'gpt-4o-mini@OpenAI');
  const back = ok(await w.call('GET', '/api/v1/models/default', { token }), 'defaults');
  assert.equal(back.llm_id, 'gpt-4o-mini@OpenAI');
});

test('nothing leaked: no credential, token or admin token in a response or the worker log', async () => {
  const { problems } = leakProblems(w, { credentials: [GOOD] });
  assert.deepEqual(problems, []);
  assert.deepEqual(workerLogProblems(w), []);
});

test('an invalid configuration refuses tenant creation with a 500 saying so, logs it, and writes nothing', async () => {
  bad = new Worker();
  await bad.start({
    vars: {
      DEFAULT_LLM_FACTORY: 'OpenAI',
      DEFAULT_LLM_BASE_URL: `${standin.base}/v1`,
      DEFAULT_LLM_MODELS: 'llm_id=gpt-9-turbo',
      DEFAULT_LLM_API_KEY: GOOD,
    },
  });
  for (const [path, body] of [
    ['/api/v1/admin/users', { username: 'nobody@example.com' }],
    ['/api/v1/admin/tenants', { name: 'nothing' }],
  ]) {
    const r = await bad.admin('POST', path, body);
    assert.equal(r.status, 500, r.text);
    assert.match(r.json.message, /^The deployment is misconfigured, so nothing was changed: DEFAULT_LLM_MODELS: llm_id: OpenAI has no model gpt-9-turbo/);
  }
  const counts = await bad.sql('SELECT (SELECT COUNT(*) FROM tenants) AS t, (SELECT COUNT(*) FROM users) AS u, (SELECT COUNT(*) FROM provider_connections) AS c, (SELECT COUNT(*) FROM audit) AS a');
  assert.deepEqual(counts[0], { t: 0, u: 0, c: 0, a: 0 });
  const status = ok(await bad.admin('GET', '/api/v1/admin/default_provider'), 'status');
  assert.match(status.problem, /OpenAI has no model gpt-9-turbo/);
  // The worker's own error line, as the operator reads it in the log.
  await bad.waitForOutput(/the deployment is misconfigured: DEFAULT_LLM_MODELS/, 5_000);
  assert.match(bad.output, /the deployment is misconfigured: DEFAULT_LLM_MODELS: llm_id: OpenAI has no model gpt-9-turbo/);
  const { problems } = leakProblems(bad, { credentials: [GOOD] });
  assert.deepEqual(problems, []);
});
