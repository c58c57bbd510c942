// How the Worker serves the console: static assets on the same origin with the security headers,
// the single-page-application fallback (with the same headers) for every console path, and the
// API, the relay, /health and /openapi.json still answered by the Rust worker first.
import { expect, test } from '@playwright/test';
import { env, rawCall, watch } from './support';

const SECURITY = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function expectSecurityHeaders(h: Record<string, string>, what: string) {
  const csp = h['content-security-policy'] ?? '';
  expect(csp, `${what}: CSP`).toContain("script-src 'self'");
  expect(csp, `${what}: CSP`).toContain("connect-src 'self'");
  expect(csp, `${what}: CSP`).toContain("frame-ancestors 'none'");
  expect(csp, `${what}: CSP`).toContain("default-src 'none'");
  expect(csp, `${what}: no unsafe-*`).not.toMatch(/unsafe-(eval|inline)/);
  for (const [k, v] of Object.entries(SECURITY)) expect(h[k], `${what}: ${k}`).toBe(v);
}

test('every console page, the fallback for any path included, carries the security headers', async ({
  page,
}) => {
  const w = watch(page);
  for (const path of ['/', '/account', '/models', '/admin/users/someone', '/no/such/page']) {
    const r = await page.goto(env.base + path);
    if (!r) throw new Error(`no response for ${path}`);
    expect(r.status(), path).toBe(200);
    expect(await r.headerValue('content-type'), path).toMatch(/^text\/html/);
    expectSecurityHeaders(await r.allHeaders(), path);
    await expect(page.getByRole('heading', { name: 'Sign in to keyward' })).toBeVisible();
  }
  // The hashed script and style the page loads carry them too.
  const assets: string[] = await page.evaluate(() =>
    [...document.querySelectorAll('script[src], link[rel="stylesheet"]')].map(
      (e) => (e as HTMLScriptElement).src || (e as HTMLLinkElement).href,
    ),
  );
  expect(assets.length).toBeGreaterThanOrEqual(2);
  for (const a of assets) {
    const r = await page.request.get(a);
    expect(r.status(), a).toBe(200);
    expectSecurityHeaders(r.headers(), a);
  }
  expect(w.problems).toEqual([]);
});

test('the API, the relay, /health and /openapi.json still reach the worker, not the fallback', async () => {
  const health = await rawCall('GET', '/health');
  expect(health.status).toBe(200);
  expect(health.json).toMatchObject({ status: 'ok' });
  const doc = await rawCall('GET', '/openapi.json');
  expect(doc.status).toBe(200);
  expect((doc.json as { openapi: string }).openapi).toMatch(/^3\.1/);
  const me = await rawCall('GET', '/api/v1/me', {
    headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' },
  });
  expect(me.status).toBe(401);
  expect(me.json).toMatchObject({ code: 109, data: null });
  const unknown = await rawCall('GET', '/api/v1/no-such-route', {
    headers: { 'sec-fetch-mode': 'navigate' },
  });
  expect(unknown.status).toBe(404);
  expect(unknown.json).toMatchObject({ data: null });
  const relay = await rawCall('GET', '/v1/models', { headers: { 'sec-fetch-mode': 'navigate' } });
  expect(relay.status).toBe(401);
  expect(relay.json).toHaveProperty('error');
  // wrangler dev's cron trigger, not the console's fallback page.
  const cron = await rawCall('GET', '/__scheduled?cron=*/15+*+*+*+*', {
    headers: { 'sec-fetch-mode': 'navigate' },
  });
  expect(cron.status).toBe(200);
  expect(cron.text).not.toContain('<html');
});
