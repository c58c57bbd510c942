// Lists page through the API's pages, and the Account page codes against GET /api/v1/me/limits:
// when a deployment answers it, the create form offers nothing above the caller's maximum and
// names it; when it answers 404 (older deployments), the form shows no maximum and the API's own
// 400 names it.
import { expect, test } from '@playwright/test';
import { call, checkPage, env, signInUser, userWithKey, watch } from './support';

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

test('with /me/limits answered, the create form offers nothing above the maximum and names it', async ({
  page,
}) => {
  const w = watch(page);
  const { key } = await userWithKey(`limits-${Date.now().toString(36)}@example.com`);
  await page.route('**/api/v1/me/limits', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({
        code: 0,
        message: 'success',
        data: {
          max_ttl_minutes: 10080,
          admin_max_ttl_minutes: 129600,
          self_service_keys: true,
          max_keys_per_user: 5,
          active_keys: 1,
        },
      }),
    }),
  );
  await signInUser(page, key.token);
  await expect(page.getByTestId('limits')).toHaveText('1 of 5 keys in use; longest lifetime 7 days.');
  await page.getByRole('button', { name: 'Create API key' }).click();
  const d = page.getByRole('dialog', { name: 'Create API key' });
  const expiry = d.getByLabel('Expires after');
  await expect(expiry).toHaveValue('10080');
  await expect(expiry.locator('option')).toHaveText(['1 hour', '1 day', '7 days', 'Custom…']);
  await expect(d.getByText('At most 7 days, as the admin set it.')).toBeVisible();
  await expiry.selectOption('custom');
  await d.getByLabel('Custom lifetime').fill('8');
  await d.getByLabel('Unit').selectOption('days');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d.getByRole('alert')).toHaveText('The lifetime may be at most 7 days');
  await page.keyboard.press('Escape');
  expect(w.problems).toEqual([]);
});

test('with self-service keys off in /me/limits, no Create button is offered', async ({ page }) => {
  const { key } = await userWithKey(`noself-${Date.now().toString(36)}@example.com`);
  await page.route('**/api/v1/me/limits', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({
        code: 0,
        message: 'success',
        data: {
          max_ttl_minutes: null,
          admin_max_ttl_minutes: 0,
          self_service_keys: false,
          max_keys_per_user: 0,
          active_keys: 1,
        },
      }),
    }),
  );
  await signInUser(page, key.token);
  await expect(page.getByTestId('limits')).toContainText('longest lifetime unlimited');
  await expect(page.getByRole('button', { name: 'Create API key' })).toHaveCount(0);
});

test('without /me/limits (404), the form shows no maximum and the API names it when exceeded', async ({
  page,
}) => {
  const w = watch(page);
  const { key } = await userWithKey(`nolimits-${Date.now().toString(36)}@example.com`);
  await page.route('**/api/v1/me/limits', (route) =>
    route.fulfill({
      status: 404,
      contentType: 'application/json',
      body: '{"code":404,"data":null,"message":"not found"}',
    }),
  );
  await signInUser(page, key.token);
  await expect(page.getByTestId('limits')).toHaveCount(0);
  await page.getByRole('button', { name: 'Create API key' }).click();
  const d = page.getByRole('dialog', { name: 'Create API key' });
  await expect(d.getByText(/as the admin set it/)).toHaveCount(0);
  await d.getByLabel('Expires after').selectOption('custom');
  await d.getByLabel('Custom lifetime').fill('1000');
  await d.getByLabel('Unit').selectOption('days');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d.getByRole('alert')).toContainText('129600');
  expect(w.problems).toEqual([]);
});
