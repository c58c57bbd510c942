// Signing in: wrong credentials show the API's own message, a throttled client is told when to try
// again (the real rate-limiting binding, production budget), and a key that stops working while
// signed in ends the session with the API's message.
import { expect, test } from '@playwright/test';
import { forgedToken } from '../../e2e/checks.mjs';
import { admin, checkPage, env, rawCall, signInUser, userWithKey, watch } from './support';

const stamp = Date.now().toString(36);

test('a wrong user key or admin token shows the API message and keeps no credential', async ({ page }) => {
  const w = watch(page);
  const forged: string = forgedToken();
  const expected = ((await rawCall('GET', '/api/v1/me', { token: forged })).json as { message: string })
    .message;
  await page.goto(`${env.base}/`);
  await page.getByLabel('API key', { exact: true }).fill(forged);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText(expected);
  await checkPage(page, 'signin-refused');

  await page.getByRole('tab', { name: 'Admin token' }).click();
  await page.getByLabel('Admin token').fill(`${env.admin}-wrong`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText(expected);
  expect(await page.evaluate(() => sessionStorage.length + localStorage.length)).toBe(0);
  expect(w.problems).toEqual([]);
});

test('a throttled client is told when to try again (429 with Retry-After)', async ({ browser }) => {
  // One client of its own (wrangler dev takes it from CF-Connecting-IP), so only it is blocked.
  const ip = '198.51.100.23';
  const context = await browser.newContext({ extraHTTPHeaders: { 'cf-connecting-ip': ip } });
  const page = await context.newPage();
  const w = watch(page);
  let status = 0;
  for (let i = 0; i < 40 && status !== 429; i++) {
    status = (
      await rawCall('GET', '/api/v1/me', { token: forgedToken(), headers: { 'cf-connecting-ip': ip } })
    ).status;
  }
  expect(status).toBe(429);
  await page.goto(`${env.base}/`);
  await page.getByLabel('API key', { exact: true }).fill(forgedToken());
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText(/retry after \d+ seconds/);
  await expect(alert).toContainText('try again at');
  await checkPage(page, 'signin-throttled');
  expect(w.problems).toEqual([]);
  await context.close();
});

test('a key revoked while signed in ends the session with the API message', async ({ page }) => {
  const w = watch(page);
  const { user, key } = await userWithKey(`revoked-${stamp}@example.com`);
  await signInUser(page, key.token);
  // The Account page's own requests (its keys, its limits) finish first: revoked while one is in
  // flight, that request would end the session before the click this test is about.
  await page.waitForLoadState('networkidle');
  await admin('DELETE', `/api/v1/admin/users/${encodeURIComponent(user.username)}/api_key/${key.id}`);
  await page.getByRole('link', { name: 'AI API keys' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in to keyward' })).toBeVisible();
  await expect(page.getByRole('alert')).toContainText('Signed out:');
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  expect(w.problems).toEqual([]);
});
