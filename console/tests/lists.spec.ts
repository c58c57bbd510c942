// Lists page through the API's pages: gateway keys by page/page_size, every other list by the
// cursor the API names in X-Next-Cursor, over more than one page of real rows, with nothing
// skipped or shown twice forwards or back. The Account page reads the real GET /api/v1/me/limits,
// and the settings page shows and saves the settings behind it.
import { expect, type Page, test } from '@playwright/test';
import { admin, call, checkPage, env, rawCall, signInAdmin, signInUser, userWithKey, watch } from './support';

interface Settings {
  auth_token_max_ttl_minutes: number;
  self_service_keys: boolean;
  max_keys_per_user: number;
  max_ai_keys_per_tenant: number;
  max_connections_per_tenant: number;
}

/** Every row of a cursor-paged API list, following X-Next-Cursor (as the test's own oracle). */
async function everyRow<T>(path: string): Promise<T[]> {
  const all: T[] = [];
  let cursor = '';
  for (let guard = 0; guard < 100; guard++) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await rawCall('GET', `${path}${sep}limit=1000${cursor ? `&cursor=${cursor}` : ''}`, {
      token: env.admin,
    });
    expect(r.status).toBe(200);
    all.push(...(r.json as { data: T[] }).data);
    cursor = r.headers.get('x-next-cursor') ?? '';
    if (!cursor) return all;
  }
  throw new Error(`${path} did not end`);
}

/**
 * Walk a paged table forwards with "Next page" and back with "Previous page", reading `cell` of
 * every row on each page; returns the pages as read going forwards (after checking the way back
 * shows the very same pages).
 */
async function walkPages(page: Page, testId: string, cell: string): Promise<string[][]> {
  const rows = page.getByTestId(testId);
  const pager = page.getByRole('navigation', { name: 'List pages' });
  const next = pager.getByRole('button', { name: 'Next page' });
  const previous = pager.getByRole('button', { name: 'Previous page' });
  const settled = async (n: number) => {
    await expect(pager).toContainText(`Page ${n}`);
    await expect(page.locator('[aria-busy="true"]')).toHaveCount(0);
    return rows.locator(cell).allTextContents();
  };
  const pages: string[][] = [await settled(1)];
  while (await next.isEnabled()) {
    await next.click();
    pages.push(await settled(pages.length + 1));
  }
  for (let n = pages.length - 1; n >= 1; n--) {
    await previous.click();
    expect(await settled(n), `page ${n} again, going back`).toEqual(pages[n - 1]);
  }
  await expect(previous).toBeDisabled();
  return pages;
}

test('the AI API keys table pages through the API (page and page_size), with search on every page', async ({
  page,
}) => {
  const w = watch(page);
  const { key } = await userWithKey(`pager-${Date.now().toString(36)}@example.com`);
  await call('POST', '/api/v1/models', {
    token: key.token,
    body: { llm_factory: 'Ollama', llm_name: 'llama3.2', base_url: env.standin, model_type: 'chat' },
  });
  for (let i = 1; i <= 13; i++) {
    await call('POST', '/api/v1/ai_keys', {
      token: key.token,
      body: {
        alias: `pk-${String(i).padStart(2, '0')}`,
        provider: 'Ollama',
        model: 'llama3.2',
        api_key: 'k-0123456789ab',
        input_limit: 0,
      },
    });
  }
  const asked: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/v1/ai_keys?')) asked.push(new URL(r.url()).search);
  });
  await signInUser(page, key.token);
  await page.getByRole('link', { name: 'AI API keys' }).click();
  const rows = page.getByTestId('aikey-row');
  await expect(rows).toHaveCount(10);
  const pager = page.getByRole('navigation', { name: 'Pages' }).last();
  await expect(pager).toContainText('Page 1 of 2');
  await expect(pager).toContainText('13 items');
  await pager.getByRole('button', { name: 'Next' }).click();
  await expect(rows).toHaveCount(3);
  await expect(pager).toContainText('Page 2 of 2');
  expect(asked.some((q) => q.includes('page=2') && q.includes('page_size=10'))).toBe(true);
  // A new search starts again at page 1.
  await page.getByLabel('Search').fill('pk-1');
  await expect(rows).toHaveCount(4);
  await checkPage(page, 'aikeys-paged');
  expect(w.problems).toEqual([]);
});

test('the users and the audit log page through the API by cursor: every row once, forwards and back', async ({
  page,
}) => {
  test.setTimeout(120_000);
  const w = watch(page);
  const stamp = Date.now().toString(36);
  const tenant = await admin<{ id: string }>('POST', '/api/v1/admin/tenants', { name: `pages-${stamp}` });
  const mine: string[] = [];
  for (let i = 0; i < 130; i += 10) {
    const batch = Array.from(
      { length: 10 },
      (_, j) => `page-${stamp}-${String(i + j).padStart(3, '0')}@example.com`,
    );
    mine.push(...batch);
    await Promise.all(
      batch.map((username) =>
        admin('POST', '/api/v1/admin/users', { username, tenant_id: tenant.id, role: 'member' }),
      ),
    );
  }
  const asked: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/api/v1/admin/users' || u.pathname === '/api/v1/admin/audit') asked.push(u.search);
  });

  const users = (await everyRow<{ username: string }>('/api/v1/admin/users')).map((u) => u.username);
  expect(users.length).toBeGreaterThan(130);
  await signInAdmin(page);
  await page.getByRole('link', { name: 'Users' }).click();
  const userPages = await walkPages(page, 'user-row', 'td:first-child');
  expect(userPages.length).toBe(Math.ceil(users.length / 50));
  for (const p of userPages.slice(0, -1)) expect(p.length).toBe(50);
  // In the API's order, each user once: none skipped, none twice.
  expect(userPages.flat()).toEqual(users);
  for (const u of mine) expect(userPages.flat()).toContain(u);
  expect(asked.some((q) => q.includes('limit=50') && q.includes('cursor='))).toBe(true);

  // The audit log of that tenant: its creation and 130 user creations, newest first, by the API's filter.
  const entries = (
    await everyRow<{ id: number; target: string }>(`/api/v1/admin/audit?tenant_id=${tenant.id}`)
  ).map((a) => a.target);
  expect(entries.length).toBe(131);
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByLabel('Tenant').selectOption(tenant.id);
  await expect(page.getByTestId('audit-row')).toHaveCount(50);
  const auditPages = await walkPages(page, 'audit-row', 'td:nth-child(4)');
  expect(auditPages.map((p) => p.length)).toEqual([50, 50, 31]);
  expect(auditPages.flat()).toEqual(entries);
  expect(new Set(auditPages.flat()).size).toBe(131);
  expect(asked.some((q) => q.includes(`tenant_id=${tenant.id}`) && q.includes('cursor='))).toBe(true);
  await checkPage(page, 'admin-audit-paged');
  expect(w.problems).toEqual([]);
});

test("a user's own keys page through the API by cursor, past the default keys per user", async ({ page }) => {
  test.setTimeout(120_000);
  const w = watch(page);
  const before = await admin<Settings>('GET', '/api/v1/admin/settings');
  const username = `manykeys-${Date.now().toString(36)}@example.com`;
  const { key } = await userWithKey(username);
  await admin('PUT', '/api/v1/admin/settings', { max_keys_per_user: 80 });
  try {
    for (let i = 0; i < 60; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, (_, j) =>
          admin('POST', `/api/v1/admin/users/${encodeURIComponent(username)}/api_key`, {
            description: `many ${String(i + j).padStart(2, '0')}`,
            ttl_minutes: 60,
          }),
        ),
      );
    }
    const keys = (
      await everyRow<{ access_key: string }>(`/api/v1/admin/users/${encodeURIComponent(username)}/api_key`)
    ).map((k) => k.access_key);
    expect(keys.length).toBe(61);

    await signInUser(page, key.token);
    await expect(page.getByTestId('limits')).toContainText('61 of 80 keys in use');
    const mine = await walkPages(page, 'key-row', 'td:nth-child(2) code');
    expect(mine.map((p) => p.length)).toEqual([50, 11]);
    expect(mine.flat()).toEqual(keys);

    // The admin's view of the same user's keys pages the same way.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signInAdmin(page);
    await page.goto(`${env.base}/admin/users/${encodeURIComponent(username)}`);
    await expect(page.getByRole('heading', { name: username })).toBeVisible();
    const theirs = await walkPages(page, 'key-row', 'td:nth-child(2) code');
    expect(theirs.flat()).toEqual(keys);
  } finally {
    await admin('PUT', '/api/v1/admin/settings', { max_keys_per_user: before.max_keys_per_user });
  }
  expect(w.problems).toEqual([]);
});

test('the Account page bounds the presets by the real /me/limits: a key cannot make one that outlives it', async ({
  page,
}) => {
  const w = watch(page);
  const settings = await admin<Settings>('GET', '/api/v1/admin/settings');
  const username = `limits-${Date.now().toString(36)}@example.com`;
  await admin('POST', '/api/v1/admin/users', { username });
  // Two hours left on the signed-in key: that, not the admin's 90 days, bounds what it may create.
  const key = await admin<{ token: string }>(
    'POST',
    `/api/v1/admin/users/${encodeURIComponent(username)}/api_key`,
    { description: 'short', ttl_minutes: 120 },
  );
  await signInUser(page, key.token);
  const limits = page.getByTestId('limits');
  await expect(limits).toHaveText(
    new RegExp(
      `^1 of ${settings.max_keys_per_user} keys in use; longest lifetime (1 hour 59 minutes|2 hours)\\.$`,
    ),
  );
  await page.getByRole('button', { name: 'Create API key' }).click();
  const d = page.getByRole('dialog', { name: 'Create API key' });
  const expiry = d.getByLabel('Expires after');
  await expect(expiry.locator('option')).toHaveText([
    '1 hour',
    /^(1 hour 59 minutes|2 hours) \(the maximum\)$/,
    'Custom…',
  ]);
  await expect(
    d.getByText(/^At most (1 hour 59 minutes|2 hours): the key you signed in with expires then/),
  ).toBeVisible();
  await expiry.selectOption('custom');
  await d.getByLabel('Custom lifetime').fill('3');
  await d.getByLabel('Unit').selectOption('hours');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d.getByRole('alert')).toHaveText(/^The lifetime may be at most (1 hour 59 minutes|2 hours)$/);
  // A preset within the bound is created, and the count follows.
  await expiry.selectOption({ label: '1 hour' });
  await d.getByLabel('Description').fill('within the bound');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('button', { name: 'I have copied it' }).click();
  await expect(limits).toContainText(`2 of ${settings.max_keys_per_user} keys in use`);
  await expect(page.getByTestId('key-row')).toHaveCount(2);
  expect(w.problems).toEqual([]);
});

test('with self-service keys turned off in the settings, the Account page offers no Create', async ({
  page,
}) => {
  const w = watch(page);
  const { key } = await userWithKey(`noself-${Date.now().toString(36)}@example.com`);
  await admin('PUT', '/api/v1/admin/settings', { self_service_keys: false });
  try {
    await signInUser(page, key.token);
    await expect(page.getByTestId('limits')).toContainText('Creating keys for yourself is turned off');
    await expect(page.getByTestId('key-row')).toHaveCount(1);
    await expect(page.getByRole('button', { name: 'Create API key' })).toHaveCount(0);
    // The API agrees: the page hides what it would refuse.
    const r = await rawCall('POST', '/api/v1/api_keys', { token: key.token, body: { description: 'x' } });
    expect(r.status).toBe(403);
  } finally {
    await admin('PUT', '/api/v1/admin/settings', { self_service_keys: true });
  }
  expect(w.problems).toEqual([]);
});

test('the settings page shows and saves the key lifetime, self-service keys, keys per user and the tenant maximums', async ({
  page,
}) => {
  const w = watch(page);
  const before = await admin<Settings>('GET', '/api/v1/admin/settings');
  try {
    await signInAdmin(page);
    await page.getByRole('link', { name: 'Key settings' }).click();
    await expect(page.getByTestId('current-max')).toHaveText('90 days');
    await expect(page.getByTestId('current-self-service')).toHaveText('yes');
    await expect(page.getByTestId('current-max-keys')).toHaveText(
      `at most ${before.max_keys_per_user} unexpired`,
    );
    await expect(page.getByLabel('Most keys per user')).toHaveValue(String(before.max_keys_per_user));
    await page.getByLabel('Maximum lifetime (minutes)').fill('10080');
    await page.getByLabel('Users create their own keys').selectOption('false');
    await page.getByLabel('Most keys per user').fill('7');
    await expect(page.getByLabel('Most gateway keys per tenant')).toHaveValue(
      String(before.max_ai_keys_per_tenant),
    );
    await page.getByLabel('Most gateway keys per tenant').fill('300');
    await page.getByLabel('Most provider connections per tenant').fill('40');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByTestId('current-max')).toHaveText('7 days');
    await expect(page.getByTestId('current-self-service')).toHaveText('no');
    await expect(page.getByTestId('current-max-keys')).toHaveText('at most 7 unexpired');
    await expect(page.getByTestId('current-tenant-maximums')).toHaveText(
      'at most 300 gateway keys and 40 provider connections',
    );
    expect(await admin<Settings>('GET', '/api/v1/admin/settings')).toEqual({
      auth_token_max_ttl_minutes: 10080,
      self_service_keys: false,
      max_keys_per_user: 7,
      max_ai_keys_per_tenant: 300,
      max_connections_per_tenant: 40,
    });
    await checkPage(page, 'admin-settings-saved');
  } finally {
    await admin('PUT', '/api/v1/admin/settings', before);
  }
  expect(w.problems).toEqual([]);
});
