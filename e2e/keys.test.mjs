// End to end: tenants, users and user API keys against `wrangler dev` (real workerd, local D1).
// One worker for the whole file; tests run in order and share it. Each test makes its own users
// where it can, so one failure does not hide the others. The last test is the secret-leak check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum, fails, forgedToken, leakProblems, ok } from './checks.mjs';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, useWorker } from './harness.mjs';

const w = useWorker();

const AUTH_FAILED_MESSAGE =
  'Authentication failed: the credential is missing, malformed, unknown, expired or revoked';
const DEFAULT_MAX_TTL = 129600;
const MINUTE = 60_000;

// Shared across tests: every 401 body seen by kind, and the targets the audit log must show.
const unauthorized = new Map(); // kind -> {text, wwwAuthenticate}
const auditExpect = []; // {action, target}
let graceEndedKeyId = null; // a rotated key whose grace period the rotation test ended in D1

// ---------------------------------------------------------------- helpers

/** A 401, recorded under `kind` for the identical-bodies test. */
function unauth(r, kind) {
  fails(r, 401, 109, kind);
  assert.equal(r.json.message, AUTH_FAILED_MESSAGE, kind);
  if (kind && !unauthorized.has(kind)) {
    unauthorized.set(kind, { text: r.text, wwwAuthenticate: r.headers.get('www-authenticate') });
  }
}

const me = (token) => w.call('GET', '/api/v1/me', { token });
const basic = (token) => w.call('GET', '/api/v1/me', { basic: token });

async function mkTenant(name) {
  const t = ok(await w.admin('POST', '/api/v1/admin/tenants', { name }), 'create tenant');
  auditExpect.push({ action: 'tenant.create', target: t.id });
  return t;
}

async function mkUser(username, extra = {}) {
  const u = ok(await w.admin('POST', '/api/v1/admin/users', { username, ...extra }), 'create user');
  auditExpect.push({ action: 'user.create', target: username });
  return u;
}

async function issue(username, body = {}) {
  const r = await w.admin('POST', `/api/v1/admin/users/${username}/api_key`, body);
  const k = ok(r, 'issue key');
  assert.equal(r.json.message, 'API key generated successfully');
  auditExpect.push({ action: 'api_key.create', target: `${username}/${k.id}` });
  return k;
}

function assertTokenShape(k) {
  assert.match(k.access_key, /^kwa_[0-9A-Za-z]{16}$/);
  assert.match(k.secret_key, /^kws_[0-9A-Za-z]{38}$/);
  assert.equal(k.token, `${k.access_key}:${k.secret_key}`);
}

// ---------------------------------------------------------------- tests

test('health and openapi answer without auth', async () => {
  const h = await w.call('GET', '/health');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok' });
  const o = await w.call('GET', '/openapi.json');
  assert.equal(o.status, 200);
  assert.match(o.json.openapi, /^3\.1/);
});

test('the checksum helper matches the worker (a forged token is well-formed, so it reaches the lookup)', () => {
  // Pinned in src/domain/keys.rs: crc32("a") = 0xe8b7be43 -> "4GEHKN".
  assert.equal(checksum('a'), '4GEHKN');
  assert.equal(checksum(''), '000000');
});

test('admin creates a tenant, a user in it, and a user without tenant_id (own tenant, owner)', async () => {
  const t = await mkTenant('Acme Corp');
  assert.match(t.id, /\S/);
  assert.equal(t.name, 'Acme Corp');
  assert.match(t.create_date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  ok(await w.admin('GET', `/api/v1/admin/tenants/${t.id}`));

  const bob = await mkUser('bob', { tenant_id: t.id, role: 'admin' });
  assert.equal(bob.tenant_id, t.id);
  assert.equal(bob.role, 'admin');
  assert.equal(bob.status, 'active');

  const carol = await mkUser('carol');
  assert.notEqual(carol.tenant_id, t.id);
  assert.equal(carol.role, 'owner');
  const own = ok(await w.admin('GET', `/api/v1/admin/tenants/${carol.tenant_id}`));
  assert.equal(own.name, 'carol');
  auditExpect.push({ action: 'tenant.create', target: carol.tenant_id });

  const users = ok(await w.admin('GET', '/api/v1/admin/users')).map((u) => u.username);
  assert.ok(users.includes('bob') && users.includes('carol'), JSON.stringify(users));

  fails(await w.admin('POST', '/api/v1/admin/users', { username: 'bob' }), 409, 409, 'duplicate user');
  fails(await w.admin('POST', '/api/v1/admin/users', { username: 'dave', tenant_id: 'nope' }), 404, 404);
});

test('the worker\'s database was made by applying every migration, recorded in d1_migrations', async () => {
  const files = readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  assert.ok(files.length >= 1, JSON.stringify(files));
  const applied = (await w.sql('SELECT name FROM d1_migrations ORDER BY id')).map((r) => r.name);
  assert.deepEqual(applied, files);
});

test('usernames differing only in case are one user on D1: 409 for the second, found by any spelling', async () => {
  const u = await mkUser('Grace@Example.com');
  auditExpect.push({ action: 'tenant.create', target: u.tenant_id });
  const msg = fails(await w.admin('POST', '/api/v1/admin/users', { username: 'grace@example.com' }), 409, 409, 'other case');
  assert.match(msg, /grace@example\.com already exists as Grace@Example\.com/);
  const got = ok(await w.admin('GET', '/api/v1/admin/users/GRACE@EXAMPLE.COM'), 'any spelling');
  assert.equal(got.username, 'Grace@Example.com');
  const r = await w.admin('POST', '/api/v1/admin/users/grace@example.com/api_key', {});
  const k = ok(r, 'issue by another spelling');
  auditExpect.push({ action: 'api_key.create', target: `Grace@Example.com/${k.id}` });
  assert.equal(ok(await me(k.token), 'me').username, 'Grace@Example.com');
  const rows = await w.sql("SELECT username FROM api_keys WHERE username = 'Grace@Example.com'");
  assert.equal(rows.length, 1, 'the key refers to the stored spelling');
});

test('a key works as Bearer access:secret and as Basic base64(access:secret)', async () => {
  await mkUser('erin');
  const k = await issue('erin', { description: 'laptop' });
  assertTokenShape(k);
  assert.equal(k.description, 'laptop');

  const a = ok(await me(k.token), 'bearer');
  assert.equal(a.username, 'erin');
  assert.equal(a.role, 'owner');
  assert.equal(a.api_key.id, k.id);
  assert.equal(a.api_key.access_key, k.access_key);
  assert.equal(a.api_key.expires_at, k.expires_at);

  const b = ok(await basic(k.token), 'basic');
  assert.equal(b.username, 'erin');
  assert.equal(b.api_key.id, k.id);

  // The scheme is case-insensitive (RFC 9110 11.1).
  ok(await w.call('GET', '/api/v1/me', { headers: { authorization: `bEaReR ${k.token}` } }), 'scheme case');
});

test('key lists show access_key and secret_hint, never the secret or token', async () => {
  await mkUser('frank');
  const k1 = await issue('frank', { description: 'one' });
  const k2 = await issue('frank', { description: 'two' });
  for (const path of ['/api/v1/admin/users/frank/api_key', '/api/v1/admin/users/frank/keys']) {
    const r = await w.admin('GET', path);
    const list = ok(r, path);
    assert.equal(list.length, 2);
    for (const [item, k] of [[list.find((x) => x.id === k1.id), k1], [list.find((x) => x.id === k2.id), k2]]) {
      assert.ok(item, `${path} lists ${k.id}`);
      assert.equal(item.access_key, k.access_key);
      assert.equal(item.secret_hint, `kws_...${k.secret_key.slice(-4)}`);
      assert.deepEqual(
        Object.keys(item).sort(),
        ['access_key', 'create_date', 'description', 'expires_at', 'id', 'last_used_at', 'secret_hint', 'tenant_id', 'update_date'],
      );
    }
    for (const k of [k1, k2]) {
      assert.ok(!r.text.includes(k.secret_key.slice(4, 36)), `${path} leaks a secret`);
    }
    assert.ok(!/"(token|secret_key|secret_hash|secret)"/.test(r.text), r.text);
  }
  // Use is recorded (a deferred write after the response): last_used_at becomes set.
  ok(await me(k1.token));
  let used = null;
  for (let i = 0; i < 40 && !used; i++) {
    const list = ok(await w.admin('GET', '/api/v1/admin/users/frank/api_key'));
    used = list.find((x) => x.id === k1.id).last_used_at;
    if (!used) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(used || '', /^\d{4}-\d\d-\d\dT/, 'last_used_at is set after a call with the key');
  const own = await w.call('GET', '/api/v1/api_keys', { token: k1.token });
  assert.equal(ok(own).length, 2);
  assert.ok(!own.text.includes(k1.secret_key.slice(4, 36)) && !own.text.includes(k2.secret_key.slice(4, 36)));
  assert.ok(!/"(token|secret_key|secret_hash)"/.test(own.text), own.text);
});

test('rotate with grace_minutes 1: old and new secret both work until the grace ends, then only the new', async () => {
  await mkUser('grace');
  const k = await issue('grace');
  const r = await w.call('POST', `/api/v1/api_keys/${k.id}/rotate`, { token: k.token, body: { grace_minutes: 1 } });
  const n = ok(r, 'rotate');
  auditExpect.push({ action: 'api_key.rotate', target: `grace/${k.id}` });
  assertTokenShape(n);
  assert.equal(n.id, k.id);
  assert.equal(n.access_key, k.access_key);
  assert.notEqual(n.secret_key, k.secret_key);
  const until = Date.parse(n.previous_secret_valid_until);
  assert.ok(until > Date.now() && until <= Date.now() + 2 * MINUTE, n.previous_secret_valid_until);

  ok(await me(k.token), 'old secret in grace');
  ok(await me(n.token), 'new secret');
  ok(await basic(k.token), 'old secret in grace, basic');

  // End the grace period in the local D1 instead of waiting a minute.
  await w.sql(`UPDATE api_keys SET prev_valid_until = ${Date.now() - MINUTE} WHERE id = '${k.id}'`);
  const rows = await w.sql(`SELECT prev_secret_hash IS NOT NULL AS has_prev FROM api_keys WHERE id = '${k.id}'`);
  assert.equal(rows[0].has_prev, 1, 'the old hash is still stored (no purge yet)');
  unauth(await me(k.token), 'rotated-out');
  unauth(await basic(k.token), 'rotated-out (basic)');
  ok(await me(n.token), 'new secret after grace');
  graceEndedKeyId = k.id;
});

test('rotate with grace 0 kills the old secret at once', async () => {
  await mkUser('nograce');
  const k = await issue('nograce');
  const n = ok(await w.call('POST', `/api/v1/api_keys/${k.id}/rotate`, { token: k.token, body: { grace_minutes: 0 } }));
  auditExpect.push({ action: 'api_key.rotate', target: `nograce/${k.id}` });
  assert.equal(n.previous_secret_valid_until, null);
  unauth(await me(k.token), 'rotated-out at once');
  ok(await me(n.token));
  // No body: grace defaults to 0.
  const n2 = ok(await w.call('POST', `/api/v1/api_keys/${k.id}/rotate`, { token: n.token }));
  unauth(await me(n.token), 'rotated-out (default grace)');
  ok(await me(n2.token));
  fails(
    await w.call('POST', `/api/v1/api_keys/${k.id}/rotate`, { token: n2.token, body: { grace_minutes: 1441 } }),
    400, 101, 'grace above 1440',
  );
  ok(await me(n2.token), 'a refused rotation changes nothing');
});

test('Idempotency-Key on D1: a retried issue and a retried grace-0 rotation make no second key and leave a working secret', async () => {
  await mkUser('retrier');
  const idem = (key) => ({ 'idempotency-key': key });
  const path = '/api/v1/admin/users/retrier/api_key';
  const first = ok(await w.admin('POST', path, { description: 'retried' }, { headers: idem('issue-e2e') }));
  auditExpect.push({ action: 'api_key.create', target: `retrier/${first.id}` });
  const again = ok(await w.admin('POST', path, { description: 'retried' }, { headers: idem('issue-e2e') }), 'replayed issue');
  assert.equal(again.id, first.id);
  unauth(await me(first.token), 'the replaced secret of a replayed issue');
  ok(await me(again.token));
  fails(await w.admin('POST', path, { description: 'other' }, { headers: idem('issue-e2e') }), 409, 409, 'key reused');
  const keys = ok(await w.admin('GET', path));
  assert.equal(keys.length, 1, 'one key');

  const rotate = `/api/v1/api_keys/${again.id}/rotate`;
  const lost = ok(await w.call('POST', rotate, { token: again.token, body: { grace_minutes: 0 }, headers: idem('rotate-e2e') }));
  unauth(await me(again.token), 'ended by the rotation');
  const replay = ok(
    await w.call('POST', rotate, { token: again.token, body: { grace_minutes: 0 }, headers: idem('rotate-e2e') }),
    'replayed with the ended secret',
  );
  assert.equal(replay.id, again.id);
  unauth(await me(lost.token), 'the lost answer\'s secret');
  ok(await me(replay.token), 'the replay\'s secret works');
  unauth(
    await w.call('POST', rotate, { token: again.token, body: { grace_minutes: 0 }, headers: idem('another') }),
    'the ended secret with another key',
  );
  const rows = await w.sql("SELECT COUNT(*) AS n FROM idempotency_keys WHERE scope IN ('admin', 'user:retrier')");
  assert.equal(rows[0].n, 2);
});

test('deleting a key makes it fail with 401 at once; deleting it again is 404', async () => {
  await mkUser('henry');
  const k = await issue('henry');
  const keep = await issue('henry');
  ok(await me(k.token));
  assert.equal(ok(await w.admin('DELETE', `/api/v1/admin/users/henry/api_key/${k.id}`)), true);
  auditExpect.push({ action: 'api_key.delete', target: `henry/${k.id}` });
  unauth(await me(k.token), 'revoked');
  unauth(await basic(k.token), 'revoked (basic)');
  ok(await me(keep.token), 'the other key still works');
  fails(await w.admin('DELETE', `/api/v1/admin/users/henry/api_key/${k.id}`), 404, 404, 'delete twice');
  fails(await w.admin('DELETE', '/api/v1/admin/users/henry/keys/no-such-id'), 404, 404, 'unknown id');

  // Another user's key id is not found, for delete and rotate alike, and the key survives.
  await mkUser('mallory');
  const other = await issue('mallory');
  fails(await w.call('DELETE', `/api/v1/api_keys/${keep.id}`, { token: other.token }), 404, 404, 'foreign delete');
  fails(await w.call('POST', `/api/v1/api_keys/${keep.id}/rotate`, { token: other.token }), 404, 404, 'foreign rotate');
  fails(await w.admin('DELETE', `/api/v1/admin/users/mallory/api_key/${keep.id}`), 404, 404, 'wrong user in path');
  ok(await me(keep.token), 'the key survives foreign attempts');

  // Self-service delete of one's own other key.
  const k3 = await issue('henry');
  assert.equal(ok(await w.call('DELETE', `/api/v1/api_keys/${k3.id}`, { token: keep.token })), true);
  auditExpect.push({ action: 'api_key.delete', target: `henry/${k3.id}` });
  unauth(await me(k3.token), 'revoked (self-service)');
});

test('a disabled user gets 401; re-enabled, the same key works again', async () => {
  await mkUser('ivy');
  const k = await issue('ivy');
  ok(await me(k.token));
  const u = ok(await w.admin('PATCH', '/api/v1/admin/users/ivy', { status: 'disabled' }));
  auditExpect.push({ action: 'user.update', target: 'ivy' });
  assert.equal(u.status, 'disabled');
  unauth(await me(k.token), 'disabled user');
  unauth(await basic(k.token), 'disabled user (basic)');
  ok(await w.admin('PATCH', '/api/v1/admin/users/ivy', { status: 'active' }));
  ok(await me(k.token), 're-enabled');
  fails(await w.admin('PATCH', '/api/v1/admin/users/ivy', { status: 'sleeping' }), 400, 101);
  fails(await w.admin('PATCH', '/api/v1/admin/users/ivy', {}), 400, 101);
});

test('deleting a user makes their key fail with 401', async () => {
  await mkUser('jack');
  const k = await issue('jack');
  ok(await me(k.token));
  assert.equal(ok(await w.admin('DELETE', '/api/v1/admin/users/jack')), true);
  auditExpect.push({ action: 'user.delete', target: 'jack' });
  unauth(await me(k.token), 'deleted user');
  fails(await w.admin('GET', '/api/v1/admin/users/jack'), 404, 404);
  const left = await w.sql(`SELECT count(*) AS n FROM api_keys WHERE username = 'jack'`);
  assert.equal(left[0].n, 0, 'the user’s keys are gone with the user');
});

test('deleting a tenant makes its users’ keys fail with 401', async () => {
  const t = await mkTenant('Doomed Inc');
  await mkUser('kim', { tenant_id: t.id, role: 'owner' });
  await mkUser('lee', { tenant_id: t.id });
  const kk = await issue('kim');
  const kl = await issue('lee');
  ok(await me(kk.token));
  ok(await me(kl.token));
  assert.equal(ok(await w.admin('DELETE', `/api/v1/admin/tenants/${t.id}`)), true);
  auditExpect.push({ action: 'tenant.delete', target: t.id });
  unauth(await me(kk.token), 'deleted tenant');
  unauth(await me(kl.token), 'deleted tenant (member)');
  fails(await w.admin('GET', `/api/v1/admin/tenants/${t.id}`), 404, 404);
  fails(await w.admin('GET', '/api/v1/admin/users/kim'), 404, 404);
  fails(await w.admin('DELETE', `/api/v1/admin/tenants/${t.id}`), 404, 404, 'delete twice');
});

test('an expired key is rejected before any purge; the cron then removes the row and logs it', async () => {
  await mkUser('otto');
  const k = await issue('otto');
  const live = await issue('otto');
  ok(await me(k.token));
  await w.sql(`UPDATE api_keys SET expires_at = ${Date.now() - 5 * MINUTE} WHERE id = '${k.id}'`);

  unauth(await me(k.token), 'expired');
  unauth(await basic(k.token), 'expired (basic)');
  let rows = await w.sql(`SELECT id FROM api_keys WHERE id = '${k.id}'`);
  assert.equal(rows.length, 1, 'the expired row is still there before the cron runs');

  const mark = w.output.length;
  const s = await w.scheduled();
  assert.equal(s.status, 200, s.text);
  const logged = await w.waitForOutput(/purge: removed 1 expired keys/, 15_000, mark);
  assert.ok(logged, `no purge line in the worker log:\n${w.output.slice(mark)}`);
  assert.match(w.output.slice(mark), /purge: removed 1 expired keys/);
  // What the run cost D1, in the units it bills: at least the removed row read and written.
  const cost = /purge: removed 1 expired keys[^\n]*; D1 read (\d+) rows, wrote (\d+) rows, ([\d.]+) ms of SQL/.exec(
    w.output.slice(mark),
  );
  assert.ok(cost, `no D1 cost in the purge line:\n${w.output.slice(mark)}`);
  assert.ok(Number(cost[1]) >= 1, `rows read: ${cost[0]}`);
  assert.ok(Number(cost[2]) >= 1, `rows written: ${cost[0]}`);

  rows = await w.sql(`SELECT id FROM api_keys WHERE id = '${k.id}'`);
  assert.equal(rows.length, 0, 'the cron purged the expired row');
  if (graceEndedKeyId) {
    // The same run cleared the old secret of the rotation whose grace period ended.
    assert.match(w.output.slice(mark), /cleared [1-9]\d* ended grace secrets/);
    const g = await w.sql(
      `SELECT prev_secret_hash IS NULL AS cleared, prev_valid_until IS NULL AS no_until FROM api_keys WHERE id = '${graceEndedKeyId}'`,
    );
    assert.deepEqual(g, [{ cleared: 1, no_until: 1 }], 'ended grace secret cleared, key kept');
  }
  unauth(await me(k.token), 'expired, after purge');
  ok(await me(live.token), 'an unexpired key survives the purge');

  // Idempotent: a second run removes nothing more.
  const mark2 = w.output.length;
  assert.equal((await w.scheduled()).status, 200);
  assert.ok(await w.waitForOutput(/purge: removed 0 expired keys/, 15_000, mark2), w.output.slice(mark2));
  ok(await me(live.token));
});

test('ttl_minutes above the max is a 400 naming the max; after PUT settings the new max applies', async () => {
  await mkUser('tina');
  const s0 = ok(await w.admin('GET', '/api/v1/admin/settings'));
  assert.equal(s0.auth_token_max_ttl_minutes, DEFAULT_MAX_TTL);

  let msg = fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: DEFAULT_MAX_TTL + 1 }), 400, 101);
  assert.match(msg, /ttl_minutes/);
  assert.match(msg, new RegExp(`\\b${DEFAULT_MAX_TTL}\\b`));
  fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: 0 }), 400, 101, 'zero ttl');
  fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: -5 }), 400, 101, 'negative ttl');
  fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: '60' }), 400, 101, 'string ttl');
  fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl: 60 }), 400, 101, 'unknown field');

  const dflt = await issue('tina');
  const exp = Date.parse(dflt.expires_at) - Date.now();
  assert.ok(Math.abs(exp - DEFAULT_MAX_TTL * MINUTE) < 5 * MINUTE, `default ttl is the max: ${dflt.expires_at}`);

  try {
    const s1 = ok(await w.admin('PUT', '/api/v1/admin/settings', { auth_token_max_ttl_minutes: 60 }));
    assert.equal(s1.auth_token_max_ttl_minutes, 60);
    assert.equal(ok(await w.admin('GET', '/api/v1/admin/settings')).auth_token_max_ttl_minutes, 60);

    msg = fails(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: 61 }), 400, 101);
    assert.match(msg, /ttl_minutes/);
    assert.match(msg, /\b60\b/);
    assert.ok(!msg.includes(String(DEFAULT_MAX_TTL)), msg);

    const at60 = await issue('tina', { ttl_minutes: 60 });
    const d60 = Date.parse(at60.expires_at) - Date.now();
    assert.ok(d60 > 58 * MINUTE && d60 <= 61 * MINUTE, at60.expires_at);
    const implicit = await issue('tina');
    const dImp = Date.parse(implicit.expires_at) - Date.now();
    assert.ok(dImp > 58 * MINUTE && dImp <= 61 * MINUTE, `default is the new max: ${implicit.expires_at}`);
    ok(await me(at60.token));

    fails(await w.admin('PUT', '/api/v1/admin/settings', { auth_token_max_ttl_minutes: -1 }), 400, 101);
  } finally {
    ok(await w.admin('PUT', '/api/v1/admin/settings', { auth_token_max_ttl_minutes: DEFAULT_MAX_TTL }));
  }
  ok(await w.admin('POST', '/api/v1/admin/users/tina/api_key', { ttl_minutes: 61 }), 'restored max');
});

test('self-service key creation follows the same rules', async () => {
  await mkUser('uma');
  const k = await issue('uma');
  const r = await w.call('POST', '/api/v1/api_keys', { token: k.token, body: { description: 'ci' } });
  const n = ok(r);
  assert.equal(r.json.message, 'API key generated successfully');
  assertTokenShape(n);
  ok(await me(n.token));
  const msg = fails(await w.call('POST', '/api/v1/api_keys', { token: k.token, body: { ttl_minutes: DEFAULT_MAX_TTL + 1 } }), 400, 101);
  assert.match(msg, new RegExp(`\\b${DEFAULT_MAX_TTL}\\b`));
  // A user key may not call admin routes: authenticated, so 403, not 401.
  fails(await w.call('GET', '/api/v1/admin/users', { token: k.token }), 403, 108);
});

test('unknown and malformed credentials get 401', async () => {
  unauth(await me(forgedToken()), 'unknown (well-formed)');
  unauth(await basic(forgedToken()), 'unknown (basic)');
  await mkUser('mal');
  const k = await issue('mal');
  const last = k.secret_key.at(-1);
  const badSum = `${k.access_key}:${k.secret_key.slice(0, -1)}${last === 'A' ? 'B' : 'A'}`;
  unauth(await me(badSum), 'malformed (bad checksum)');
  unauth(await me(`${k.access_key}:${k.secret_key.slice(0, -1)}`), 'malformed (short)');
  unauth(await me(`${k.access_key}:kwx_${k.secret_key.slice(4)}`), 'malformed (prefix)');
  unauth(await me(k.secret_key), 'malformed (secret only)');
  unauth(await me('kwa_x:kws_y'), 'malformed (garbage)');
  unauth(await me(w.adminToken), 'admin token on a user route');
  ok(await me(k.token), 'the real token still works');
});

test('authorization header variants: missing, empty Bearer, wrong scheme, query string, bad Basic', async () => {
  await mkUser('hdr');
  const k = await issue('hdr');
  ok(await me(k.token));

  unauth(await w.call('GET', '/api/v1/me'), 'missing');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: '' } }), 'empty header');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: 'Bearer ' } }), 'Bearer empty');
  unauth(await w.rawCall('GET', '/api/v1/me', [['authorization', 'Bearer ']]), 'Bearer empty (raw)');
  unauth(await w.rawCall('GET', '/api/v1/me', [['authorization', 'Bearer']]), 'Bearer without space');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: `Token ${k.token}` } }), 'wrong scheme');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: k.token } }), 'no scheme');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: `Digest ${k.token}` } }), 'Digest scheme');
  unauth(await w.call('GET', '/api/v1/me', { headers: { 'x-api-key': k.token } }), 'x-api-key header');
  for (const p of ['token', 'api_key', 'access_token', 'key']) {
    unauth(await w.call('GET', `/api/v1/me?${p}=${encodeURIComponent(k.token)}`), `query string ${p}`);
  }
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: 'Basic !!!not*base64%%%' } }), 'Basic bad base64');
  unauth(
    await w.call('GET', '/api/v1/me', {
      headers: { authorization: `Basic ${Buffer.from(`${k.access_key}:${k.secret_key}`).toString('base64').replace(/=+$/, '')}x` },
    }),
    'Basic truncated base64',
  );
  unauth(await w.call('GET', '/api/v1/me', { basic: `${k.access_key}${k.secret_key}` }), 'Basic without colon');
  unauth(await w.call('GET', '/api/v1/me', { basic: `${k.secret_key}:${k.access_key}` }), 'Basic swapped');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: `Basic ${k.token}` } }), 'Basic not encoded');
  unauth(await w.call('GET', '/api/v1/me', { headers: { authorization: `Bearer  ${k.token}` } }), 'Bearer two spaces');
  unauth(
    await w.rawCall('GET', '/api/v1/me', [['authorization', `Bearer ${k.token}`], ['authorization', `Bearer ${k.token}`]]),
    'two Authorization headers',
  );
  ok(await me(k.token), 'the token itself was fine all along');
});

test('401 bodies are identical for unknown, malformed, expired, revoked, rotated-out and disabled credentials', () => {
  const required = [
    'unknown (well-formed)', 'malformed (bad checksum)', 'malformed (garbage)', 'expired', 'revoked',
    'rotated-out', 'disabled user', 'deleted user', 'deleted tenant', 'missing', 'query string token',
    'Basic bad base64', 'Basic without colon',
  ];
  for (const kind of required) assert.ok(unauthorized.has(kind), `no 401 recorded for "${kind}" (an earlier test failed)`);
  const bodies = new Set([...unauthorized.values()].map((v) => v.text));
  assert.equal(bodies.size, 1, `401 bodies differ:\n${[...unauthorized].map(([k, v]) => `${k}: ${v.text}`).join('\n')}`);
  const [body] = bodies;
  assert.deepEqual(JSON.parse(body), { code: 109, data: null, message: AUTH_FAILED_MESSAGE });
  const challenges = new Set([...unauthorized.values()].map((v) => v.wwwAuthenticate));
  assert.equal(challenges.size, 1, `WWW-Authenticate differs: ${[...challenges]}`);
  assert.match([...challenges][0] || '', /Bearer/);
});

test('error envelopes: 404, 405 with Allow, 413, 415, 400', async () => {
  let r = await w.call('GET', '/api/v1/nope');
  fails(r, 404, 404, 'unknown path');
  fails(await w.admin('GET', '/api/v1/admin/users/nobody'), 404, 404, 'unknown user');
  fails(await w.admin('GET', '/api/v1/admin/tenants/nothing'), 404, 404, 'unknown tenant');
  fails(await w.call('GET', '/api/v1/me/'), 404, 404, 'trailing slash');
  fails(await w.call('GET', '/api//v1/me'), 404, 404, 'double slash');
  fails(await w.admin('GET', '/api/v1/admin/users/a%2Fb/api_key'), 404, 404, 'encoded slash');

  r = await w.call('DELETE', '/api/v1/me');
  fails(r, 405, 405, 'DELETE /me');
  assert.equal(r.headers.get('allow'), 'GET');
  r = await w.admin('PUT', '/api/v1/admin/tenants', { name: 'x' });
  fails(r, 405, 405, 'PUT tenants');
  assert.deepEqual(r.headers.get('allow').split(/,\s*/).sort(), ['GET', 'POST']);
  r = await w.admin('POST', '/api/v1/admin/users/x/api_key/y');
  fails(r, 405, 405, 'POST key id');
  assert.equal(r.headers.get('allow'), 'DELETE');

  const before = ok(await w.admin('GET', '/api/v1/admin/tenants')).length;
  const big = JSON.stringify({ name: 'x'.repeat(70 * 1024) });
  assert.ok(big.length > 70 * 1024);
  r = await w.admin('POST', '/api/v1/admin/tenants', big, { headers: { 'content-type': 'application/json' } });
  fails(r, 413, 413, '70 KiB body');

  r = await w.admin('POST', '/api/v1/admin/tenants', '{"name":"plain"}', { headers: { 'content-type': 'text/plain' } });
  fails(r, 415, 415, 'text/plain');

  fails(
    await w.admin('POST', '/api/v1/admin/tenants', '{"name": ', { headers: { 'content-type': 'application/json' } }),
    400, 101, 'malformed JSON',
  );
  const m = fails(await w.admin('POST', '/api/v1/admin/tenants', { name: 'x', extra: 1 }), 400, 101, 'unknown field');
  assert.match(m, /extra|unknown field/);
  fails(await w.admin('POST', '/api/v1/admin/tenants', { name: '' }), 400, 101, 'empty name');
  assert.equal(ok(await w.admin('GET', '/api/v1/admin/tenants')).length, before, 'no rejected request created a tenant');

  unauth(await w.call('GET', '/api/v1/admin/tenants'), 'admin route without a token');
  unauth(await w.call('GET', '/api/v1/admin/tenants', { token: `${w.adminToken}x` }), 'wrong admin token');
});

test('the audit log shows every mutation', async () => {
  const r = await w.admin('GET', '/api/v1/admin/audit?limit=1000');
  const entries = ok(r);
  assert.ok(Array.isArray(entries));
  const actions = new Set(entries.map((e) => e.action));
  for (const a of [
    'tenant.create', 'user.create', 'api_key.create', 'api_key.rotate', 'api_key.delete',
    'user.update', 'user.delete', 'tenant.delete',
  ]) {
    assert.ok(actions.has(a), `audit has no ${a}`);
  }
  for (const { action, target } of auditExpect) {
    assert.ok(
      entries.some((e) => e.action === action && e.target === target),
      `audit has no ${action} ${target}`,
    );
  }
  for (let i = 1; i < entries.length; i++) {
    assert.ok(entries[i - 1].at >= entries[i].at, 'newest first');
  }
  assert.ok(entries.filter((e) => e.action === 'settings.update').length >= 2, 'settings updates are audited');
  const one = ok(await w.admin('GET', '/api/v1/admin/audit?limit=1'));
  assert.equal(one.length, 1);
  fails(await w.admin('GET', '/api/v1/admin/audit?limit=0'), 400, 101);
  fails(await w.admin('GET', '/api/v1/admin/audit?since=yesterday'), 400, 101);
  const tenantId = entries.find((e) => e.action === 'tenant.delete').tenant_id;
  const scoped = ok(await w.admin('GET', `/api/v1/admin/audit?tenant_id=${encodeURIComponent(tenantId)}`));
  assert.ok(scoped.length >= 2 && scoped.every((e) => e.tenant_id === tenantId));
});

test('no secret or token is ever seen again: not in a later response, not in the worker log', async () => {
  // Read everything once more, so there are later responses that could leak.
  for (const u of ok(await w.admin('GET', '/api/v1/admin/users'))) {
    ok(await w.admin('GET', `/api/v1/admin/users/${u.username}/api_key`));
  }
  ok(await w.admin('GET', '/api/v1/admin/audit?limit=1000'));
  ok(await w.admin('GET', '/api/v1/admin/tenants'));
  await new Promise((r) => setTimeout(r, 500)); // let the last log lines arrive

  // Every creation or rotation response, its secret in no later response and nowhere in the log.
  const { problems, issued } = leakProblems(w);
  assert.ok(issued.length >= 20, `expected many issued secrets, found ${issued.length}`);
  assert.deepEqual(problems, []);
  assert.ok(w.output.includes('purge: removed'), 'the captured log is the worker’s (sanity check)');
});
