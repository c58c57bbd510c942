// End to end: a gateway key's pool of provider keys through the relay, against `wrangler dev` (real
// workerd, local D1 and KV) and the provider stand-in (examples/provider_standin) on loopback. The
// pool's first key answers 429 with `Retry-After: 5`: one request fails over to the second key and
// succeeds, the next one within the 5 s goes to the second key alone, and the details show which
// key served, by its hint only. No key of the pool is ever in a response or the worker log.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { STANDIN_GOOD_KEY, useStandIn, useWorker } from './harness.mjs';

const w = useWorker();
const standin = useStandIn();

// examples/provider_standin/server.rs rate_limited_key(5): always 429 with Retry-After: 5.
const LIMITED = 'sk-standin-429-5-0123456789';
const GOOD = STANDIN_GOOD_KEY;
const CHAT = 'standin-chat';

let token = null;
let keyId = null;

function as(method, path, body) {
  return w.call(method, path, { token, body });
}

/** The stand-in's chat call lines since `mark`. */
function chatsSince(mark) {
  return standin
    .logSince(mark)
    .split('\n')
    .filter((l) => /POST \/v1\/chat\/completions -> /.test(l));
}

test('setup: a tenant owner, a connected model and a gateway key with a pool of two', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'pool-owner' }), 'create user');
  token = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, { description: 'pool e2e' }), 'key').token;
  ok(await as('POST', '/api/v1/models', {
    llm_factory: 'OpenAI-API-Compatible', llm_name: CHAT, base_url: `${standin.base}/v1`, api_key: GOOD,
  }), 'connect the stand-in');
  const key = ok(await as('POST', '/api/v1/ai_keys', {
    alias: 'pooled', provider: 'OpenAI-API-Compatible', model: CHAT, api_keys: [LIMITED, GOOD],
    input_limit: 0, status: 'enabled',
  }), 'create the pool');
  keyId = key.id;
  assert.deepEqual(key.pool.map((m) => m.index), [0, 1]);
  assert.ok(key.pool.every((m) => /\.\.\.|\*\*\*\*/.test(m.api_key_hint)), JSON.stringify(key.pool));
});

test('a 429 from the first key fails over to the second within the request, which then serves alone', async () => {
  let mark = standin.mark();
  const r = await as('POST', '/v1/chat/completions', { model: 'pooled', messages: [{ role: 'user', content: 'hello pool' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'echo: hello pool');
  await standin.waitForLog(/chat\/completions -> 200/, 2_000, mark);
  assert.deepEqual(chatsSince(mark).map((l) => l.replace(/^.* -> /, '')), ['429', '200'], chatsSince(mark).join('\n'));

  // Within the first key's 5 s it is not asked again.
  mark = standin.mark();
  const again = await as('POST', '/v1/chat/completions', { model: 'pooled', messages: [{ role: 'user', content: 'again' }] });
  assert.equal(again.status, 200, again.text);
  await standin.waitForLog(/chat\/completions -> 200/, 2_000, mark);
  assert.deepEqual(chatsSince(mark).map((l) => l.replace(/^.* -> /, '')), ['200'], chatsSince(mark).join('\n'));

  // The usage is written after the answer (waitUntil): poll the details briefly.
  let d = null;
  for (let i = 0; i < 20; i++) {
    d = ok(await as('GET', `/api/v1/ai_keys/${keyId}`), 'details');
    if (d.pool[1].requests === 2) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(d.pool.map((m) => m.requests), [0, 2], JSON.stringify(d));
  assert.equal(d.last_served_by.index, 1);
  assert.equal(d.last_served_by.api_key_hint, d.pool[1].api_key_hint);
});

test('no key of the pool is ever seen: not in a response, not in the worker log', async () => {
  await new Promise((r) => setTimeout(r, 300));
  const { problems } = leakProblems(w, { credentials: [LIMITED, GOOD] });
  assert.deepEqual(problems, []);
  assert.deepEqual(workerLogProblems(w, { own: [/relay: gateway key pooled pool member 0 failed with 429/] }), []);
});
