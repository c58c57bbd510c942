// The walk a newcomer takes, end to end in the browser against the real worker and the provider
// stand-in: the admin creates a user and issues a key; the user signs in with it, creates a second
// key and reads it once, rotates and deletes keys; connects a provider through "Add the model"
// (a refused key first, with the provider's reason); sets and clears default models; creates,
// searches, updates, views and deletes an AI API key; a relay call made with the user's key shows in
// that key's usage counters. The steps share one page and run in order.
import { type BrowserContext, expect, type Page, test } from '@playwright/test';
import {
  admin,
  call,
  checkPage,
  env,
  expectNoSecrets,
  rawCall,
  signInAdmin,
  signOut,
  watch,
} from './support';

test.describe.configure({ mode: 'serial' });

const USER = `walker-${Date.now().toString(36)}@example.com`;
const COMPAT = 'OpenAI-API-Compatible';
// examples/provider_standin/server.rs FAILING_KEY: every call with it is a 500.
const FAILING_KEY = 'sk-standin-500-0123456789';
const CHAT = 'standin-chat';
const BAD_KEY = 'sk-refused-by-the-stand-in-000';

let context: BrowserContext;
let page: Page;
let watched: { problems: string[] };
// Every secret the walk sees, to check none is left behind after its one showing.
const secrets: string[] = [];
let firstToken = '';
let currentToken = '';

test.beforeAll(async ({ browser }) => {
  context = await browser.newContext();
  page = await context.newPage();
  watched = watch(page);
});

test.afterAll(async () => {
  await context?.close();
});

test.afterEach(async () => {
  expect(watched.problems, 'dialogs, script errors, CSP reports or foreign requests').toEqual([]);
});

/** The secret dialog shown once: read its values, check the warning, close it, check it is gone. */
async function readShownOnce(): Promise<{ token: string; access: string; secret: string }> {
  const d = page.getByTestId('show-once');
  await expect(d).toBeVisible();
  await expect(d.getByRole('alert')).toContainText('will not be shown again');
  await expect(d.getByRole('button', { name: 'Copy the bearer token' })).toBeVisible();
  await expect(d.getByRole('button', { name: 'Copy the access key' })).toBeVisible();
  await expect(d.getByRole('button', { name: 'Copy the secret key' })).toBeVisible();
  const token = (await d.getByTestId('new-token').textContent()) ?? '';
  const access = (await d.getByTestId('new-access-key').textContent()) ?? '';
  const secret = (await d.getByTestId('new-secret-key').textContent()) ?? '';
  expect(token).toBe(`${access}:${secret}`);
  expect(token).toMatch(/^kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38}$/);
  await d.getByRole('button', { name: 'I have copied it' }).click();
  await expect(d).toHaveCount(0);
  secrets.push(secret, token);
  return { token, access, secret };
}

test('the admin signs in with the admin token, creates a user and issues a key shown once', async () => {
  await signInAdmin(page);
  await checkPage(page, 'admin-tenants');

  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('button', { name: 'Create user' }).click();
  const d = page.getByRole('dialog', { name: 'Create user' });
  await d.getByLabel('Username').fill(USER);
  await expect(d.getByLabel('Tenant')).toHaveValue(''); // a new tenant of their own
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d).toHaveCount(0);
  // Straight to the new user's page (the list, oldest first, would have them on its last page).
  await expect(page.getByRole('heading', { name: USER })).toBeVisible();
  await expect(page.getByLabel(`Role of ${USER}`)).toHaveValue('owner');
  await page.getByRole('link', { name: '← Users' }).click();
  await expect(page.getByTestId('user-row').first()).toBeVisible();
  await checkPage(page, 'admin-users');
  // And back to them by name.
  await page.getByLabel('Open a user').fill(USER);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await expect(page.getByRole('heading', { name: USER })).toBeVisible();
  await page.getByRole('button', { name: 'Issue key' }).click();
  const issue = page.getByRole('dialog', { name: `Issue a key for ${USER}` });
  await issue.getByLabel('Description').fill('first key');
  await issue.getByLabel('Lifetime (TTL)').selectOption({ label: '30 days' });
  await issue.getByRole('button', { name: 'Issue' }).click();
  const shown = await readShownOnce();
  firstToken = shown.token;
  currentToken = shown.token;
  await expect(page.getByTestId('key-row').filter({ hasText: shown.access })).toContainText('first key');
  await expectNoSecrets(page, context, secrets);
  await checkPage(page, 'admin-user');
  // The key works.
  const me = await call<{ username: string }>('GET', '/api/v1/me', { token: shown.token });
  expect(me.username).toBe(USER);
});

test('the admin pages: key settings and the audit log, filtered and paged', async () => {
  await page.getByRole('link', { name: 'Key settings' }).click();
  await expect(page.getByTestId('current-max')).toContainText('90 days');
  await checkPage(page, 'admin-settings');
  await page.getByRole('link', { name: 'Audit log' }).click();
  const rows = page.getByTestId('audit-row');
  await expect(rows.filter({ hasText: 'user.create' }).filter({ hasText: USER })).toHaveCount(1);
  await checkPage(page, 'admin-audit');
  // Filter by the walker's tenant: only its entries.
  const tenant = (
    await admin<{ tenant_id: string }>('GET', `/api/v1/admin/users/${encodeURIComponent(USER)}`)
  ).tenant_id;
  await page.getByLabel('Tenant').selectOption(tenant);
  await expect(rows.first()).toBeVisible();
  await expect(rows.filter({ hasText: 'tenant.create' })).toHaveCount(1);
  for (const t of await rows.allTextContents())
    expect(t).toMatch(new RegExp(`${USER.replace(/[.@-]/g, '\\$&')}|${tenant}`));
  await signOut(page);
});

test('the user signs in with access key and secret key, and sees who they are and the endpoints', async () => {
  const [access, secret] = firstToken.split(':') as [string, string];
  await page.getByRole('tab', { name: 'Access key + secret key' }).click();
  await page.getByLabel('Access key').fill(access);
  await page.getByLabel('Secret key').fill(secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Account & API Keys' })).toBeVisible();
  const me = page.getByTestId('me');
  await expect(me).toContainText(USER);
  await expect(me).toContainText('owner');
  await expect(page.getByText(`${env.base}/api/v1`, { exact: true })).toBeVisible();
  await expect(page.getByText(`${env.base}/v1`, { exact: true })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Copy the relay endpoint' })).toBeVisible();
  await expect(page.getByTestId('key-row')).toHaveCount(1);
  await expectNoSecrets(page, context, [secret]);
  await checkPage(page, 'account');
});

test('the user creates a second key, reads it once, rotates it and deletes it', async () => {
  await page.getByRole('button', { name: 'Create API key' }).click();
  const d = page.getByRole('dialog', { name: 'Create API key' });
  await d.getByLabel('Description').fill('laptop');
  await d.getByLabel('Expires after').selectOption({ label: '7 days' });
  await checkPage(page, 'account-create-key');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  const second = await readShownOnce();
  const row = page.getByTestId('key-row').filter({ hasText: 'laptop' });
  await expect(row).toContainText(second.access);
  await expect(row).toContainText(`kws_...${second.secret.slice(-4)}`);
  await expectNoSecrets(page, context, secrets);
  expect((await rawCall('GET', '/api/v1/me', { token: second.token })).status).toBe(200);

  // Rotate with no grace: the old secret stops at once, the new one works.
  await row.getByRole('button', { name: 'Rotate' }).click();
  const r = page.getByRole('dialog', { name: 'Rotate API key' });
  await r.getByLabel('Grace period (minutes)').fill('0');
  await r.getByRole('button', { name: 'Rotate' }).click();
  const rotated = await readShownOnce();
  expect(rotated.access).toBe(second.access);
  expect(rotated.secret).not.toBe(second.secret);
  expect((await rawCall('GET', '/api/v1/me', { token: second.token })).status).toBe(401);
  expect((await rawCall('GET', '/api/v1/me', { token: rotated.token })).status).toBe(200);
  await expectNoSecrets(page, context, secrets);

  // Delete after confirmation; Cancel first changes nothing.
  await row.getByRole('button', { name: `Delete key ${second.access}` }).click();
  const confirm = page.getByTestId('confirm');
  await expect(confirm).toContainText(second.access);
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await expect(row).toHaveCount(1);
  await row.getByRole('button', { name: `Delete key ${second.access}` }).click();
  await confirm.getByRole('button', { name: 'Delete' }).click();
  await expect(row).toHaveCount(0);
  expect((await rawCall('GET', '/api/v1/me', { token: rotated.token })).status).toBe(401);
});

test('rotating the key of the session keeps the user signed in with its new secret', async () => {
  const row = page.getByTestId('key-row').filter({ hasText: 'this session' });
  await row.getByRole('button', { name: 'Rotate' }).click();
  const r = page.getByRole('dialog', { name: 'Rotate API key' });
  await r.getByLabel('Grace period (minutes)').fill('0');
  await r.getByRole('button', { name: 'Rotate' }).click();
  const rotated = await readShownOnce();
  currentToken = rotated.token;
  expect((await rawCall('GET', '/api/v1/me', { token: firstToken })).status).toBe(401);
  // The page goes on working: a reload of the list uses the new secret.
  await page.getByRole('link', { name: 'Model Providers' }).click();
  await expect(page.getByRole('heading', { name: 'Added models' })).toBeVisible();
  await page.getByRole('link', { name: 'Account & API Keys' }).click();
  await expect(page.getByTestId('key-row')).toHaveCount(1);
  await expectNoSecrets(
    page,
    context,
    secrets.filter((s) => !currentToken.includes(s) && s !== currentToken),
  );
});

test('the user connects a provider through "Add the model": a refused key shows the reason, a good one is saved', async () => {
  await page.getByRole('link', { name: 'Model Providers' }).click();
  await expect(page.getByRole('heading', { name: 'Models to be added' })).toBeVisible();
  // Search and the tag filter narrow the catalog.
  await page.getByLabel('Search').fill('compatible');
  const catalog = page.getByTestId('catalog-factory');
  await expect(catalog).toHaveCount(1);
  await page.getByLabel('Search').fill('');
  await page.getByLabel('Tag').selectOption('TEXT RE-RANK');
  for (const t of await catalog.allTextContents()) expect(t).toContain('TEXT RE-RANK');
  await page.getByLabel('Tag').selectOption('');
  await checkPage(page, 'models');

  await catalog
    .filter({ has: page.getByRole('heading', { name: COMPAT, exact: true }) })
    .getByRole('button', { name: 'Add the model' })
    .click();
  const d = page.getByTestId('add-model');
  await d.getByLabel('Model name').fill(CHAT);
  await d.getByLabel('Endpoint URL').fill(`${env.standin}/v1`);
  await d.getByLabel('API key (optional)').fill(BAD_KEY);
  await d.getByLabel('Model type').selectOption('chat');
  await checkPage(page, 'models-add');
  await d.getByRole('button', { name: 'OK' }).click();
  const err = d.getByRole('alert');
  await expect(err).toContainText('Fail to access model');
  await expect(err).toContainText('Incorrect API key provided');
  await expect(err).not.toContainText(BAD_KEY);

  await d.getByLabel('API key (optional)').fill(env.goodKey);
  await d.getByRole('button', { name: 'OK' }).click();
  await expect(d).toHaveCount(0);
  const card = page.getByTestId('added-factory').filter({ has: page.getByRole('heading', { name: COMPAT }) });
  const model = card.getByTestId('model-row').filter({ hasText: CHAT });
  await expect(model).toContainText('Chat');
  // The masked hint, never the key: at most a quarter of its 26 characters.
  await expect(model).toContainText('sk...6789');
  await expectNoSecrets(page, context, [env.goodKey, BAD_KEY]);
  await checkPage(page, 'models-added');
});

test('the user sets and clears default models, all six at once', async () => {
  await page.getByRole('link', { name: 'Default models' }).click();
  const chat = page.getByLabel('Chat', { exact: true });
  await expect(chat.locator('option')).toContainText(['None', `${CHAT}@${COMPAT}`]);
  await chat.selectOption(`${CHAT}@${COMPAT}`);
  await checkPage(page, 'defaults');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toContainText('Default models saved');
  const set = await call<Record<string, string | null>>('GET', '/api/v1/models/default', {
    token: currentToken,
  });
  expect(set.llm_id).toBe(`${CHAT}@${COMPAT}`);

  await chat.selectOption('');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect
    .poll(
      async () =>
        (await call<Record<string, string | null>>('GET', '/api/v1/models/default', { token: currentToken }))
          .llm_id,
    )
    .toBeNull();
  await expect(chat).toHaveValue('');
});

test('the user creates, searches, updates, views and deletes an AI API key, and sees a relay call in its usage', async () => {
  await page.getByRole('link', { name: 'AI API keys' }).click();
  await expect(page.getByText('No gateway keys match.')).toBeVisible();
  const create = async (alias: string, status: 'Enabled' | 'Disabled') => {
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    const d = page.getByTestId('aikey-form');
    await d.getByLabel('Alias').fill(alias);
    await expect(d.getByLabel('Status')).toHaveValue('disabled'); // the default
    await d.getByLabel('Status').selectOption({ label: status });
    await expect(d.getByLabel('Provider')).toHaveValue(COMPAT);
    await expect(d.getByLabel('Model')).toHaveValue(CHAT);
    if (alias === 'walk-chat') {
      // A pool: a key the stand-in always fails with 500 first, the good key as its fallback.
      await d.getByLabel('API key', { exact: true }).fill(FAILING_KEY);
      await d.getByRole('button', { name: 'Add a fallback key' }).click();
      await d.getByLabel('Fallback key 2').fill(env.goodKey);
    } else {
      await d.getByLabel('API key', { exact: true }).fill(env.goodKey);
    }
    await expect(d.getByLabel('Usage limit policy')).toHaveValue('reject');
    if (alias === 'walk-chat') await checkPage(page, 'aikeys-create');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    return d;
  };
  // Input limit is required: the form says so.
  let d = await create('walk-chat', 'Enabled');
  await expect(d.getByLabel('Input limit')).toBeFocused(); // the browser's own required check
  await d.getByLabel('Input limit').fill('0');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d).toHaveCount(0);
  d = await create('other-key', 'Disabled');
  await d.getByLabel('Input limit').fill('500');
  await d.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(d).toHaveCount(0);
  const rows = page.getByTestId('aikey-row');
  await expect(rows).toHaveCount(2);

  // Search and filter.
  await page.getByLabel('Search').fill('walk');
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText('walk-chat');
  await page.getByLabel('Search').fill('');
  await page.getByLabel('Status').selectOption('disabled');
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText('other-key');
  await page.getByLabel('Status').selectOption('');
  await expect(rows).toHaveCount(2);
  await checkPage(page, 'aikeys');

  // Update: an output limit.
  await page.getByRole('button', { name: 'Update walk-chat' }).click();
  const u = page.getByTestId('aikey-form');
  await u.getByLabel('Output limit').fill('100');
  await u.getByRole('button', { name: 'Save' }).click();
  await expect(u).toHaveCount(0);
  await expect(rows.filter({ hasText: 'walk-chat' })).toContainText('unlimited / 100');

  // A relay call with the user's key through the gateway key, then its counters in the page.
  const relay = await rawCall('POST', '/v1/chat/completions', {
    token: currentToken,
    body: { model: 'walk-chat', messages: [{ role: 'user', content: 'hello from the browser test' }] },
  });
  expect(relay.status, relay.text).toBe(200);
  const usage = (relay.json as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
  expect(usage.prompt_tokens).toBeGreaterThan(0);
  await expect
    .poll(
      async () => {
        await page.getByRole('button', { name: 'Details of walk-chat' }).click();
        const v = page.getByTestId('aikey-details');
        const text = (await v.getByTestId('used-input').textContent()) ?? '';
        await v.getByRole('button', { name: 'Close' }).first().click();
        return text;
      },
      { timeout: 15_000 },
    )
    .toBe(String(usage.prompt_tokens));
  await page.getByRole('button', { name: 'Details of walk-chat' }).click();
  const v = page.getByTestId('aikey-details');
  await expect(v.getByTestId('used-output')).toHaveText(String(usage.completion_tokens));
  await expect(v.getByTestId('last-used')).not.toHaveText('never');
  // The first key failed, so its fallback served the call; each is shown by its hint only.
  const members = v.getByTestId('pool').getByRole('listitem');
  await expect(members).toHaveCount(2);
  await expect(members.nth(0)).toContainText('0 calls served');
  await expect(members.nth(1)).toContainText('1 call served');
  await expect(v.getByTestId('last-served-by')).toHaveText(
    (await members.nth(1).locator('code').textContent()) ?? '',
  );
  // The one host the provider key is ever sent to: the connection's endpoint.
  await expect(v.getByTestId('endpoint-host')).toHaveText(new URL(env.standin).host);
  await checkPage(page, 'aikeys-details');
  await page.keyboard.press('Escape');
  await expect(v).toHaveCount(0);

  // Delete after "Confirm Delete?".
  await page.getByRole('button', { name: 'Delete other-key' }).click();
  const confirm = page.getByTestId('confirm');
  await expect(confirm.getByRole('heading', { name: 'Confirm Delete?' })).toBeVisible();
  await confirm.getByRole('button', { name: 'Delete' }).click();
  await expect(rows).toHaveCount(1);
  await expectNoSecrets(page, context, [env.goodKey, FAILING_KEY]);
});

test('the used tokens of the model show on Model Providers after the relay call', async () => {
  await page.getByRole('link', { name: 'Model Providers' }).click();
  const model = page.getByTestId('added-factory').getByTestId('model-row').filter({ hasText: CHAT });
  await expect(model.getByTestId('used-token')).not.toHaveText('0');
});

test('signing out forgets the credential: nothing in session or local storage, cookies or the page', async () => {
  await signOut(page);
  const stored = await page.evaluate(() => ({ s: sessionStorage.length, l: localStorage.length }));
  expect(stored).toEqual({ s: 0, l: 0 });
  await expectNoSecrets(page, context, [...secrets, currentToken, env.admin]);
  // A reload stays signed out.
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Sign in to keyward' })).toBeVisible();
  await checkPage(page, 'signin');
});
