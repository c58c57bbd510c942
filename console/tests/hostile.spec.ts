// Hostile data renders as text: markup in a tenant name, a key description and a model name shows
// literally on every page that displays it and runs nothing (no dialog, no script error, no
// element made from it).
import { expect, type Page, test } from '@playwright/test';
import { admin, call, checkPage, env, signInAdmin, signInUser, watch } from './support';

const IMG = `<img src=x onerror="alert('img')">`;
const SCRIPT = `<script>alert('script')</script>`;
const SVG = `"><svg onload=alert('svg')>`;

async function nothingInjected(page: Page) {
  expect(await page.locator('img[src="x"], svg[onload], img[onerror]').count()).toBe(0);
  expect(await page.evaluate(() => [...document.scripts].filter((s) => !s.src).length)).toBe(0);
}

test('markup in names, descriptions and model names shows as text and runs nothing', async ({ page }) => {
  const w = watch(page);
  const stamp = Date.now().toString(36);
  const tenant = await admin<{ id: string }>('POST', '/api/v1/admin/tenants', { name: `${IMG} ${stamp}` });
  const username = `hostile-${stamp}@example.com`;
  await admin('POST', '/api/v1/admin/users', { username, tenant_id: tenant.id, role: 'owner' });
  const key = await admin<{ token: string }>(
    'POST',
    `/api/v1/admin/users/${encodeURIComponent(username)}/api_key`,
    {
      description: SCRIPT,
      ttl_minutes: 60,
    },
  );
  await call('POST', '/api/v1/models', {
    token: key.token,
    body: { llm_factory: 'Ollama', llm_name: SVG, base_url: env.standin, model_type: 'chat' },
  });

  await signInAdmin(page);
  await expect(page.getByText(`${IMG} ${stamp}`, { exact: true })).toBeVisible();
  await nothingInjected(page);
  await checkPage(page, 'hostile-tenants');
  await page.getByRole('link', { name: 'Audit log' }).click();
  await expect(page.getByTestId('audit-row').first()).toBeVisible();
  await nothingInjected(page);
  await page.getByRole('button', { name: 'Sign out' }).click();

  await signInUser(page, key.token);
  await expect(page.getByTestId('key-row').getByText(SCRIPT, { exact: true })).toBeVisible();
  await nothingInjected(page);
  await page.getByRole('link', { name: 'Model Providers' }).click();
  await expect(page.getByTestId('model-row').getByText(SVG, { exact: true })).toBeVisible();
  await nothingInjected(page);
  await checkPage(page, 'hostile-models');
  await page.getByRole('link', { name: 'Default models' }).click();
  await expect(page.getByLabel('Chat', { exact: true }).locator('option', { hasText: SVG })).toHaveCount(1);
  await nothingInjected(page);
  expect(w.problems).toEqual([]);
});

test('a user named admin shows in the audit log as a user, never as the admin token', async ({ page }) => {
  const w = watch(page);
  // Usernames are unique without regard to case: one run makes `admin` once.
  const user = await admin<{ tenant_id: string }>('POST', '/api/v1/admin/users', { username: 'admin' });
  const issued = await admin<{ token: string; access_key: string }>(
    'POST',
    '/api/v1/admin/users/admin/api_key',
    { description: 'issued by the admin token', ttl_minutes: 60 },
  );
  // The user `admin` acts with their own key.
  const own = await call<{ access_key: string }>('POST', '/api/v1/api_keys', {
    token: issued.token,
    body: { description: 'made by the user admin', ttl_minutes: 30 },
  });

  await signInAdmin(page);
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByLabel('Tenant').selectOption(user.tenant_id);
  const rows = page.getByTestId('audit-row');
  // Only that tenant's: its creation, the user's, and the two keys.
  await expect(rows).toHaveCount(4);
  const byUser = rows.filter({ hasText: own.access_key });
  const byToken = rows.filter({ hasText: issued.access_key });
  await expect(byUser.getByTestId('audit-actor')).toHaveText('user admin');
  await expect(byToken.getByTestId('audit-actor')).toHaveText('admin token');
  await expect(rows.filter({ hasText: 'user.create' }).getByTestId('audit-actor')).toHaveText('admin token');
  await expect(byUser.locator('.actor-admin')).toHaveCount(0);
  await checkPage(page, 'admin-audit-actors');
  expect(w.problems).toEqual([]);
});
