// End to end: limits over time on the relay, counted by the LimitsObject Durable Object (one per
// gateway key) under `wrangler dev` (real workerd, SQLite-backed object storage, local D1) against
// the provider stand-in on loopback. Fifty concurrent calls against a budget that admits exactly
// ten get exactly ten answers and forty 429s with Retry-After; an RPM limit of 5 over 12 calls
// admits 5; a stream the client drops settles its reservation, so the window frees at once
// instead of when the reservation would expire. The usage of the calls an object counts reaches
// D1 in one batch per flush, not one write per call (counted from the objects' flush lines), and
// reads back from the history routes per hour and day.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

// A short flush interval, so the test sees the objects' writes within seconds.
const FLUSH_SECONDS = 2;
const w = useWorker({ vars: { USAGE_FLUSH_SECONDS: String(FLUSH_SECONDS) } });
const standin = useStandIn();

const COMPAT = 'OpenAI-API-Compatible';
const GOOD = STANDIN_GOOD_KEY;
let token = null;

function as(method, path, body) {
  return w.call(method, path, { token, body });
}

async function gatewayKey(alias, model, extra) {
  return ok(await as('POST', '/api/v1/ai_keys', {
    alias, provider: COMPAT, model, api_key: GOOD, input_limit: 0, status: 'enabled', ...extra,
  }), `create ${alias}`);
}

/** A streamed chat call the client leaves after `reads` reads. */
async function droppedStream(model, reads) {
  const controller = new AbortController();
  const r = await fetch(`${w.base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, max_tokens: 1500, messages: [{ role: 'user', content: 'hello' }] }),
    signal: controller.signal,
  });
  if (r.status !== 200) {
    const text = await r.text();
    w.responses.push({ seq: w.responses.length, method: 'POST', path: `/v1/chat/completions (stream ${model})`, status: r.status, text });
    return { status: r.status, headers: r.headers, text };
  }
  const reader = r.body.getReader();
  const chunks = [];
  for (let i = 0; i < reads; i++) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(Buffer.from(value));
  }
  controller.abort();
  const text = Buffer.concat(chunks).toString('utf8');
  w.responses.push({ seq: w.responses.length, method: 'POST', path: `/v1/chat/completions (stream ${model})`, status: r.status, text });
  return { status: r.status, headers: r.headers, text };
}

test('setup: a tenant owner with a chat, an embedding and an endless streaming model', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'limits-owner' }), 'create user');
  token = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, { description: 'limits e2e' }), 'key').token;
  const v1 = `${standin.base}/v1`;
  ok(await as('POST', '/api/v1/models', { llm_factory: COMPAT, llm_name: 'standin-chat', base_url: v1, api_key: GOOD }), 'chat');
  ok(await as('POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: 'standin-embed', model_type: 'embedding', base_url: v1, api_key: GOOD,
  }), 'embed');
  ok(await as('POST', '/api/v1/models', {
    llm_factory: COMPAT, llm_name: 'endless', base_url: `${standin.base}/endless/v1`, api_key: GOOD, verify: false,
  }), 'endless');
});

test('50 concurrent calls against a budget that admits exactly 10: 10 answers, 40 429s with Retry-After', async () => {
  // "hello limits" is 2 tokens for keyward's estimate and for the stand-in's count, so every
  // reservation and every settlement is 2 tokens: a budget of 20 admits exactly ten, whenever
  // the settlements arrive.
  await gatewayKey('budget10', 'standin-embed', { token_budget: 20, budget_period: 'day' });
  const calls = Array.from({ length: 50 }, () => as('POST', '/v1/embeddings', { model: 'budget10', input: 'hello limits' }));
  const answers = await Promise.all(calls);
  const byStatus = {};
  for (const r of answers) byStatus[r.status] = (byStatus[r.status] || 0) + 1;
  assert.deepEqual(byStatus, { 200: 10, 429: 40 }, JSON.stringify(byStatus));
  for (const r of answers.filter((a) => a.status === 429)) {
    assert.equal(r.json.error.type, 'rate_limit_error', r.text);
    assert.equal(r.json.error.code, 'budget_exceeded', r.text);
    assert.match(r.headers.get('retry-after') || '', /^[1-9][0-9]*$/, r.text);
  }
  // Settled: the whole budget is spent, so the next call waits for the next UTC day.
  let after = null;
  for (let i = 0; i < 30; i++) {
    after = await as('POST', '/v1/embeddings', { model: 'budget10', input: 'hello limits' });
    if (Number(after.headers.get('retry-after')) > 1) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(after.status, 429, after.text);
  const now = new Date();
  const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
  const wait = Number(after.headers.get('retry-after'));
  assert.ok(Math.abs(wait - (midnight - Date.now()) / 1000) < 5, `${wait} s is not the time until midnight UTC`);
});

test('an RPM limit of 5 over 12 calls in a minute: 5 answers, then 429 with Retry-After', async () => {
  await gatewayKey('rpm5', 'standin-chat', { rpm_limit: 5 });
  const statuses = [];
  for (let i = 0; i < 12; i++) {
    const r = await as('POST', '/v1/chat/completions', { model: 'rpm5', messages: [{ role: 'user', content: `call ${i}` }] });
    statuses.push(r.status);
    if (r.status === 429) {
      assert.equal(r.json.error.code, 'rate_limit_exceeded', r.text);
      const s = Number(r.headers.get('retry-after'));
      assert.ok(s >= 1 && s <= 60, r.headers.get('retry-after'));
    }
  }
  assert.deepEqual(statuses, [...Array(5).fill(200), ...Array(7).fill(429)]);
});

test('a stream the client drops settles its reservation: the next call fits at once', async () => {
  // 1500 output tokens reserved of a 2000-token minute: while the stream runs, a second call does
  // not fit; once the client leaves, the reservation is settled with the little that was
  // streamed, and a second call fits (unsettled, it would hold for 15 minutes).
  await gatewayKey('streamtpm', 'endless', { tpm_limit: 2000 });
  const controller = new AbortController();
  const first = await fetch(`${w.base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'streamtpm', stream: true, max_tokens: 1500, messages: [{ role: 'user', content: 'hello' }] }),
    signal: controller.signal,
  });
  assert.equal(first.status, 200);
  const reader = first.body.getReader();
  await reader.read();
  const during = await droppedStream('streamtpm', 1);
  assert.equal(during.status, 429, during.text);
  assert.equal(JSON.parse(during.text).error.code, 'rate_limit_exceeded');
  controller.abort();
  let again = null;
  for (let i = 0; i < 50; i++) {
    again = await droppedStream('streamtpm', 3);
    if (again.status === 200) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(again.status, 200, again.text);
});

test('40 calls counted by an object reach D1 in a batch or two, not 40 writes, and read back as history', async () => {
  const key = await gatewayKey('flushed', 'standin-chat', { rpm_limit: 1000 });
  const started = new Date();
  const calls = 40;
  for (let i = 0; i < calls; i += 10) {
    const batch = Array.from({ length: 10 }, () => as('POST', '/v1/chat/completions', {
      model: 'flushed', max_tokens: 5, messages: [{ role: 'user', content: 'hello usage' }],
    }));
    for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.text);
  }
  // Within the flush interval (and a margin for a loaded machine) the counters show every call.
  let details = null;
  for (let i = 0; i < 100; i++) {
    details = ok(await as('GET', `/api/v1/ai_keys/${key.id}`), 'details');
    if (details.pool[0].requests === calls) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.equal(details.pool[0].requests, calls, JSON.stringify(details));
  assert.equal(details.used_input_tokens, 5 * calls);
  assert.equal(details.used_output_tokens, 5 * calls);
  const flushes = [...w.output.matchAll(/limits: flushed (\d+) calls \(([^)]*)\) in one batch of (\d+) statements/g)]
    .filter((m) => m[2] === key.id);
  const flushedCalls = flushes.reduce((n, m) => n + Number(m[1]), 0);
  assert.equal(flushedCalls, calls, flushes.map((m) => m[0]).join('\n'));
  const writesPerCall = flushes.length / calls;
  console.log(`D1 writes (batches) per relayed call counted by an object: ${flushes.length}/${calls} = ${writesPerCall.toFixed(3)} (one per call without)`);
  assert.ok(flushes.length <= 4, `${flushes.length} flushes for ${calls} calls`);

  const from = new Date(Date.UTC(started.getUTCFullYear(), started.getUTCMonth(), started.getUTCDate(), started.getUTCHours())).toISOString();
  const to = new Date(Date.now() + 3_600_000).toISOString();
  const hours = ok(await as('GET', `/api/v1/ai_keys/${key.id}/usage?from=${from}&to=${to}`), 'hour history');
  const sum = (p, f) => p.items.reduce((n, i) => n + i[f], 0);
  assert.equal(sum(hours, 'requests'), calls, JSON.stringify(hours));
  assert.equal(sum(hours, 'input_tokens'), 5 * calls);
  const days = ok(await as('GET', `/api/v1/ai_keys/${key.id}/usage?granularity=day&from=${from.slice(0, 10)}T00:00:00Z&to=${to}`), 'day history');
  assert.equal(sum(days, 'requests'), calls, JSON.stringify(days));
  // The budget test's 40 refusals are in the tenant's history as rejected.
  const tenant = ok(await as('GET', `/api/v1/usage?granularity=day&from=${from.slice(0, 10)}T00:00:00Z&to=${to}`), 'tenant history');
  assert.ok(sum(tenant, 'rejected') >= 40, JSON.stringify(tenant));
});

test('no provider key is seen and the worker log is clean', async () => {
  await new Promise((r) => setTimeout(r, 300));
  const { problems } = leakProblems(w, { credentials: [GOOD] });
  assert.deepEqual(problems, []);
  assert.deepEqual(workerLogProblems(w, {}), []);
});
