// End to end: opt-in D1 read replication (D1_READ_REPLICATION=on) on workerd's local D1, which
// implements the Sessions API with a single primary: management answers carry the session's
// bookmark, a client that sends it back reads its own writes, a malformed one is a 400 that names
// the header, and revocation still holds on the next request (locally there is no lagging replica).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fails, ok } from './checks.mjs';
import { useWorker } from './harness.mjs';

const w = useWorker({ vars: { D1_READ_REPLICATION: 'on' } });
const BOOKMARK = 'x-d1-bookmark';
const bookmarkOf = (r) => r.headers.get(BOOKMARK);

test('management answers carry a bookmark, and one sent back reads the write it followed', async () => {
  const created = await w.admin('POST', '/api/v1/admin/users', { username: 'replica-reader' });
  const b1 = bookmarkOf(created);
  assert.match(b1 ?? '', /^[0-9a-f-]+$/, `a bookmark after the write: ${b1}`);
  const key = ok(
    await w.admin('POST', '/api/v1/admin/users/replica-reader/api_key', {}, { headers: { [BOOKMARK]: b1 } }),
    'issue a key at that bookmark',
  );
  const r = await w.call('GET', '/api/v1/me', { token: key.token, headers: { [BOOKMARK]: b1 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.data.username, 'replica-reader');
  const b2 = bookmarkOf(r);
  assert.ok(b2 && b2 >= b1, `bookmarks only move forward: ${b1} then ${b2}`);
  // The relay answers in OpenAI's shape and carries none.
  const models = await w.call('GET', '/v1/models', { token: key.token });
  assert.equal(models.status, 200, models.text);
  assert.equal(bookmarkOf(models), null);
});

test('a malformed bookmark is a 400 naming the header, before any query', async () => {
  for (const bad of ['first-primary', 'not a bookmark', 'ab;cd']) {
    const r = await w.admin('GET', '/api/v1/admin/tenants', undefined, { headers: { [BOOKMARK]: bad } });
    fails(r, 400, 101, bad);
    assert.match(r.json.message, /x-d1-bookmark/);
  }
});

test('a revoked key is refused on the next request, at the revoking answer’s bookmark', async () => {
  ok(await w.admin('POST', '/api/v1/admin/users', { username: 'replica-revoked' }), 'user');
  const key = ok(await w.admin('POST', '/api/v1/admin/users/replica-revoked/api_key', {}), 'key');
  assert.equal((await w.call('GET', '/api/v1/me', { token: key.token })).status, 200);
  const revoked = await w.admin('DELETE', `/api/v1/admin/users/replica-revoked/api_key/${key.id}`);
  assert.equal(revoked.status, 200, revoked.text);
  const r = await w.call('GET', '/api/v1/me', { token: key.token, headers: { [BOOKMARK]: bookmarkOf(revoked) } });
  assert.equal(r.status, 401, r.text);
  const unanchored = await w.call('GET', '/api/v1/me', { token: key.token });
  assert.equal(unanchored.status, 401, 'one primary locally: no replica lags');
});
