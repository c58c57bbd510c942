// End to end: the command-line client (cli/, binary `keyward`) against `wrangler dev` (real workerd,
// local D1 and KV) and the provider stand-in on loopback. A scripted session as an operator and a
// tenant owner would run it: log in as the admin from standard input, create a tenant and a user,
// issue and rotate keys (each token taken from `-q`'s one line), connect the stand-in with its key
// on standard input, set and clear defaults, manage a gateway key and call the relay through it,
// read the audit log as JSON, follow pages; then every error class and its exit status, the real
// brute-force 429 last. Every spawn's arguments and every output are kept: no secret may appear in
// an argument list, and a new token only in the one output that showed it.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { forgedToken, leakProblems } from './checks.mjs';
import { ROOT, STANDIN_GOOD_KEY, freePort, runProcess, useStandIn, useWorker } from './harness.mjs';

// The production brute-force budget (wrangler.toml), so the last test meets the real 429.
const w = useWorker({ authFailureLimit: null });
const standin = useStandIn();

const BIN = join(ROOT, 'target/debug/keyward');
const CHAT = 'standin-chat';
const COMPAT = 'OpenAI-API-Compatible';
const REFUSED_KEY = 'sk-standin-refused-0123456789';

const home = mkdtempSync(join(tmpdir(), 'keyward-cli-e2e-'));
const CONFIG = join(home, 'config', 'keyward', 'config.json');
after(() => rmSync(home, { recursive: true, force: true }));

/** Every run: {argv, stdin?, stdout, stderr, code}. */
const runs = [];
/** Each newly issued token and the run (index into `runs`) whose stdout showed it. */
const shown = [];

/** Build the client (cargo returns at once when it is up to date, so a stale binary never runs). */
before(async () => {
  const env = {
    ...process.env,
    PATH: [join(process.env.HOME || '/root', '.cargo/bin'), process.env.PATH || ''].join(':'),
  };
  const r = await runProcess('cargo', ['build', '--quiet', '-p', 'keyward-cli'], { env, timeoutMs: 15 * 60_000 });
  assert.equal(r.code, 0, `cargo build -p keyward-cli: ${r.stderr.slice(-4000)}`);
  assert.ok(existsSync(BIN), `${BIN} is missing after the build`);
}, { timeout: 16 * 60_000 });

/**
 * Run `keyward args...` with only the environment given (plus HOME and the config dir), standard
 * input from `stdin` (a string) or closed. Resolves with {code, stdout, stderr}.
 */
function kw(args, { env = {}, stdin } = {}) {
  const fullEnv = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: join(home, 'config'),
    KEYWARD_URL: w.base,
    ...env,
  };
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined) delete fullEnv[k];
  return new Promise((res, rej) => {
    const child = spawn(BIN, args, { env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const run = { argv: [BIN, ...args], stdout, stderr, code };
      runs.push(run);
      res(run);
    });
    // A run that exits without reading its input (a usage error) closes the pipe first.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

/** A run that must succeed; returns its stdout. */
async function ok(args, opts) {
  const r = await kw(args, opts);
  assert.equal(r.code, 0, `keyward ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** A run with `--json` that must succeed; returns its stdout parsed. */
async function okJson(args, opts) {
  return JSON.parse(await ok([...args, '--json'], opts));
}

/** A run that must fail with `code`; returns its stderr. */
async function fails(args, code, opts) {
  const r = await kw(args, opts);
  assert.equal(r.code, code, `keyward ${args.join(' ')}: expected exit ${code}, got ${r.code}:\n${r.stderr}${r.stdout}`);
  assert.match(r.stderr, /^(keyward|error): \S/, 'the error is said on stderr (clap says usage errors as error:)');
  return r.stderr;
}

/** A `-q` creation: its stdout is exactly one line, the token; the warning is on stderr. */
async function newToken(args, opts) {
  const r = await kw([...args, '-q'], opts);
  assert.equal(r.code, 0, `keyward ${args.join(' ')}: ${r.stderr}`);
  const m = /^(kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38})\n$/.exec(r.stdout);
  assert.ok(m, `-q prints only the token on its own line: ${JSON.stringify(r.stdout.slice(0, 10))}...`);
  assert.match(r.stderr, /shown this once/);
  shown.push({ token: m[1], run: runs.length - 1 });
  return m[1];
}

const user = 'alice@acme.example';
let tenantId = null;
let aliceToken = null;
let secondToken = null;
let rotatedToken = null;
let gatewayId = null;
let adminIssued = null;
let webhookSecret = null;
let webhookRun = null;

test('login: the admin token from standard input is stored in an owner-only config file', async () => {
  const r = await kw(['login', '--admin', '--profile', 'ops', '--default'], { stdin: `${w.adminToken}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Saved profile ops/);
  assert.equal(statSync(CONFIG).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, 'config', 'keyward')).mode & 0o777, 0o700);
  const file = JSON.parse(readFileSync(CONFIG, 'utf8'));
  assert.equal(file.default_profile, 'ops');
  assert.equal(file.profiles.ops.url, w.base);
  // A wrong admin token is refused before anything is stored.
  const bad = await kw(['login', '--admin', '--profile', 'wrong'], { stdin: 'not-the-admin-token-at-all\n' });
  assert.equal(bad.code, 3, bad.stderr);
  assert.equal(JSON.parse(readFileSync(CONFIG, 'utf8')).profiles.wrong, undefined);
});

test('admin: a tenant and its owner, the settings, a key issued once with -q', async () => {
  const t = await okJson(['admin', 'tenants', 'create', 'Acme']);
  assert.equal(t.name, 'Acme');
  tenantId = t.id;
  const listed = await ok(['admin', 'tenants', 'list']);
  assert.match(listed, /^ID\s+NAME\s+CREATED\n/);
  assert.ok(listed.includes(tenantId));

  const u = await okJson(['admin', 'users', 'create', user, '--tenant-id', tenantId, '--role', 'owner']);
  assert.deepEqual([u.username, u.tenant_id, u.role, u.status], [user, tenantId, 'owner', 'active']);
  const s = await okJson(['admin', 'settings', 'set', '--max-keys-per-user', '20']);
  assert.equal(s.max_keys_per_user, 20);
  assert.match(await ok(['admin', 'settings', 'get']), /max_keys_per_user\s+20/);

  aliceToken = await newToken(['admin', 'keys', 'create', user, '--description', 'cli e2e', '--ttl-minutes', '600']);
  const keys = await okJson(['admin', 'keys', 'list', user]);
  assert.equal(keys.length, 1);
  assert.equal(keys[0].description, 'cli e2e');
  assert.equal(keys[0].token, undefined);
});

test('a user profile from standard input; me, keys create, list and rotate', async () => {
  const r = await kw(['login', '--profile', 'alice'], { stdin: aliceToken });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`${user} in tenant ${tenantId}`));
  const me = await okJson(['me', '--profile', 'alice']);
  assert.equal(me.username, user);
  assert.equal(me.role, 'owner');
  assert.match(await ok(['me', '--profile', 'alice']), new RegExp(`username\\s+${user}`));

  secondToken = await newToken(['keys', 'create', '--profile', 'alice', '--description', 'deploy']);
  const mine = await okJson(['keys', 'list', '--profile', 'alice']);
  const second = mine.find((k) => k.description === 'deploy');
  assert.ok(second, JSON.stringify(mine));
  assert.equal(mine.length, 2);

  // The rotation's new token replaces the old secret at once (no grace).
  rotatedToken = await newToken(['keys', 'rotate', second.id, '--grace-minutes', '0', '--profile', 'alice']);
  assert.ok(rotatedToken.startsWith(secondToken.split(':')[0] + ':'), 'same access key, new secret');
  const viaEnv = await okJson(['me'], { env: { KEYWARD_TOKEN: rotatedToken } });
  assert.equal(viaEnv.api_key.id, second.id);
  await fails(['me'], 3, { env: { KEYWARD_TOKEN: secondToken } });
  const limits = await okJson(['keys', 'limits', '--profile', 'alice']);
  assert.equal(limits.active_keys, 2);
  assert.equal(limits.max_keys_per_user, 20);
});

test('flags override the environment, which overrides the profile', async () => {
  // The profile says the worker's URL; the environment points elsewhere and wins...
  const dead = `http://127.0.0.1:${await freePort()}`;
  await fails(['me', '--profile', 'alice'], 8, { env: { KEYWARD_URL: dead } });
  // ...and the flag wins over both.
  const me = await okJson(['me', '--profile', 'alice', '--url', w.base], { env: { KEYWARD_URL: dead } });
  assert.equal(me.username, user);
  // A token from the environment is used over the profile's.
  await fails(['me', '--profile', 'alice'], 3, { env: { KEYWARD_TOKEN: forgedToken() } });
});

test('models: the catalog, the stand-in connected with its key on standard input, defaults set and cleared', async () => {
  const env = { KEYWARD_PROFILE: 'alice' };
  const catalog = await okJson(['models', 'catalog'], { env });
  assert.ok(catalog.some((f) => f.name === COMPAT));
  assert.match(await ok(['models', 'catalog', 'OpenAI'], { env }), /^MODEL\s+TYPE\s+MAX_TOKENS\s+ENABLED\n/);

  await ok(['models', 'add', COMPAT, '--llm-name', CHAT, '--base-url', `${standin.base}/v1`, '--api-key-file', '-'], {
    env,
    stdin: `${STANDIN_GOOD_KEY}\n`,
  });
  const models = await okJson(['models', 'list', '--details'], { env });
  const m = models[COMPAT].llm.find((x) => x.name === CHAT);
  assert.equal(m.status, 'valid');
  assert.match(m.credential_hint, /\.\.\./);

  await ok(['defaults', 'set', '--chat', `${CHAT}@${COMPAT}`], { env });
  assert.equal((await okJson(['defaults', 'get'], { env })).llm_id, `${CHAT}@${COMPAT}`);
  assert.match(await ok(['defaults', 'get'], { env }), new RegExp(`chat\\s+${CHAT}@${COMPAT}`));
  assert.equal(await ok(['defaults', 'clear', '--chat', '--json'], { env }), 'true\n');
  assert.equal((await okJson(['defaults', 'get'], { env })).llm_id, null);
  // The default again, for the relay call without a model below.
  await ok(['defaults', 'set', '--chat', `${CHAT}@${COMPAT}`], { env });
});

test('a gateway key: created with its key on standard input, listed, updated, used through the relay, deleted', async () => {
  const env = { KEYWARD_PROFILE: 'alice' };
  const k = await okJson(['ai-keys', 'create', 'gw-cli', '--provider', COMPAT, '--model', CHAT, '--status', 'enabled'], {
    env,
    stdin: `${STANDIN_GOOD_KEY}\n`,
  });
  gatewayId = k.id;
  assert.equal(k.status, 'enabled');
  assert.equal(k.pool.length, 1);
  const page = await okJson(['ai-keys', 'list'], { env });
  assert.equal(page.total, 1);
  assert.equal(page.items[0].id, gatewayId);
  const upd = await okJson(['ai-keys', 'update', gatewayId, '--input-limit', '1000', '--policy', 'reject'], { env });
  assert.equal(upd.input_limit, 1000);

  assert.equal(await ok(['relay', 'chat', '--model', 'gw-cli', 'hello cli'], { env }), 'echo: hello cli\n');
  assert.equal(await ok(['relay', 'chat', 'default model'], { env }), 'echo: default model\n');
  assert.equal(await ok(['relay', 'chat', '--model', 'gw-cli'], { env, stdin: 'from stdin' }), 'echo: from stdin\n');
  const streamed = await ok(['relay', 'chat', '--model', 'gw-cli', '--stream', 'streamed'], { env });
  assert.match(streamed, /streamed/);
  const relayModels = await okJson(['relay', 'models'], { env });
  assert.ok(relayModels.data.some((x) => x.id === 'gw-cli'));

  // The relay's usage is written after its answer: poll the gateway key's counters briefly.
  let used = null;
  for (let i = 0; i < 30; i++) {
    used = await okJson(['ai-keys', 'get', gatewayId], { env });
    if (used.used_input_tokens > 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(used.used_input_tokens > 0, JSON.stringify(used));
  assert.match(await ok(['usage', 'ai-keys'], { env }), /^ALIAS\s+PROVIDER\s+MODEL\s+INPUT_TOKENS/);
  assert.match(await ok(['usage', 'models'], { env }), new RegExp(`${COMPAT}\\s+${CHAT}\\s+chat\\s+[1-9]`));
  // Usage over time: the key's three calls (written after each answer), in JSON and as a table.
  const calls = (h) => h.items.reduce((n, p) => n + p.requests, 0);
  let history = null;
  for (let i = 0; i < 30; i++) {
    history = await okJson(['usage', 'history', '--ai-key-id', gatewayId], { env });
    if (calls(history) >= 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(history.granularity, 'hour');
  assert.equal(calls(history), 3, JSON.stringify(history));
  assert.match(await ok(['usage', 'history', '--granularity', 'day'], { env }), /^START\s+REQUESTS\s+INPUT_TOKENS/);
  await fails(['usage', 'history', '--from', 'yesterday'], 2, { env });

  assert.equal(await ok(['ai-keys', 'delete', gatewayId, '--json'], { env }), 'true\n');
  await fails(['ai-keys', 'get', gatewayId], 4, { env });
});

test('lists follow the pages, or stop at --limit', async () => {
  for (const n of ['p1', 'p2', 'p3', 'p4']) await ok(['admin', 'users', 'create', `${n}@pages.example`]);
  const all = await okJson(['admin', 'users', 'list', '--page-size', '2']);
  const names = all.map((u) => u.username);
  assert.equal(new Set(names).size, names.length, 'no user twice');
  for (const n of ['p1', 'p2', 'p3', 'p4']) assert.ok(names.includes(`${n}@pages.example`), names.join(','));
  assert.equal(all.length, 5);
  const three = await okJson(['admin', 'users', 'list', '--page-size', '2', '--limit', '3']);
  assert.deepEqual(three.map((u) => u.username), names.slice(0, 3));
});

test('removals: keys revoked by their owner and by the admin, a model, a user, a tenant, a profile', async () => {
  const env = { KEYWARD_PROFILE: 'alice' };
  const mine = await okJson(['keys', 'list'], { env });
  const second = mine.find((k) => k.description === 'deploy');
  assert.match(await ok(['keys', 'delete', second.id], { env }), /revoked key/);
  await fails(['me'], 3, { env: { KEYWARD_TOKEN: rotatedToken } });

  adminIssued = await newToken(['admin', 'keys', 'create', user, '--description', 'to revoke']);
  const listed = await okJson(['admin', 'keys', 'list', user]);
  const revoked = listed.find((k) => k.description === 'to revoke');
  assert.equal(await ok(['admin', 'keys', 'revoke', user, revoked.id, '--json']), 'true\n');
  await fails(['me'], 3, { env: { KEYWARD_TOKEN: adminIssued } });

  await ok(['models', 'remove', COMPAT, '--llm-name', CHAT], { env });
  assert.equal((await okJson(['models', 'list'], { env }))[COMPAT], undefined);
  assert.equal((await okJson(['defaults', 'get'], { env })).llm_id, null, 'the removal cleared the default');

  const upd = await okJson(['admin', 'users', 'update', 'p1@pages.example', '--status', 'disabled']);
  assert.equal(upd.status, 'disabled');
  await ok(['admin', 'users', 'delete', 'p1@pages.example']);
  await fails(['admin', 'users', 'get', 'p1@pages.example'], 4);
  const temp = await okJson(['admin', 'tenants', 'create', 'Temporary']);
  assert.equal((await okJson(['admin', 'tenants', 'get', temp.id])).name, 'Temporary');
  await ok(['admin', 'tenants', 'delete', temp.id]);
  await fails(['admin', 'tenants', 'get', temp.id], 4);

  const r = await kw(['login', '--profile', 'spare', '--no-verify'], { stdin: aliceToken });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(readFileSync(CONFIG, 'utf8')).profiles.spare);
  await ok(['logout', 'spare']);
  assert.equal(JSON.parse(readFileSync(CONFIG, 'utf8')).profiles.spare, undefined);
  await fails(['logout', 'spare'], 4);
});

test('the audit log as JSON, read by a JSON parser', async () => {
  const out = await ok(['admin', 'audit', '--json', '--tenant-id', tenantId]);
  const entries = JSON.parse(out);
  assert.ok(Array.isArray(entries));
  const actions = new Set(entries.map((e) => e.action));
  for (const a of [
    'user.create', 'api_key.create', 'api_key.rotate', 'api_key.delete',
    'model.add', 'model.remove', 'defaults.set', 'ai_key.create', 'ai_key.update', 'ai_key.delete',
  ]) {
    assert.ok(actions.has(a), `${a} in ${[...actions].join(',')}`);
  }
  // Newest first, each entry an AuditEntry.
  for (let i = 1; i < entries.length; i++) assert.ok(entries[i - 1].at >= entries[i].at);
  assert.ok(entries.every((e) => ['admin', 'user', 'unknown'].includes(e.actor_kind)));
  assert.ok(entries.some((e) => e.action === 'api_key.rotate' && e.actor_kind === 'user' && e.actor === user));
  // The whole log: the changes outside the tenant too (p1's own tenant, the deleted one).
  const everything = new Set(JSON.parse(await ok(['admin', 'audit', '--json', '--page-size', '7'])).map((e) => e.action));
  for (const a of ['tenant.create', 'tenant.delete', 'user.update', 'user.delete', 'settings.update']) {
    assert.ok(everything.has(a), `${a} in ${[...everything].join(',')}`);
  }
  const table = await ok(['admin', 'audit', '--limit', '3']);
  assert.match(table, /^AT\s+ACTOR\s+ACTION\s+TARGET\s+TENANT\s+DETAIL\n/);
  assert.equal(table.trim().split('\n').length, 4);
});

test('webhook: set with a generated secret shown once, read, tested against a receiver, chosen on stdin, removed', async () => {
  const env = { KEYWARD_PROFILE: 'alice' };
  const got = [];
  const receiver = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${receiver.address().port}/hook`;
    const set = await kw(['webhook', 'set', url], { env });
    assert.equal(set.code, 0, set.stderr);
    const lines = set.stdout.trimEnd().split('\n');
    const generated = lines[lines.length - 1];
    assert.match(generated, /^whsec_[A-Za-z0-9_-]{43}$/, 'the secret on its own last line');
    assert.match(set.stderr, /shown this once/);
    webhookSecret = generated;
    webhookRun = runs.length - 1;
    const read = await ok(['webhook', 'get'], { env });
    assert.match(read, new RegExp(`url\\s+${url.replace(/[.]/g, '\\.')}`));
    assert.ok(!read.includes(generated));
    assert.match(await ok(['webhook', 'test'], { env }), /delivered\s+true/);
    const sig = Object.fromEntries(String(got[0].headers['keyward-signature']).split(',').map((p) => p.split('=', 2)));
    const want = createHmac('sha256', generated).update(`${sig.t}.`).update(got[0].body).digest('hex');
    assert.equal(sig.v1, want, 'signed with the secret the client printed');
    const chosen = 'a-chosen-secret-from-stdin';
    const again = await okJson(['webhook', 'set', url, '--secret-file', '-'], { env, stdin: `${chosen}\n` });
    assert.equal(again.secret, undefined);
    assert.equal(again.url, url);
    await fails(['webhook', 'set', 'http://hooks.example.com/x'], 2, { env });
    assert.equal(await ok(['webhook', 'delete', '--json'], { env }), 'true\n');
    await fails(['webhook', 'get'], 4, { env });
  } finally {
    await new Promise((r) => receiver.close(r));
  }
});

test('each error class has its exit status', async () => {
  const env = { KEYWARD_PROFILE: 'alice' };
  // 2: bad input, from the command line, from the API (400) and from the provider (422).
  await fails(['admin', 'users', 'create'], 2);
  assert.match(await fails(['admin', 'users', 'create', 'not a name!'], 2), /username/);
  assert.match(
    await fails(['models', 'add', COMPAT, '--llm-name', 'refused', '--base-url', `${standin.base}/v1`, '--api-key-file', '-'], 2, {
      env,
      stdin: REFUSED_KEY,
    }),
    /refused|401|invalid/i,
  );
  // 3: auth, a forged token and a missing one; a member's role is also 3 (403).
  await fails(['me'], 3, { env: { KEYWARD_TOKEN: forgedToken() } });
  await fails(['me'], 3, { env: { KEYWARD_PROFILE: 'ops' } });
  await ok(['admin', 'users', 'create', 'bob@acme.example', '--tenant-id', tenantId, '--role', 'member']);
  const bob = await newToken(['admin', 'keys', 'create', 'bob@acme.example']);
  assert.match(await fails(['defaults', 'set', '--chat', `${CHAT}@${COMPAT}`], 3, { env: { KEYWARD_TOKEN: bob } }), /member/i);
  // A URL that is not one is bad input, said without echoing it.
  assert.doesNotMatch(await fails(['me', '--url', 'https://u:pw-in-url@example.com'], 2, { env }), /pw-in-url/);
  // 4: not found.
  assert.match(await fails(['admin', 'users', 'get', 'nobody@nowhere.example'], 4), /nobody/);
  // 5: conflict.
  assert.match(await fails(['admin', 'users', 'create', user], 5), /already exists/);
  // 7: the server's side: a provider that cannot be reached is a 502.
  const closed = await freePort();
  await fails(['models', 'add', COMPAT, '--llm-name', 'dead', '--base-url', `http://127.0.0.1:${closed}/v1`, '--api-key-file', '-'], 7, {
    env,
    stdin: STANDIN_GOOD_KEY,
  });
  // 8: network.
  await fails(['admin', 'tenants', 'list'], 8, { env: { KEYWARD_URL: `http://127.0.0.1:${closed}` } });
  // --help lists them all.
  const help = await ok(['--help']);
  for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 8]) assert.match(help, new RegExp(`^  ${n}  \\S`, 'm'));
});

test('6: rate limited, after the real brute-force budget of wrong tokens, with when to retry', async () => {
  let stderr = '';
  let tries = 0;
  // The budget is 30 a minute; a minute's boundary in the middle may start the count again.
  for (; tries < 70; tries++) {
    const r = await kw(['me'], { env: { KEYWARD_TOKEN: forgedToken() } });
    if (r.code === 6) {
      stderr = r.stderr;
      break;
    }
    assert.equal(r.code, 3, r.stderr);
  }
  assert.match(stderr, /retry after \d+ s/, `no 429 after ${tries} tries`);
  // A correct token from the blocked client is told the same.
  await fails(['me'], 6, { env: { KEYWARD_TOKEN: aliceToken } });
});

test('no secret in any argument list, and a new token only in the one output that showed it', async () => {
  await new Promise((r) => setTimeout(r, 300));
  const tokens = shown.map((s) => s.token);
  assert.equal(shown.length, 5);
  assert.deepEqual(tokens.slice(0, 4), [aliceToken, secondToken, rotatedToken, adminIssued]);
  const secrets = [w.adminToken, STANDIN_GOOD_KEY, REFUSED_KEY];
  const problems = [];
  runs.forEach((run, i) => {
    const argv = run.argv.join(' ');
    for (const s of [...secrets, ...tokens]) if (argv.includes(s)) problems.push(`a secret in the arguments of run ${i}: ${run.argv[1]}`);
    for (const s of secrets) {
      if (run.stdout.includes(s) || run.stderr.includes(s)) problems.push(`a secret in the output of run ${i} (${run.argv.slice(1, 4).join(' ')})`);
    }
    for (const t of tokens) {
      const secret = t.split(':')[1];
      for (const [where, text] of [['stdout', run.stdout], ['stderr', run.stderr]]) {
        const count = text.split(secret).length - 1;
        const allowed = where === 'stdout' && shown.some((s) => s.token === t && s.run === i) ? 1 : 0;
        if (count !== allowed) problems.push(`a token's secret ${count} time(s) in the ${where} of run ${i} (${run.argv.slice(1, 4).join(' ')})`);
      }
    }
  });
  // The webhook's generated secret: in the stdout of the run that generated it, nowhere else.
  assert.ok(webhookSecret, 'the webhook test ran');
  runs.forEach((run, i) => {
    const seen = `${run.argv.join(' ')}\n${run.stdout}\n${run.stderr}`.split(webhookSecret).length - 1;
    if (seen !== (i === webhookRun ? 1 : 0)) problems.push(`the webhook secret ${seen} time(s) in run ${i}`);
  });
  assert.ok(!w.output.includes(webhookSecret), 'the webhook secret in the worker log');
  assert.deepEqual(problems, []);
  // The worker's own log holds none of them either.
  const texts = Object.fromEntries(runs.map((r, i) => [`run ${i} argv`, r.argv.join(' ')]));
  const { problems: logProblems } = leakProblems(w, { credentials: [STANDIN_GOOD_KEY, REFUSED_KEY], texts });
  assert.deepEqual(logProblems, []);
  for (const t of tokens) assert.ok(!w.output.includes(t.split(':')[1]), 'a token in the worker log');
});
