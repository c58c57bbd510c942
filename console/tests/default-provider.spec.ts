// A deployment with a default provider (DEFAULT_LLM_*): a user created without a tenant signs in
// and finds the seeded connection on the Model Providers page under Added models, and its default
// on the Default models page, without adding anything. This file starts a worker of its own with
// that configuration (the shared one has none, so the other files' tenants start empty), points
// the helpers at it, and stops it afterwards, also when the test fails.
import { expect, test } from '@playwright/test';
import { STANDIN_GOOD_KEY, Worker } from '../../e2e/harness.mjs';
import { checkPage, env, expectNoSecrets, signInUser, userWithKey, watch } from './support';

// The harness is plain JavaScript: name what is used here.
type Started = {
  start(opts: { logLevel: string; vars: Record<string, string> }): Promise<unknown>;
  stop(): Promise<void>;
  base: string;
};

let seeded: Started | null = null;
let sharedBase: string | undefined;

test.beforeAll(async () => {
  test.setTimeout(180_000);
  sharedBase = process.env.KEYWARD_BASE;
  const w = new Worker() as unknown as Started;
  seeded = w;
  await w.start({
    logLevel: 'warn',
    vars: {
      DEFAULT_LLM_FACTORY: 'OpenAI',
      DEFAULT_LLM_BASE_URL: `${env.standin}/v1`,
      DEFAULT_LLM_MODELS: 'llm_id=gpt-4o-mini',
      DEFAULT_LLM_API_KEY: STANDIN_GOOD_KEY,
    },
  });
  process.env.KEYWARD_BASE = w.base;
});

test.afterAll(async () => {
  test.setTimeout(60_000);
  process.env.KEYWARD_BASE = sharedBase;
  if (seeded) await seeded.stop();
});

test('a new tenant finds the default provider under Added models with nothing added', async ({
  page,
  context,
}) => {
  const w = watch(page);
  const stamp = Date.now().toString(36);
  const { key } = await userWithKey(`seeded-${stamp}@example.com`);
  await signInUser(page, key.token);

  await page.getByRole('link', { name: 'Model Providers' }).click();
  const card = page
    .getByTestId('added-factory')
    .filter({ has: page.getByRole('heading', { name: 'OpenAI' }) });
  await expect(card).toHaveCount(1);
  const model = card.getByTestId('model-row').filter({ hasText: 'gpt-4o-mini' }).first();
  await expect(model).toContainText('Chat');
  // The masked hint of the deployment's key, never the key.
  await expect(model).toContainText('sk...6789');
  await expectNoSecrets(page, context, [STANDIN_GOOD_KEY, env.admin]);
  await checkPage(page, 'models-seeded');

  await page.getByRole('link', { name: 'Default models' }).click();
  await expect(page.getByLabel('Chat', { exact: true })).toHaveValue('gpt-4o-mini@OpenAI');
  await checkPage(page, 'defaults-seeded');
  expect(w.problems).toEqual([]);
});
