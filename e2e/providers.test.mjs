// End to end: the relay's Gemini (Google's OpenAI-compatible surface), Cohere (its Compatibility
// API) and Builtin (Workers AI's OpenAI-compatible endpoints) models, rerank and audio for every
// factory that has them, and how each provider failure reaches the official OpenAI Python SDK, against `wrangler dev` (real workerd) and the provider
// stand-in (examples/provider_standin) on loopback. One worker and one stand-in for the file; the
// worker starts after the stand-in, since WORKERS_AI_BASE_URL names the stand-in's port.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { leakProblems, ok, workerLogProblems } from './checks.mjs';
import { ROOT, SdkRunner, STANDIN_GOOD_KEY, startStandIn, Worker } from './harness.mjs';

const GOOD = STANDIN_GOOD_KEY;
// examples/provider_standin/server.rs WORKERS_AI_ACCOUNT and WORKERS_AI_TOKEN.
const CF_ACCOUNT = '0123456789abcdef0123456789abcdef';
const CF_TOKEN = 'cf-standin-token-0123456789abcdef';
const BAD_GEMINI = 'AIzaSy-stored-but-refused-0123456789';
const CREDENTIALS = [GOOD, CF_TOKEN, BAD_GEMINI];
const SDK_SCRIPT = join(ROOT, 'e2e/openai_sdk.py');
const SDK_ERRORS = join(ROOT, 'e2e/openai_sdk_errors.py');
const SDK_AUDIO = join(ROOT, 'e2e/openai_sdk_audio.py');

const w = new Worker();
let standin = null;
before(async () => {
  standin = await startStandIn();
  await w.start({
    vars: {
      WORKERS_AI_ACCOUNT_ID: CF_ACCOUNT,
      WORKERS_AI_API_TOKEN: CF_TOKEN,
      WORKERS_AI_BASE_URL: `${standin.base}/client/v4`,
      // One Builtin model of each type, all served through the stand-in's Workers AI.
      BUILTIN_MODELS: '@cf/meta/llama-3.1-8b-instruct,@cf/baai/bge-base-en-v1.5,@cf/baai/bge-reranker-base,@cf/openai/whisper,@cf/myshell-ai/melotts,@cf/llava-hf/llava-1.5-7b-hf',
      // /slow/ answers after 15 s: the timeout case ends well before.
      PROVIDER_TIMEOUT_MS: '3000',
    },
  });
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

test('setup: a tenant owner, Gemini and Cohere connected (validated against the stand-in)', async () => {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username: 'pv-owner' }), 'create user');
  const k = ok(await w.admin('POST', `/api/v1/admin/users/${u.username}/api_key`, { description: 'providers e2e' }), 'key');
  token = k.token;
  ok(await as('POST', '/api/v1/models', { llm_factory: 'Gemini', api_key: GOOD, base_url: standin.base }), 'add Gemini');
  ok(await as('POST', '/api/v1/models', { llm_factory: 'Cohere', api_key: GOOD, base_url: `${standin.base}/cohere` }), 'add Cohere');
});

for (const [factory, chatModel, embedModel, paths] of [
  ['Gemini', 'gemini-2.5-flash@Gemini', 'text-embedding-004@Gemini', /\/v1beta\/openai\/(chat\/completions|embeddings)/],
  ['Cohere', 'command-r@Cohere', 'embed-english-v3.0@Cohere', /\/cohere\/compatibility\/v1\/(chat\/completions|embeddings)/],
  ['Builtin', '@cf/meta/llama-3.1-8b-instruct@Builtin', '@cf/baai/bge-base-en-v1.5@Builtin', new RegExp(`/client/v4/accounts/${CF_ACCOUNT}/ai/v1/(chat/completions|embeddings)`)],
]) {
  test(`${factory}: chat, a stream and embeddings through the official OpenAI SDK`, async () => {
    const mark = standin.mark();
    const r = await sdk.run(w, token, SDK_SCRIPT, ['--chat-model', chatModel, '--embed-model', embedModel]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.errors, {});
    assert.equal(out.chat.type, 'ChatCompletion');
    assert.equal(out.chat.content, 'echo: hello from the python sdk');
    assert.ok(out.chat.usage.prompt_tokens > 0 && out.chat.usage.completion_tokens > 0, JSON.stringify(out.chat));
    assert.equal(out.stream.content, 'echo: hello from the python sdk streamed');
    assert.deepEqual(out.stream.objects, ['chat.completion.chunk']);
    assert.equal(out.stream.finish_reason, 'stop');
    // The SDK asked for the usage chunk; Cohere cannot be asked, so the relay added one it counted.
    const u = out.stream.usage;
    assert.ok(u && u.prompt_tokens > 0 && u.completion_tokens > 0, `${factory} stream usage: ${JSON.stringify(u)}`);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    assert.equal(out.embeddings.count, 2);
    assert.deepEqual(out.embeddings.indexes, [0, 1]);
    assert.ok(out.embeddings.all_floats);
    assert.equal(out.not_found.raised, 'NotFoundError');
    // Every call reached the provider's OpenAI-compatible path: 2 chats and the embeddings.
    await standin.waitForLog(paths, 2_000, mark);
    const lines = sentSince(mark, paths);
    assert.equal(lines.length, 3, `${factory}: ${lines.join('\n')}`);
    assert.ok(lines.every((l) => / -> 200/.test(l)), lines.join('\n'));
  });
}

test('rerank through each factory that has it, in one shape (plain HTTP)', async () => {
  ok(await as('POST', '/api/v1/models', { llm_factory: 'Jina', api_key: GOOD, base_url: standin.base }), 'add Jina');
  const docs = ['a guide to baking bread', 'keys rotate on schedule', 'rotate api keys often for safety'];
  for (const [model, path] of [
    ['jina-reranker-v2-base-multilingual@Jina', /POST \/rerank -> 200/],
    ['rerank-english-v3.0@Cohere', /POST \/cohere\/v2\/rerank -> 200/],
    ['@cf/baai/bge-reranker-base@Builtin', /POST \/client\/v4\/accounts\/\w+\/ai\/run\/@cf\/baai\/bge-reranker-base -> 200/],
  ]) {
    const mark = standin.mark();
    const r = await as('POST', '/v1/rerank', { model, query: 'rotate keys', documents: docs, top_n: 2, return_documents: true });
    assert.equal(r.status, 200, `${model}: ${r.text}`);
    assert.deepEqual(r.json.results.map((x) => x.index), [1, 2], `${model}: ${r.text}`);
    assert.equal(r.json.results[0].document.text, docs[1]);
    assert.ok(r.json.results[0].relevance_score >= r.json.results[1].relevance_score);
    assert.equal(r.json.model, model);
    assert.ok(r.json.usage.total_tokens > 0, r.text);
    assert.ok(await standin.waitForLog(path, 2_000, mark), `${model}: ${standin.logSince(mark)}`);
  }
  // Gemini has no rerank models: not found for the endpoint, nothing sent.
  const r = await as('POST', '/v1/rerank', { model: 'gemini-2.5-flash@Gemini', query: 'q', documents: ['a'] });
  assert.equal(r.status, 404, r.text);
  assert.equal(r.json.error.code, 'model_not_found');
});

test('speech to text, text to speech and an image chat through the official OpenAI SDK', async () => {
  ok(await as('POST', '/api/v1/models', { llm_factory: 'OpenAI', api_key: GOOD, base_url: standin.base }), 'add OpenAI');
  for (const [asr, tts, image, heard] of [
    ['whisper-1@OpenAI', 'tts-1@OpenAI', null, 'heard 3000 bytes starting 00010203 (whisper-1)'],
    ['@cf/openai/whisper@Builtin', '@cf/myshell-ai/melotts@Builtin', '@cf/llava-hf/llava-1.5-7b-hf@Builtin', 'heard 3000 bytes starting 00010203'],
  ]) {
    const args = ['--asr-model', asr, '--tts-model', tts, ...(image ? ['--image-model', image] : [])];
    const r = await sdk.run(w, token, SDK_AUDIO, args);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.errors, {});
    assert.equal(out.transcription.type, 'Transcription');
    assert.equal(out.transcription.text, heard, `${asr}: the file arrived byte for byte`);
    assert.equal(out.transcription_text.text.trim(), heard);
    assert.equal(out.speech.content_type, 'audio/mpeg');
    assert.equal(out.speech.head, 'ID3');
    assert.ok(out.speech.has_input && out.speech.bytes >= 4096, JSON.stringify(out.speech));
    if (image) {
      assert.match(out.image_chat.content, /^an image of \d+ bytes, asked: What is in this picture\?$/);
      assert.ok(out.image_chat.usage.prompt_tokens > 85, JSON.stringify(out.image_chat));
    }
  }
});

test('a transcription form above the JSON limit is read whole; one above 25 MiB is refused unread', async () => {
  const boundary = 'e2e-boundary';
  const audio = new Uint8Array(2 * 1024 * 1024).map((_, i) => i % 251);
  const head = new TextEncoder().encode(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n@cf/openai/whisper@Builtin\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n`);
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`);
  const body = new Uint8Array(head.length + audio.length + tail.length);
  body.set(head);
  body.set(audio, head.length);
  body.set(tail, head.length + audio.length);
  const headers = { 'content-type': `multipart/form-data; boundary=${boundary}` };
  const r = await w.call('POST', '/v1/audio/transcriptions', { token, body, headers });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.text, `heard ${audio.length} bytes starting 00010203`);
  const big = new Uint8Array(25 * 1024 * 1024 + 1);
  const refused = await w.call('POST', '/v1/audio/transcriptions', { token, body: big, headers });
  assert.equal(refused.status, 413, refused.text);
  assert.equal(refused.json.error.code, 'request_too_large');
});

test('a Builtin model is listed by GET /v1/models once Workers AI is configured', async () => {
  const r = await as('GET', '/v1/models');
  assert.equal(r.status, 200, r.text);
  const ids = r.json.data.map((m) => m.id);
  assert.ok(ids.includes('@cf/meta/llama-3.1-8b-instruct@Builtin'), JSON.stringify(ids));
});

test('each provider failure raises the SDK exception its status stands for', async () => {
  const cases = [
    // [name, stand-in prefix, client status, SDK class, code]
    ['s400', '/status/400', 400, 'BadRequestError', 'upstream_bad_request'],
    ['s404', '/status/404', 404, 'NotFoundError', 'upstream_not_found'],
    ['s409', '/status/409', 409, 'ConflictError', 'upstream_conflict'],
    ['s413', '/status/413', 413, 'APIStatusError', 'upstream_request_too_large'],
    ['s422', '/status/422', 422, 'UnprocessableEntityError', 'upstream_unprocessable'],
    ['s401', '/status/401', 502, 'InternalServerError', 'upstream_auth_failed'],
    ['s403', '/status/403', 502, 'InternalServerError', 'upstream_auth_failed'],
    ['s429', '/ratelimited/7', 429, 'RateLimitError', 'upstream_rate_limited'],
    ['s500', '/status/500', 502, 'InternalServerError', 'upstream_failed'],
    ['s503', '/status/503', 502, 'InternalServerError', 'upstream_failed'],
    ['garbage', '/garbage', 502, 'InternalServerError', 'upstream_not_json'],
    ['slow', '/slow', 504, 'InternalServerError', 'upstream_timeout'],
  ];
  for (const [name, prefix] of [...cases.map((c) => [c[0], c[1]]), ['cut', '/cut']]) {
    ok(await as('POST', '/api/v1/models', {
      llm_factory: 'OpenAI-API-Compatible', llm_name: name, base_url: `${standin.base}${prefix}/v1`, api_key: GOOD, verify: false,
    }), `add ${name}`);
  }
  // Gemini refusing the stored key (Google answers 400 API_KEY_INVALID): not the caller's key.
  ok(await as('POST', '/api/v1/models', { llm_factory: 'Gemini', api_key: BAD_GEMINI, base_url: standin.base, verify: false }), 'replace Gemini with a refused key');
  const calls = [
    ...cases.map(([name]) => ({ name, model: name })),
    { name: 's422_stream', model: 's422', stream: true },
    { name: 's429_stream', model: 's429', stream: true },
    { name: 'gemini_bad_key', model: 'gemini-2.5-flash@Gemini' },
    { name: 'cut', model: 'cut', stream: true },
  ];
  const started = Date.now();
  const r = await sdk.run(w, token, SDK_ERRORS, ['--cases', JSON.stringify(calls)]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout);
  const expect = (name, status, raised, code) => {
    const got = out[name];
    assert.equal(got.raised, raised, `${name}: ${JSON.stringify(got)}`);
    assert.equal(got.status_code, status, `${name}: ${JSON.stringify(got)}`);
    assert.equal(got.code, code, `${name}: ${JSON.stringify(got)}`);
    assert.ok(got.bases.includes('APIStatusError'), `${name}: ${got.bases}`);
    assert.equal(typeof got.message, 'string');
    return got;
  };
  for (const [name, , status, raised, code] of cases) {
    const got = expect(name, status, raised, code);
    if (status === 429) assert.equal(got.retry_after, '7', name);
    if (status < 500 && status !== 429) assert.match(got.message, new RegExp(`the stand-in answers ${status} here`), name);
  }
  expect('s422_stream', 422, 'UnprocessableEntityError', 'upstream_unprocessable');
  assert.equal(expect('s429_stream', 429, 'RateLimitError', 'upstream_rate_limited').retry_after, '7');
  const g = expect('gemini_bad_key', 502, 'InternalServerError', 'upstream_auth_failed');
  assert.match(g.message, /refused the credential this tenant stored/);
  // A stream cut after it started: the SDK raises APIError from the relay's error event.
  assert.equal(out.cut.raised, 'APIError', JSON.stringify(out.cut));
  assert.equal(out.cut.code, 'upstream_stream_incomplete');
  assert.equal(out.cut.type, 'upstream_error');
  // The 3 s provider timeout, not the stand-in's 15 s, bounded the slow call.
  assert.ok(Date.now() - started < 14_000, `took ${Date.now() - started} ms`);
});

test('an unknown /v1 path is a 404 in OpenAI’s shape (code unknown_url), with or without a key', async () => {
  const r = await as('GET', '/v1/nothing-here');
  assert.equal(r.status, 404, r.text);
  assert.deepEqual(Object.keys(r.json), ['error']);
  assert.equal(r.json.error.code, 'unknown_url');
  assert.equal(r.json.error.type, 'invalid_request_error');
  const anon = await w.call('POST', '/v1/completions', { body: {} });
  assert.equal(anon.status, 404, anon.text);
  assert.equal(anon.json.error.code, 'unknown_url');
});

test('no provider key or token is ever seen again: not in a response, the log or the SDK output', async () => {
  await new Promise((r) => setTimeout(r, 300));
  const { problems } = leakProblems(w, { credentials: CREDENTIALS, texts: { 'the SDK scripts’ output': sdk.output } });
  assert.deepEqual(problems, []);
  assert.deepEqual(workerLogProblems(w, { own: [/\[WARN\] relay answered 50\d: /] }), []);
});
