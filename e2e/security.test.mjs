// End to end: races and brute force against `wrangler dev` (real workerd, local D1 and KV, the
// Workers rate-limiting binding as miniflare simulates it). SECURITY.md "bad inputs" 6 (brute force),
// 7 (replay right after deletion), 8 (races) and 10 (secret leakage).
//
// Two workers, each in its own suite:
// - "races" runs with the harness's raised AUTH_FAILURES budget (many 401s on purpose must not
//   block the test client);
// - "brute force" runs with `authFailureLimit: null`, i.e. wrangler.toml's production budget
//   (30 failures per client per minute).
// Each suite ends with a secret-leak check over every response and log line of its worker.
//
// Client identity in wrangler dev: the worker counts failures per `cf-connecting-ip`, and wrangler
// dev passes a request's own `CF-Connecting-IP` header through to the worker, so a test chooses its
// client by sending that header (tried in the brute-force suite: a blocked 203.0.113.10 next to
// unaffected 198.51.100.x clients and a client without the header). On the edge Cloudflare sets the
// header from the connection itself; a client cannot choose it there.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checksum, fails, forgedToken, leakProblems, ok, randB62, workerLogProblems } from './checks.mjs';
import { ROOT, useWorker } from './harness.mjs';

const AUTH_FAILED_MESSAGE =
  'Authentication failed: the credential is missing, malformed, unknown, expired or revoked';
const MINUTE = 60_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Provider keys handed to the worker; they must never come back in a response or a log line. */
const PROVIDER_KEY = 'sk-security-e2e-aikey-7f3a9c2e11d04b';
const OPENAI_CONN_KEY = 'sk-security-e2e-openai-conn-5e8d2a';
const CREDENTIALS = [PROVIDER_KEY, OPENAI_CONN_KEY];

// ---------------------------------------------------------------- helpers

function unauth(r, what = '') {
  fails(r, 401, 109, what);
  assert.equal(r.json.message, AUTH_FAILED_MESSAGE, what);
}

/** Count of each status in a list of responses, e.g. {"200": 1, "409": 9}. */
function tally(statuses) {
  const out = {};
  for (const s of statuses) out[s] = (out[s] || 0) + 1;
  return out;
}

/** wrangler.toml's AUTH_FAILURES budget: failures per client per period (production values). */
const PRODUCTION_BUDGET = (() => {
  const toml = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  const m = /name\s*=\s*"AUTH_FAILURES"[\s\S]*?simple\s*=\s*\{\s*limit\s*=\s*(\d+)\s*,\s*period\s*=\s*(\d+)/.exec(toml);
  assert.ok(m, 'wrangler.toml has the AUTH_FAILURES rate limit');
  return { limit: Number(m[1]), period: Number(m[2]) };
})();

// ================================================================ races (raised budget)

// ================================================================ the checks themselves can fail

describe('the leak scan and the log check find what they look for', () => {
  // A recorded worker as the harness keeps it, with one issued secret and the admin token.
  const secret = `kws_${randB62(38)}`;
  const token = `kwa_${randB62(16)}:${secret}`;
  const fake = (responses, output = '') => ({
    adminToken: 'kwadmin_0123456789abcdef',
    output,
    responses: responses.map((r, seq) => ({ seq, method: 'GET', status: 200, headers: '', ...r })),
    responsesAfter(seq) {
      return this.responses.filter((r) => r.seq > seq);
    },
  });
  const issuing = { method: 'POST', path: '/api/v1/api_keys', text: JSON.stringify({ code: 0, data: { secret_key: secret, token }, message: 'ok' }) };

  test('a secret echoed in a later response header is a leak', () => {
    const w = fake([issuing, { path: '/api/v1/me', headers: `x-echo: ${token}`, text: '{}' }]);
    const { problems } = leakProblems(w);
    assert.equal(problems.length, 3, problems.join('\n')); // token, secret and its random part
    assert.match(problems[0], /in later response #1 GET \/api\/v1\/me/);
  });

  test('a provider key or the admin token in a header is a leak', () => {
    const w = fake([{ path: '/v1/models', headers: 'www-authenticate: sk-provider-0123456789 kwadmin_0123456789abcdef', text: '{}' }]);
    const { problems } = leakProblems(w, { credentials: ['sk-provider-0123456789'] });
    assert.ok(problems.some((p) => p.includes('provider key')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('admin token in response #0')), problems.join('\n'));
  });

  test('a client script printing the token is a leak', () => {
    const w = fake([issuing]);
    const { problems } = leakProblems(w, { texts: { 'the script': `error: 401 for ${token}` } });
    assert.ok(problems.some((p) => p.endsWith('in the script')), problems.join('\n'));
  });

  test("wrangler's banner alone is not the worker's log", () => {
    const banner = ' ⛅️ wrangler 4.164.0\nUsing secrets defined in .dev.vars\n[wrangler:info] Ready on http://127.0.0.1:1\n';
    const w = fake([{ path: '/health', text: '{}' }], banner);
    assert.deepEqual(workerLogProblems(w), ['no access line for #0 GET /health 200']);
    w.output += '[wrangler:info] GET /health 200 OK (3ms)\n';
    assert.deepEqual(workerLogProblems(w), []);
    assert.deepEqual(workerLogProblems(w, { own: [/\[INFO\] purge: /] }), ['no worker line matching /\\[INFO\\] purge: /']);
  });
});

describe('races (worker with the raised failure budget)', () => {
  const w = useWorker();
  const me = (token, headers) => w.call('GET', '/api/v1/me', { token, headers });

  async function mkUser(username, extra = {}) {
    return ok(await w.admin('POST', '/api/v1/admin/users', { username, ...extra }), `create user ${username}`);
  }
  async function issue(username, body = {}) {
    return ok(await w.admin('POST', `/api/v1/admin/users/${username}/api_key`, body), `issue a key for ${username}`);
  }

  test('100 concurrent key creations against a limit of 30: exactly 30 succeed, the rest are 409', async () => {
    const N = 100;
    const LIMIT = 30;
    ok(await w.admin('PUT', '/api/v1/admin/settings', { max_keys_per_user: LIMIT }), 'set the key limit');
    await mkUser('race-limit');
    const rs = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        w.admin('POST', '/api/v1/admin/users/race-limit/api_key', { description: `limit ${i}` }),
      ),
    );
    const statuses = tally(rs.map((r) => r.status));
    assert.deepEqual(statuses, { 200: LIMIT, 409: N - LIMIT }, JSON.stringify(statuses));
    for (const r of rs.filter((r) => r.status === 409)) assert.match(fails(r, 409, 409), /max_keys_per_user/);
    const rows = await w.sql(`SELECT COUNT(*) AS n FROM api_keys WHERE username = 'race-limit'`);
    assert.equal(rows[0].n, LIMIT, 'D1 holds exactly the limit');
    const audited = await w.sql(`SELECT COUNT(*) AS n FROM audit WHERE action = 'api_key.create' AND target LIKE 'race-limit/%'`);
    assert.equal(audited[0].n, LIMIT, 'one audit entry per key created, none for a refusal');
  });

  test('200 concurrent key creations for one user: all succeed, all distinct, none lost, all work', async () => {
    const N = 200;
    // Room for all of them (the default max_keys_per_user is 50); the next test races the limit.
    ok(await w.admin('PUT', '/api/v1/admin/settings', { max_keys_per_user: N + 1 }), 'raise the key limit');
    await mkUser('race-keys');
    const pre = await issue('race-keys', { description: 'pre-existing' });

    const t0 = performance.now();
    const rs = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        w.admin('POST', '/api/v1/admin/users/race-keys/api_key', { description: `race ${i}` }),
      ),
    );
    const ms = Math.round(performance.now() - t0);
    const statuses = tally(rs.map((r) => r.status));
    assert.deepEqual(statuses, { 200: N }, `every creation succeeds: ${JSON.stringify(statuses)} ${rs.find((r) => r.status !== 200)?.text ?? ''}`);
    const keys = rs.map((r) => ok(r, 'concurrent create'));
    for (const k of keys) assert.match(k.token, /^kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38}$/);
    for (const field of ['id', 'token', 'access_key', 'secret_key']) {
      assert.equal(new Set(keys.map((k) => k[field])).size, N, `all ${field}s distinct`);
    }
    assert.ok(!keys.some((k) => k.id === pre.id || k.access_key === pre.access_key), 'no clash with the earlier key');
    // Each request got its own description back: no response was crossed with another.
    assert.deepEqual(keys.map((k) => k.description), Array.from({ length: N }, (_, i) => `race ${i}`));

    // One page holds them all (a page is at most 1000 rows).
    const list = ok(await w.admin('GET', '/api/v1/admin/users/race-keys/api_key?limit=1000'), 'list');
    assert.equal(list.length, N + 1, 'the list shows exactly the 200 new keys plus the earlier one');
    const listed = new Set(list.map((x) => x.id));
    for (const k of [pre, ...keys]) assert.ok(listed.has(k.id), `key ${k.id} is listed`);
    const rows = await w.sql(`SELECT COUNT(*) AS n, COUNT(DISTINCT access_key) AS a FROM api_keys WHERE username = 'race-keys'`);
    assert.deepEqual(rows, [{ n: N + 1, a: N + 1 }], 'D1 holds exactly one row per key');
    const audited = await w.sql(`SELECT COUNT(*) AS n FROM audit WHERE action = 'api_key.create' AND target LIKE 'race-keys/%'`);
    assert.equal(audited[0].n, N + 1, 'one audit entry per creation');

    // Every token works (all of them, not only a sample), and names its own key.
    for (let i = 0; i < N; i += 50) {
      const batch = keys.slice(i, i + 50);
      const mes = await Promise.all(batch.map((k) => me(k.token)));
      mes.forEach((r, j) => {
        const d = ok(r, `token ${i + j} on /me`);
        assert.equal(d.username, 'race-keys');
        assert.equal(d.api_key.id, batch[j].id);
        assert.equal(d.api_key.access_key, batch[j].access_key);
      });
    }
    ok(await me(pre.token), 'the earlier key still works');
    console.log(`race: ${N} concurrent key creations in ${ms} ms, ${N} distinct, ${N + 1} listed, ${N} tokens verified`);
  });

  test('delete while in use: after the DELETE returns, every request started later is 401', async () => {
    // SECURITY.md 2: "by default this holds immediately" (no verification cache unless an operator
    // turns one on); this worker runs wrangler.toml's default.
    const cache = /^\s*VERIFY_CACHE_SECONDS\s*=\s*"(\d+)"/m.exec(readFileSync(join(ROOT, 'wrangler.toml'), 'utf8'));
    assert.ok(!cache || cache[1] === '0', `the verification cache is off by default (VERIFY_CACHE_SECONDS = ${cache?.[1]})`);
    await mkUser('race-del');
    const keep = await issue('race-del');
    const ROUNDS = 5;
    const HAMMERS = 8;
    const BURST = 50;
    let before200 = 0;
    let after401 = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const k = await issue('race-del', { description: `victim ${round}` });
      ok(await me(k.token), 'the victim works before the delete');
      let stop = false;
      const results = []; // {start, end, status}
      const hammer = async () => {
        while (!stop) {
          const start = performance.now();
          const r = await me(k.token);
          results.push({ start, end: performance.now(), status: r.status, text: r.text });
        }
      };
      const hammers = Array.from({ length: HAMMERS }, hammer);
      // Let some succeed first: a fixed wait alone is not enough on a busy machine.
      await sleep(150 + round * 40);
      while (results.length < HAMMERS) await sleep(10);
      const delStart = performance.now();
      const d = await w.admin('DELETE', `/api/v1/admin/users/race-del/api_key/${k.id}`);
      const delEnd = performance.now();
      assert.equal(ok(d, 'delete while in use'), true);
      // A burst started after the delete returned.
      const burst = await Promise.all(Array.from({ length: BURST }, () => me(k.token)));
      await sleep(100);
      stop = true;
      await Promise.all(hammers);

      burst.forEach((r, i) => unauth(r, `burst request ${i} after the delete (round ${round})`));
      const odd = results.filter((x) => x.status !== 200 && x.status !== 401);
      assert.deepEqual(odd.map((x) => `${x.status} ${x.text}`), [], 'only 200 or 401 while racing');
      const late = results.filter((x) => x.start >= delEnd);
      const lateOk = late.filter((x) => x.status !== 401);
      assert.equal(lateOk.length, 0, `${lateOk.length} of ${late.length} requests started after the delete returned still passed`);
      const early = results.filter((x) => x.end <= delStart);
      assert.ok(early.length > 0 && early.every((x) => x.status === 200), 'requests finished before the delete began passed');
      assert.ok(late.length > 0, 'the hammers kept going after the delete');
      before200 += early.length;
      after401 += late.length + burst.length;
      fails(await w.admin('DELETE', `/api/v1/admin/users/race-del/api_key/${k.id}`), 404, 404, 'deleted once only');
    }
    ok(await me(keep.token), 'the user’s other key was never affected');
    console.log(`race: delete-while-in-use ${ROUNDS} rounds x ${HAMMERS} hammers: ${before200} passed before, ${after401} refused after`);
  });

  let owner = null; // {tenant_id, token} of the tenant used by the ai_keys and models races

  test('10 concurrent creations of one gateway-key alias: exactly one 200, the rest 409, one row', async () => {
    const u = await mkUser('race-owner');
    owner = { tenant_id: u.tenant_id, token: (await issue('race-owner')).token };
    // Connect the provider first without a live call (not strictly needed for OpenAI, but as a client would).
    const c = await w.call('POST', '/api/v1/models', {
      token: owner.token,
      body: { llm_factory: 'OpenAI', api_key: OPENAI_CONN_KEY, verify: false },
    });
    assert.equal(ok(c, 'connect OpenAI'), true);

    const N = 10;
    for (const alias of ['prod', 'staging', 'dup_alias.v2']) {
      const body = { alias, provider: 'OpenAI', model: 'gpt-4o', api_key: PROVIDER_KEY, input_limit: 1000 };
      const rs = await Promise.all(
        Array.from({ length: N }, () => w.call('POST', '/api/v1/ai_keys', { token: owner.token, body })),
      );
      const statuses = tally(rs.map((r) => r.status));
      assert.deepEqual(statuses, { 200: 1, 409: N - 1 }, `${alias}: ${JSON.stringify(statuses)} ${rs.map((r) => r.text).join('\n')}`);
      const winner = ok(rs.find((r) => r.status === 200), 'the winner');
      assert.equal(winner.alias, alias);
      for (const r of rs.filter((x) => x.status === 409)) {
        const msg = fails(r, 409, 409, 'a loser');
        assert.equal(msg, `alias ${alias} already exists`);
      }
      const rows = await w.sql(
        `SELECT id FROM ai_keys WHERE tenant_id = '${owner.tenant_id}' AND alias = '${alias.replace(/'/g, "''")}'`,
      );
      assert.deepEqual(rows, [{ id: winner.id }], `${alias}: exactly one row in D1, the winner’s`);
      const got = ok(await w.call('GET', `/api/v1/ai_keys/${winner.id}`, { token: owner.token }));
      assert.equal(got.alias, alias);
    }
    const audited = await w.sql(`SELECT COUNT(*) AS n FROM audit WHERE action = 'ai_key.create' AND tenant_id = '${owner.tenant_id}'`);
    assert.equal(audited[0].n, 3, 'no partial write of a loser (one audit entry per winner)');
    const listed = ok(await w.call('GET', '/api/v1/ai_keys?page_size=100', { token: owner.token }));
    assert.equal(listed.total, 3);
    console.log(`race: 3 rounds x ${N} concurrent alias creations: 3 created, ${3 * (N - 1)} refused with 409`);
  });

  test('set-default racing model removal (20 rounds): no default names a removed model, no orphan row', async () => {
    assert.ok(owner, 'the owner was created by the previous test');
    const ROUNDS = 20;
    const outcomes = {};
    for (let i = 0; i < ROUNDS; i++) {
      const name = `race-llm-${i}`;
      const id = `${name}@Ollama`;
      const add = await w.call('POST', '/api/v1/models', {
        token: owner.token,
        body: { llm_factory: 'Ollama', llm_name: name, base_url: 'http://127.0.0.1:9', model_type: 'chat', verify: false },
      });
      assert.equal(ok(add, `add ${name}`), true);
      // Three set-default requests spread around one removal (0..2 * lag ms apart, lag 0..4 ms, the
      // removal leaving first in odd rounds), so the rounds hit different interleavings.
      const setDefault = () => w.call('POST', '/api/v1/models/default', { token: owner.token, body: { llm_id: id } });
      const remove = () => w.call('DELETE', '/api/v1/models', { token: owner.token, body: { llm_factory: 'Ollama', llm_name: name } });
      const lag = i % 5;
      const removal = i % 2 === 0 ? sleep(lag).then(remove) : remove();
      const sets = [setDefault(), sleep(lag).then(setDefault), sleep(2 * lag).then(setDefault)];
      const [d, ...ss] = await Promise.all([removal, ...sets]);
      assert.equal(ok(d, `remove ${name}`), true);
      // Each default either won (set before the removal, then cleared by it) or lost cleanly.
      for (const s of ss) {
        if (s.status === 200) {
          assert.equal(ok(s), true);
        } else if (s.status === 400) {
          assert.match(fails(s, 400, 101, 'default after removal'), new RegExp(name));
        } else {
          fails(s, 409, 409, 'default while removing');
        }
        outcomes[s.status] = (outcomes[s.status] || 0) + 1;
      }
      const now = ok(await w.call('GET', '/api/v1/models/default', { token: owner.token }), 'read defaults');
      for (const [field, v] of Object.entries(now)) {
        assert.ok(v === null || !v.startsWith(`${name}@`), `round ${i}: ${field} still names the removed model: ${v}`);
      }
      assert.equal(now.llm_id, null, `round ${i}: llm_id cleared`);
    }
    const orphans = await w.sql(
      'SELECT tenant_id, model_type, llm_name, connection_id FROM tenant_defaults ' +
        'WHERE connection_id IS NOT NULL AND connection_id NOT IN (SELECT id FROM provider_connections)',
    );
    assert.deepEqual(orphans, [], 'no default row points at a removed connection');
    const left = await w.sql(
      `SELECT model_type, llm_name FROM tenant_defaults WHERE tenant_id = '${owner.tenant_id}' AND llm_name LIKE 'race-llm-%'`,
    );
    assert.deepEqual(left, [], 'no default row names a removed model');
    const conns = await w.sql(`SELECT COUNT(*) AS n FROM provider_connections WHERE tenant_id = '${owner.tenant_id}' AND factory = 'Ollama'`);
    assert.equal(conns[0].n, 0, 'every raced model is gone');
    console.log(`race: set-default vs removal ${ROUNDS} rounds, set-default outcomes ${JSON.stringify(outcomes)}`);
  });

  test('two overlapping cron runs purge every expired key exactly once and keep every valid one', async () => {
    // More expired rows than one purge statement takes (jobs.rs PURGE_CHUNK = 5,000), so each run
    // needs several statements and the two runs' statements can interleave; still far below one
    // run's bound (20 chunks), so together the two runs must remove every expired row.
    const EXPIRED = 12_000;
    const VALID = 200;
    const u = await mkUser('race-cron');
    const now = Date.now();
    const future = now + 24 * 60 * MINUTE;
    await w.sql(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${EXPIRED + VALID}) ` +
        'INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id, create_date, update_date, expires_at) ' +
        `SELECT 'cron-' || i, 'kwa_cron' || i, 'h', 'kws_...', 'race-cron', '${u.tenant_id}', ${now - MINUTE}, ${now - MINUTE}, ` +
        `CASE WHEN i <= ${EXPIRED} THEN ${now - MINUTE} - i ELSE ${future} + i END FROM n`,
    );
    const seeded = await w.sql(
      `SELECT SUM(expires_at <= ${now}) AS expired, SUM(expires_at > ${now}) AS valid FROM api_keys WHERE username = 'race-cron'`,
    );
    assert.deepEqual(seeded, [{ expired: EXPIRED, valid: VALID }]);
    // Everything the purge may remove: the seeded rows and any other expired key of this worker.
    const allExpired = (await w.sql(`SELECT COUNT(*) AS n FROM api_keys WHERE expires_at <= ${Date.now()}`))[0].n;
    assert.equal(allExpired, EXPIRED, 'no other expired key exists in this worker');

    // Both runs are in flight at once: two /__scheduled requests sent together, each answered only
    // when its run has finished.
    // Local workerd runs the second invocation's statements only after the first's (measured: with
    // 60,000 rows the second request arrived 90 ms into a 600 ms run and removed 0), so the
    // statement-by-statement interleaving is forced natively (tests/api_keys.rs,
    // two_purges_interleaved_statement_by_statement_remove_each_expired_key_once); here the
    // invariant is checked for whatever order the runtime picks.
    const mark = w.output.length;
    const [a, b] = await Promise.all([w.scheduled(), w.scheduled()]);
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    const re = /purge: removed (\d+) expired keys/g;
    const twoLines = await (async () => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        if ([...w.output.slice(mark).matchAll(re)].length >= 2) return true;
        await sleep(50);
      }
      return false;
    })();
    assert.ok(twoLines, `two purge lines in the log:\n${w.output.slice(mark)}`);
    const removed = [...w.output.slice(mark).matchAll(re)].map((m) => Number(m[1]));
    assert.equal(removed.length, 2, `exactly two runs logged: ${removed}`);
    assert.equal(removed[0] + removed[1], EXPIRED, `the runs' removed counts add up to the seeded count: ${removed}`);

    const after = await w.sql(
      `SELECT SUM(expires_at <= ${now}) AS expired, SUM(expires_at > ${now}) AS valid, COUNT(*) AS n FROM api_keys WHERE username = 'race-cron'`,
    );
    assert.deepEqual(after, [{ expired: 0, valid: VALID, n: VALID }], 'every expired row gone, every valid one kept');
    const kept = await w.sql(
      `SELECT COUNT(*) AS n FROM api_keys WHERE username = 'race-cron' AND CAST(substr(id, 6) AS INTEGER) > ${EXPIRED}`,
    );
    assert.equal(kept[0].n, VALID, 'the rows kept are exactly the seeded valid ones');

    // A third run finds nothing more.
    const mark2 = w.output.length;
    assert.equal((await w.scheduled()).status, 200);
    assert.ok(await w.waitForOutput(/purge: removed 0 expired keys/, 15_000, mark2), w.output.slice(mark2));
    console.log(`race: two overlapping cron runs removed ${removed.join(' + ')} = ${EXPIRED} expired keys, kept ${VALID}`);
  });

  test('no secret is ever seen again in a later response or in the worker log (races worker)', async () => {
    ok(await w.admin('GET', '/api/v1/admin/users/race-keys/api_key'));
    ok(await w.admin('GET', '/api/v1/admin/audit?limit=1000'));
    if (owner) ok(await w.call('GET', '/api/v1/ai_keys', { token: owner.token }));
    await sleep(500); // let the last log lines arrive
    const { problems, issued } = leakProblems(w, { label: 'races', credentials: CREDENTIALS });
    assert.ok(issued.length >= 200, `the scan saw the issued secrets (${issued.length})`);
    assert.deepEqual(problems, []);
    const rows = await w.sql('SELECT api_key, api_key_hint FROM ai_keys');
    assert.ok(!JSON.stringify(rows).includes(PROVIDER_KEY), 'the gateway key is not stored in plaintext');
    // The scanned log is the worker's: the runtime's line for each recent request, and its own lines.
    assert.deepEqual(workerLogProblems(w, { own: [/\[INFO\] purge: removed \d+ expired keys/] }), []);
  });
});

// ================================================================ brute force (production budget)

describe('brute force (worker with wrangler.toml’s production budget)', () => {
  const b = useWorker({ authFailureLimit: null });
  const { limit: BUDGET, period: PERIOD } = PRODUCTION_BUDGET;

  const from = (ip) => ({ 'cf-connecting-ip': ip });
  const meFrom = (ip, token) => b.call('GET', '/api/v1/me', { token, headers: from(ip) });

  async function mkUser(username) {
    return ok(await b.admin('POST', '/api/v1/admin/users', { username }), `create user ${username}`);
  }
  async function issue(username) {
    return ok(await b.admin('POST', `/api/v1/admin/users/${username}/api_key`, {}), `issue a key for ${username}`);
  }

  /**
   * The binding's counters live in fixed windows aligned to the clock (miniflare, like the edge,
   * rolls every client's counter over at the same instant). A run of budget + a few attempts takes
   * about a second; start it early enough in a window that no rollover resets the count midway.
   */
  async function freshWindow(needMs = 15_000) {
    const into = Date.now() % (PERIOD * 1000);
    if (PERIOD * 1000 - into < needMs) await sleep(PERIOD * 1000 - into + 250);
  }

  /** A 429 envelope with a Retry-After of 1..BLOCK seconds. */
  function limited(r, what) {
    const msg = fails(r, 429, 429, what);
    const ra = r.headers.get('retry-after');
    assert.match(ra || '', /^\d+$/, `${what}: Retry-After is a number of seconds: ${ra}`);
    assert.ok(Number(ra) >= 1 && Number(ra) <= PERIOD, `${what}: Retry-After ${ra} within 1..${PERIOD}`);
    assert.match(msg, /retry after \d+ seconds/i, what);
    return Number(ra);
  }

  /** Send bad credentials from `ip` until the first 429 (at most budget + 10); returns the statuses. */
  async function exhaust(ip, badToken) {
    const statuses = [];
    for (let i = 0; i < BUDGET + 10; i++) {
      const r = await meFrom(ip, typeof badToken === 'function' ? badToken() : badToken);
      statuses.push(r.status);
      if (r.status === 401) unauth(r, `attempt ${i + 1} from ${ip}`);
      else if (r.status === 429) {
        limited(r, `attempt ${i + 1} from ${ip}`);
        break;
      } else assert.fail(`attempt ${i + 1} from ${ip}: unexpected ${r.status} ${r.text}`);
    }
    return statuses;
  }

  const keys = {};

  test('setup: a user with a good key, a revoked key and an expired key', async () => {
    assert.equal(BUDGET, 30, 'wrangler.toml keeps the production budget of 30 failures');
    assert.equal(PERIOD, 60);
    await mkUser('bf-user');
    keys.good = await issue('bf-user');
    keys.revoked = await issue('bf-user');
    keys.expired = await issue('bf-user');
    ok(await b.admin('DELETE', `/api/v1/admin/users/bf-user/api_key/${keys.revoked.id}`));
    await b.sql(`UPDATE api_keys SET expires_at = ${Date.now() - MINUTE} WHERE id = '${keys.expired.id}'`);
    ok(await meFrom('192.0.2.1', keys.good.token), 'the good key works');
  });

  test(`after ${PRODUCTION_BUDGET.limit} wrong tokens a client gets 429 with Retry-After, even for a correct token`, async () => {
    const A = '203.0.113.10';
    await freshWindow();
    const statuses = await exhaust(A, forgedToken);
    assert.deepEqual(
      statuses,
      [...Array(BUDGET).fill(401), 429],
      `exactly ${BUDGET} failures are answered 401, the next is 429: ${statuses.join(',')}`,
    );

    // Blocked: every attempt, a correct one included, in either scheme, on any route.
    const ra = limited(await meFrom(A, keys.good.token), 'correct token while blocked');
    assert.ok(ra > PERIOD - 10, `the block has just started (Retry-After ${ra})`);
    limited(await b.call('GET', '/api/v1/me', { basic: keys.good.token, headers: from(A) }), 'correct token as Basic while blocked');
    limited(await b.call('GET', '/api/v1/api_keys', { token: keys.good.token, headers: from(A) }), 'another route while blocked');
    limited(await b.call('GET', '/api/v1/admin/users', { token: b.adminToken, headers: from(A) }), 'the admin token while blocked');
    limited(await meFrom(A, forgedToken()), 'a wrong token while blocked');

    // The relay answers in OpenAI's error shape.
    const relay = await b.call('GET', '/v1/models', { token: keys.good.token, headers: from(A) });
    assert.equal(relay.status, 429, `relay: ${relay.text}`);
    assert.ok(relay.json && relay.json.error, `relay body is OpenAI-shaped: ${relay.text}`);
    assert.deepEqual(Object.keys(relay.json), ['error']);
    assert.equal(relay.json.error.type, 'rate_limit_error');
    assert.equal(relay.json.error.code, 'rate_limit_exceeded');
    assert.match(relay.json.error.message, /retry after \d+ seconds/i);
    assert.match(relay.headers.get('content-type') || '', /^application\/json/);
  });

  test('wrangler dev takes the client from the request’s CF-Connecting-IP: other clients are unaffected', async () => {
    // Shown by the previous test's client being blocked while these are not. In wrangler dev the
    // header a request carries is what the worker sees as `cf-connecting-ip` (on the edge Cloudflare
    // sets it from the TCP peer and a client cannot choose it).
    const A = '203.0.113.10';
    limited(await meFrom(A, keys.good.token), 'precondition: A is blocked');
    const other = ok(await meFrom('198.51.100.7', keys.good.token), 'another client, correct token');
    assert.equal(other.username, 'bf-user');
    unauth(await meFrom('198.51.100.8', forgedToken()), 'another client, wrong token: 401, not 429');
    const relay = await b.call('GET', '/v1/models', { token: keys.good.token, headers: from('198.51.100.7') });
    assert.equal(relay.status, 200, `relay for another client: ${relay.text}`);
    // A request without the header is yet another client.
    ok(await b.call('GET', '/api/v1/me', { token: keys.good.token }), 'no CF-Connecting-IP header');
    ok(await b.admin('GET', '/api/v1/admin/users'), 'the admin from another client');
    limited(await meFrom(A, keys.good.token), 'A is still blocked');
  });

  test('unknown, revoked, expired and malformed credentials all count against the same budget', async () => {
    const kinds = {
      unknown: ['203.0.113.21', forgedToken],
      revoked: ['203.0.113.22', keys.revoked.token],
      expired: ['203.0.113.23', keys.expired.token],
      malformed: ['203.0.113.24', `${keys.good.access_key}:kws_short`],
      'wrong secret for a real access key': ['203.0.113.25', () => {
        const random = randB62(32);
        return `${keys.good.access_key}:kws_${random}${checksum(random)}`;
      }],
    };
    const seen = {};
    for (const [kind, [ip, token]] of Object.entries(kinds)) {
      await freshWindow(8_000);
      const statuses = await exhaust(ip, token);
      seen[kind] = statuses.length;
      assert.deepEqual(statuses, [...Array(BUDGET).fill(401), 429], `${kind}: ${statuses.join(',')}`);
      limited(await meFrom(ip, keys.good.token), `${kind}: then the correct token is refused too`);
    }
    ok(await meFrom('198.51.100.9', keys.good.token), 'an unrelated client still gets in');
    console.log(`brute force: blocked after ${JSON.stringify(seen)} attempts per kind`);
  });

  test('the relay’s 429 carries Retry-After too (API.md: 429 always comes with Retry-After)', async () => {
    const A = '203.0.113.10';
    const envelope = await meFrom(A, keys.good.token);
    limited(envelope, 'precondition: A is blocked');
    const relay = await b.call('GET', '/v1/models', { token: keys.good.token, headers: from(A) });
    assert.equal(relay.status, 429, relay.text);
    const ra = relay.headers.get('retry-after');
    assert.match(
      ra || '',
      /^\d+$/,
      `GET /v1/models from a blocked client answered 429 ${relay.text} without a Retry-After header ` +
        `(the /api/v1 envelope has "retry-after: ${envelope.headers.get('retry-after')}")`,
    );
  });

  test('no secret is ever seen again in a later response or in the worker log (brute-force worker)', async () => {
    ok(await b.admin('GET', '/api/v1/admin/users/bf-user/api_key'));
    await sleep(500);
    const { problems, issued } = leakProblems(b, { label: 'brute force', credentials: CREDENTIALS });
    assert.equal(issued.length, 3, 'the scan saw the three issued secrets');
    assert.deepEqual(problems, []);
  });
});
