// End to end: VertexAI through the relay, against `wrangler dev` (real workerd, WebCrypto signing
// the service account's assertion) and the provider stand-in (examples/provider_standin) on
// loopback. Chat and a stream through the official OpenAI Python SDK reach Vertex AI's
// OpenAI-compatible endpoint with one access token minted at the stand-in's token endpoint and
// cached in the isolate; embeddings are refused with a 400 (BadRequestError); a token the
// provider refuses is minted again once, then the call fails with the stored-credential 502.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { ROOT, SdkRunner, startStandIn, Worker } from './harness.mjs';

const SDK_SCRIPT = join(ROOT, 'e2e/openai_sdk.py');
const CHAT_PATH = '/v1/projects/standin-project/locations/us-central1/endpoints/openapi/chat/completions';

/** examples/provider_standin/server.rs VERTEX_TEST_PRIVATE_KEY_PEM, as the PEM text it is. */
function testPrivateKey() {
  const src = readFileSync(join(ROOT, 'examples/provider_standin/server.rs'), 'utf8');
  const m = src.match(/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/);
  return `${m[0].replace(/\\n\\\n/g, '\n')}\n`;
}
const PRIVATE_KEY = testPrivateKey();

function credentials(tokenUri) {
  return JSON.stringify({
    type: 'service_account',
    project_id: 'standin-project',
    private_key_id: 'k1',
    private_key: PRIVATE_KEY,
    client_email: 'relay@standin.iam.gserviceaccount.com',
    token_uri: tokenUri,
  });
}

const w = new Worker();
let standin = null;
before(async () => {
  standin = await startStandIn();
  await w.start();
}, { timeout: 15 * 60_000 });
after(async () => {
  await w.stop();
  if (standin) await standin.stop();
}, { timeout: 30_000 });

let token = null;
const sdk = new SdkRunner();

function as(method, path, body) {
  return w.call(method, path, { token, body });
}


/** The stand-in's request lines since `mark` for paths matching `re`. */
function sentSince(mark, re) {
  return standin.logSince(mark).split('\n').filter((l) => re.test(l));
}

test('setup: a tenant owner with VertexAI connected (the token exchange validated on workerd)', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'vx-owner' }), 'create user');
  const k = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, { description: 'vertex e2e' }), 'key');
  token = k.token;
  ok(await as('POST', '/api/v1/models', {
    llm_factory: 'VertexAI', credentials_json: credentials(`${standin.base}/ttl/600/token`), base_url: standin.base,
  }), 'add VertexAI');
});

test('VertexAI: chat and a stream through the official OpenAI SDK on one cached token; embeddings a 400', async () => {
  const mark = standin.mark();
  const r = await sdk.run(w, token, SDK_SCRIPT, [
    '--chat-model', 'gemini-2.5-flash@VertexAI', '--embed-model', 'text-embedding-005@VertexAI', '--embeddings-refused',
  ]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.errors, {});
  assert.equal(out.chat.type, 'ChatCompletion');
  assert.equal(out.chat.content, 'echo: hello from the python sdk');
  assert.ok(out.chat.usage.prompt_tokens > 0 && out.chat.usage.completion_tokens > 0, JSON.stringify(out.chat));
  assert.equal(out.stream.content, 'echo: hello from the python sdk streamed');
  assert.deepEqual(out.stream.objects, ['chat.completion.chunk']);
  assert.equal(out.stream.finish_reason, 'stop');
  const u = out.stream.usage;
  assert.ok(u && u.prompt_tokens > 0 && u.completion_tokens > 0, JSON.stringify(u));
  assert.equal(out.embeddings.raised, 'BadRequestError', JSON.stringify(out.embeddings));
  assert.equal(out.embeddings.status_code, 400);
  assert.match(out.embeddings.message, /chat completions only/);
  assert.equal(out.not_found.raised, 'NotFoundError');
  await standin.waitForLog(/endpoints\/openapi\/chat\/completions/, 2_000, mark);
  const chats = sentSince(mark, /endpoints\/openapi\/chat\/completions/);
  assert.equal(chats.length, 2, chats.join('\n'));
  assert.ok(chats.every((l) => l.includes(CHAT_PATH) && / -> 200/.test(l)), chats.join('\n'));
  // Both calls (and the refused embeddings, which never asks) on one minted token.
  const grants = sentSince(mark, /POST \S*\/token -> /);
  assert.equal(grants.length, 1, grants.join('\n'));
  assert.match(grants[0], / -> 200/);
});

test('VertexAI: a refused token is minted again once, then the SDK gets the stored-credential 502', async () => {
  ok(await as('POST', '/api/v1/models', {
    llm_factory: 'VertexAI', credentials_json: credentials(`${standin.base}/refused/token`), base_url: standin.base,
  }), 'replace VertexAI with a service account whose tokens are refused');
  const mark = standin.mark();
  const r = await sdk.run(w, token, SDK_SCRIPT, ['--chat-model', 'gemini-2.5-flash@VertexAI', '--embed-model', 'text-embedding-005@VertexAI', '--embeddings-refused']);
  const out = JSON.parse(r.stdout);
  assert.match(out.errors.chat ?? '', /^InternalServerError: .*refused the credential this tenant stored/, JSON.stringify(out.errors));
  assert.match(out.errors.stream ?? '', /^InternalServerError: /, JSON.stringify(out.errors));
  await standin.waitForLog(/endpoints\/openapi\/chat\/completions -> 401/, 2_000, mark);
  // Two calls (chat, stream), each: a token, a refusal, a new token, a refusal.
  const chats = sentSince(mark, /endpoints\/openapi\/chat\/completions/);
  assert.equal(chats.length, 4, chats.join('\n'));
  assert.ok(chats.every((l) => / -> 401/.test(l)), chats.join('\n'));
  assert.equal(sentSince(mark, /POST \S*\/token -> 200/).length, 4);
});

test('no access token or private key is ever seen: not in a response, the log or the SDK output', async () => {
  await new Promise((r) => setTimeout(r, 300));
  const keyLine = PRIVATE_KEY.split('\n')[3];
  const { problems } = leakProblems(w, { credentials: [keyLine], texts: { 'the SDK script’s output': sdk.output } });
  assert.deepEqual(problems, []);
  for (const [where, text] of [['the worker log', w.output], ['the SDK output', sdk.output], ...w.responses.map((r) => [`response #${r.seq}`, `${r.headers ?? ''}\n${r.text}`])]) {
    assert.ok(!/ya29\./.test(text), `an access token in ${where}`);
    assert.ok(!text.includes('PRIVATE KEY'), `the private key in ${where}`);
  }
  assert.deepEqual(workerLogProblems(w, { own: [/\[WARN\] relay answered 50\d: /] }), []);
});
