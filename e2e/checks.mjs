// Checks shared by the end-to-end test files: the /api/v1 envelope, a forged (well-formed but never
// issued) token, and the end-of-file secret-leak scan over one worker's recorded responses and log.

import assert from 'node:assert/strict';

// ---------------------------------------------------------------- envelope

/** Check the envelope of a success (200, JSON {code: 0, data, message}) and return its data. */
export function ok(r, what = '') {
  assert.equal(r.status, 200, `${what} expected 200, got ${r.status}: ${r.text}`);
  assert.ok(r.json, `${what} body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.json).sort(), ['code', 'data', 'message'], `${what} envelope keys: ${r.text}`);
  assert.equal(r.json.code, 0, `${what} code: ${r.text}`);
  assert.equal(typeof r.json.message, 'string');
  assert.match(r.headers.get('content-type') || '', /^application\/json/);
  return r.json.data;
}

/** Check an error envelope: real HTTP status, {code, data: null, message}; returns the message. */
export function fails(r, status, code, what = '') {
  assert.equal(r.status, status, `${what} expected ${status}, got ${r.status}: ${r.text}`);
  assert.ok(r.json, `${what} body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.json).sort(), ['code', 'data', 'message'], `${what} envelope keys: ${r.text}`);
  assert.equal(r.json.code, code, `${what} code: ${r.text}`);
  assert.equal(r.json.data, null, `${what} data must be null: ${r.text}`);
  assert.equal(typeof r.json.message, 'string');
  assert.ok(r.json.message.length > 0, `${what} message must not be empty`);
  assert.match(r.headers.get('content-type') || '', /^application\/json/);
  return r.json.message;
}

// ---------------------------------------------------------------- forged tokens

/** CRC32 (IEEE) of a string's UTF-8 bytes, as the worker computes it for a secret's checksum. */
export function crc32(s) {
  let c = ~0;
  for (const b of Buffer.from(s)) {
    c ^= b;
    for (let i = 0; i < 8; i++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** The base62 alphabet of access keys and secrets. */
export const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `n` random base62 characters. */
export function randB62(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += B62[Math.floor(Math.random() * 62)];
  return s;
}

/** The 6-character checksum of a secret's random part: its CRC32 in base62 (src/domain/keys.rs). */
export function checksum(random) {
  let n = crc32(random);
  const out = [];
  for (let i = 0; i < 6; i++) {
    out.unshift(B62[n % 62]);
    n = Math.floor(n / 62);
  }
  return out.join('');
}

/** A well-formed token no server ever issued (right checksum), so it gets past parsing to the lookup. */
export function forgedToken() {
  const random = randB62(32);
  return `kwa_${randB62(16)}:kws_${random}${checksum(random)}`;
}

// ---------------------------------------------------------------- secret leaks

/** The routes whose responses may carry a newly issued user secret. */
const ISSUING_PATH = /\/api_key$|\/keys$|\/api_keys$|\/rotate$/;

/**
 * Every user secret a worker issued, found from its record of all responses (`w.responses`): each
 * JSON body whose `data` object carries `secret_key` or `token`, as {seq, path, secret, token}. Such a
 * response must be a 200 to a key-issuing route.
 */
export function issuedSecrets(w) {
  const issued = [];
  for (const resp of w.responses) {
    let d = null;
    try {
      d = JSON.parse(resp.text)?.data;
    } catch {
      continue; // not JSON
    }
    if (d && typeof d === 'object' && !Array.isArray(d) && (d.secret_key || d.token)) {
      assert.equal(resp.status, 200, `a secret in the ${resp.status} response #${resp.seq} to ${resp.path}`);
      assert.match(resp.path, ISSUING_PATH, `a secret in the response to ${resp.path}`);
      issued.push({ seq: resp.seq, path: resp.path, secret: d.secret_key, token: d.token });
    }
  }
  return issued;
}

/**
 * Every problem of the secret-leak scan over one worker `w` (call it at the end of a file, after the
 * last log lines arrived): each issued user secret (its token, its secret, or the secret's random part
 * alone) in a later response (`w.responsesAfter(seq)`), in the worker log (`w.output`) or in any of
 * `texts`; a provider credential (or its middle part) in any response, the log or `texts`; the admin
 * token in any response, the log or `texts`. Options: `label` prefixes each problem, `credentials`
 * are the provider keys handed to the worker, `texts` is {where: text} of other captured output
 * (e.g. a client script's). Returns {problems, issued} (issued as by `issuedSecrets`).
 */
export function leakProblems(w, { label = '', credentials = [], texts = {} } = {}) {
  const pre = label ? `${label}: ` : '';
  // A response is scanned whole: its header lines and its body.
  const seen = (resp) => `${resp.headers ?? ''}\n${resp.text}`;
  const logs = { 'the worker log': w.output, ...texts };
  const problems = [];
  const issued = issuedSecrets(w);
  for (const { seq, path, secret, token } of issued) {
    assert.match(secret, /^kws_[0-9A-Za-z]{38}$/, `${pre}issued secret shape (#${seq} ${path})`);
    const needles = [secret, token, secret.slice(4, 36)]; // the random part alone too
    for (const later of w.responsesAfter(seq)) {
      for (const n of needles) {
        if (seen(later).includes(n)) {
          problems.push(`${pre}secret from #${seq} ${path} in later response #${later.seq} ${later.method} ${later.path}`);
        }
      }
    }
    for (const [where, text] of Object.entries(logs)) {
      for (const n of needles) if (text.includes(n)) problems.push(`${pre}secret from #${seq} ${path} in ${where}`);
    }
  }
  // Provider credentials only ever travel in requests. A hint shows at most the ends: the middle counts.
  for (const c of credentials) {
    for (const needle of [c, c.slice(3, -4)]) {
      for (const resp of w.responses) {
        if (seen(resp).includes(needle)) {
          problems.push(`${pre}provider key ${c.slice(0, 8)}… in response #${resp.seq} ${resp.method} ${resp.path}`);
        }
      }
      for (const [where, text] of Object.entries(logs)) {
        if (text.includes(needle)) problems.push(`${pre}provider key ${c.slice(0, 8)}… in ${where}`);
      }
    }
  }
  // The admin token is a secret too: never in a response, never in the log.
  for (const resp of w.responses) {
    if (seen(resp).includes(w.adminToken)) problems.push(`${pre}admin token in response #${resp.seq} ${resp.path}`);
  }
  for (const [where, text] of Object.entries(logs)) {
    if (text.includes(w.adminToken)) problems.push(`${pre}admin token in ${where}`);
  }
  return { problems, issued };
}

// ---------------------------------------------------------------- the worker log is the worker's

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Problems with the claim that `w.output` is the worker's own log (so a leak scan over it means
 * something): for each of the last `last` requests recorded, the runtime's access line
 * (`[wrangler:info] METHOD PATH STATUS ...`) must be in it, and each regexp of `own` (lines the
 * worker's code writes, e.g. `[INFO] purge: ...`) must match. Wait a moment for late lines first.
 */
export function workerLogProblems(w, { last = 5, own = [] } = {}) {
  const problems = [];
  const requests = w.responses.filter((r) => !r.path.includes(' ')).slice(-last);
  if (requests.length === 0) problems.push('no request was recorded');
  for (const r of requests) {
    // The runtime logs the path without its query string.
    const path = r.path.split('?')[0];
    const re = new RegExp(`\\[wrangler:info\\] ${escapeRe(r.method)} ${escapeRe(path)} ${r.status} `);
    if (!re.test(w.output)) problems.push(`no access line for #${r.seq} ${r.method} ${path} ${r.status}`);
  }
  for (const re of own) if (!re.test(w.output)) problems.push(`no worker line matching ${re}`);
  return problems;
}
