// End to end: budget alerts under `wrangler dev` (real workerd, the LimitsObject Durable Object
// with its alarm, local D1) against the provider stand-in and a webhook receiver, both real HTTP
// servers on loopback. A gateway key's budget crosses 80% and then 100%: the receiver gets exactly
// one event for each, signed with HMAC-SHA256 over the timestamp and the body under the secret
// keyward generated; the first delivery is answered 500 and retried with the same event id; both
// deliveries are in the audit log as keyward's own; a tenant's limits hold for a key without
// limits of its own; and the secret is never seen again after the answer that generated it.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

// Short intervals, so the objects' alarms run within seconds.
const w = useWorker({ vars: { USAGE_FLUSH_SECONDS: '2', WEBHOOK_RETRY_SECONDS: '1' } });
const standin = useStandIn();

const COMPAT = 'OpenAI-API-Compatible';
const GOOD = STANDIN_GOOD_KEY;
let token = null;
let tenantId = null;
let secret = null;

function as(method, path, body) {
  return w.call(method, path, { token, body });
}

// The receiver: records every request whole, answers each with the next queued status (then 200).
const received = [];
const answers = [];
const receiver = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
    res.statusCode = answers.shift() ?? 200;
    res.end('ok');
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const hookUrl = `http://127.0.0.1:${receiver.address().port}/hooks/keyward`;
after(() => new Promise((resolve) => receiver.close(resolve)));

/** Whether `header` (`t=..,v1=..`) signs `body` under `key`, checked here with node's crypto. */
function signedBy(header, key, body) {
  const parts = Object.fromEntries(String(header).split(',').map((p) => p.split('=', 2)));
  if (!parts.t || !parts.v1) return false;
  const want = createHmac('sha256', key).update(`${parts.t}.`).update(body).digest();
  const got = Buffer.from(parts.v1, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

async function until(what, cond, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const embed = (model) => as('POST', '/v1/embeddings', { model, input: 'hello limits' });
/** A relayed call answered 200 (the relay answers in OpenAI's shape, not the envelope). */
function relayed(r, what) {
  assert.equal(r.status, 200, `${what}: ${r.text}`);
}

test('setup: an owner with an embedding model and a webhook with a generated secret', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'alerts-owner' }), 'create user');
  tenantId = u.tenant_id;
  token = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, {}), 'key').token;
  ok(await as('POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: 'standin-embed', model_type: 'embedding', base_url: `${standin.base}/v1`, api_key: GOOD,
  }), 'embed');
  const hook = ok(await as('PUT', '/api/v1/tenant/webhook', { url: hookUrl }), 'webhook');
  secret = hook.secret;
  assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  const read = ok(await as('GET', '/api/v1/tenant/webhook'), 'read webhook');
  assert.equal(read.url, hookUrl);
  assert.equal(read.secret, undefined);
  // A test event reaches the receiver signed, and says so.
  const tested = ok(await as('POST', '/api/v1/tenant/webhook/test'), 'test event');
  assert.deepEqual(tested, { delivered: true, status: 200, error: null });
  const ping = received.shift();
  assert.equal(ping.headers['keyward-event-type'], 'webhook.test');
  assert.ok(signedBy(ping.headers['keyward-signature'], secret, ping.body));
});

test('a budget crossing 80% and 100% posts exactly one signed event for each, retrying a failing receiver', async () => {
  // Each call reserves and spends 2 tokens ("hello limits"): 80% of 20 is the 8th call, 100% the 10th.
  const key = ok(await as('POST', '/api/v1/ai_keys', {
    alias: 'alerted', provider: COMPAT, model: 'standin-embed', api_key: GOOD, input_limit: 0,
    status: 'enabled', token_budget: 20, budget_period: 'month',
  }), 'gateway key');
  answers.push(500);
  for (let i = 0; i < 7; i++) relayed(await embed('alerted'), `call ${i + 1}`);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(received.length, 0, '14 of 20 raises nothing');
  relayed(await embed('alerted'), 'call 8');
  // Delivered at once and answered 500, then again a second later with the same id.
  await until('the retried 80% event', () => received.length >= 2);
  for (let i = 9; i <= 10; i++) relayed(await embed('alerted'), `call ${i}`);
  const refused = await embed('alerted');
  assert.equal(refused.status, 429, refused.text);
  await until('the 100% event', () => received.length >= 3);
  // Nothing else arrives: the alarm runs again for the usage flush and the retries are over.
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(received.length, 3, received.map((r) => r.body.toString()).join('\n'));

  const events = received.map((r) => ({ ...r, json: JSON.parse(r.body.toString('utf8')) }));
  for (const e of events) {
    assert.ok(signedBy(e.headers['keyward-signature'], secret, e.body), 'signed with the secret');
    assert.ok(!signedBy(e.headers['keyward-signature'], `${secret}x`, e.body));
    assert.equal(e.headers['content-type'], 'application/json');
    assert.equal(e.headers['keyward-event-id'], e.json.id);
    assert.equal(e.json.type, 'budget.threshold_reached');
    assert.equal(e.json.tenant_id, tenantId);
    assert.equal(e.json.data.ai_key_id, key.id);
    assert.equal(e.json.data.budget, 20);
    assert.equal(e.json.data.period, 'month');
    assert.equal(e.path, '/hooks/keyward');
  }
  const [first, retry, full] = events;
  assert.equal(first.json.id, retry.json.id, 'a retry keeps the event id');
  assert.deepEqual([retry.json.data.threshold, retry.json.data.spent], [80, 16]);
  assert.equal(full.json.data.threshold, 100);
  assert.equal(full.json.data.spent, 20);
  assert.notEqual(full.json.id, first.json.id);
  // One accepted delivery per threshold, each recorded by keyward itself.
  const entries = ok(await w.admin('GET', `/api/v1/admin/audit?tenant_id=${tenantId}`), 'audit');
  const delivered = entries.filter((e) => e.action === 'webhook.delivered');
  assert.equal(delivered.length, 2, JSON.stringify(entries.slice(0, 6)));
  for (const e of delivered) {
    assert.equal(e.actor_kind, 'system');
    assert.equal(e.actor, null);
    assert.match(e.detail, /127\.0\.0\.1:\d+: HTTP 200/);
    assert.doesNotMatch(e.detail, /hooks/);
  }
  assert.deepEqual(delivered.map((e) => e.target).sort(), [first.json.id, full.json.id].sort());
  assert.match(delivered.find((e) => e.target === first.json.id).detail, /attempt 2/);
});

test('calls arriving at once: exactly ten of thirty answered, and still one event per threshold', async () => {
  const key = ok(await as('POST', '/api/v1/ai_keys', {
    alias: 'at-once', provider: COMPAT, model: 'standin-embed', api_key: GOOD, input_limit: 0,
    status: 'enabled', token_budget: 20, budget_period: 'day',
  }), 'gateway key');
  const before = received.length;
  const statuses = (await Promise.all(Array.from({ length: 30 }, () => embed('at-once')))).map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 10, statuses.join(','));
  assert.equal(statuses.filter((s) => s === 429).length, 20, statuses.join(','));
  await until('two events for the concurrent key', () => received.length >= before + 2);
  await new Promise((r) => setTimeout(r, 3000));
  const mine = received.slice(before).map((r) => JSON.parse(r.body.toString('utf8')));
  assert.equal(mine.length, 2, JSON.stringify(mine));
  assert.deepEqual(mine.map((e) => e.data.threshold).sort((a, b) => a - b), [80, 100]);
  for (const e of mine) assert.equal(e.data.ai_key_id, key.id);
});

test("a tenant's limits hold for a key without limits of its own", async () => {
  ok(await w.admin('PUT', `/api/v1/admin/tenants/${tenantId}/limits`, { rpm_limit: 3 }), 'tenant limits');
  ok(await as('POST', '/api/v1/ai_keys', {
    alias: 'plain', provider: COMPAT, model: 'standin-embed', api_key: GOOD, input_limit: 0, status: 'enabled',
  }), 'a key without limits');
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await embed('plain')).status);
  // The tenant's object counts from the moment the tenant has limits: three pass, two are refused.
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  ok(await w.admin('PUT', `/api/v1/admin/tenants/${tenantId}/limits`, { rpm_limit: 0 }), 'lifted');
});

test('the webhook secret is never seen again, and the worker log is clean', async () => {
  const { problems } = leakProblems(w, { credentials: [GOOD] });
  assert.deepEqual(problems, []);
  const shown = w.responses.filter((r) => `${r.headers ?? ''}\n${r.text}`.includes(secret));
  assert.equal(shown.length, 1, shown.map((r) => `#${r.seq} ${r.method} ${r.path}`).join(', '));
  assert.ok(!w.output.includes(secret), 'the secret is in the worker log');
  for (const r of received) assert.ok(!r.body.toString().includes(secret));
  assert.deepEqual(workerLogProblems(w, {}), []);
});
