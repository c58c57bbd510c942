// A member of a tenant sees what they may read (the tenant's providers, defaults and gateway keys)
// and no controls for what only owners and admins may do; their own keys they still manage.
import { expect, test } from '@playwright/test';
import { call, checkPage, env, signInUser, userWithKey, watch } from './support';

test('a member sees the pages read-only', async ({ page }) => {
  const w = watch(page);
  const stamp = Date.now().toString(36);
  const owner = await userWithKey(`owner-${stamp}@example.com`);
  const t = owner.key.token;
  await call('POST', '/api/v1/models', {
    token: t,
    body: { llm_factory: 'Ollama', llm_name: 'llama3.2', base_url: env.standin, model_type: 'chat' },
  });
  await call('POST', '/api/v1/models/default', { token: t, body: { llm_id: 'llama3.2@Ollama' } });
  await call('POST', '/api/v1/ai_keys', {
    token: t,
    body: {
      alias: 'team-llama',
      provider: 'Ollama',
      model: 'llama3.2',
      api_key: 'ollama-key-0123456789',
      input_limit: 0,
    },
  });
  const member = await userWithKey(`member-${stamp}@example.com`, {
    tenant_id: owner.user.tenant_id,
    role: 'member',
  });

  await signInUser(page, member.key.token);
  await expect(page.getByTestId('me')).toContainText('member');
  // Their own keys: a member may create them.
  await expect(page.getByRole('button', { name: 'Create API key' })).toBeVisible();
  await checkPage(page, 'member-account');

  await page.getByRole('link', { name: 'Model Providers' }).click();
  await expect(page.getByTestId('read-only')).toBeVisible();
  await expect(
    page.getByTestId('added-factory').filter({ hasText: 'Ollama' }).getByTestId('model-row'),
  ).toContainText('llama3.2');
  await expect(page.getByTestId('catalog-factory').first()).toBeVisible();
  for (const name of ['Add the model', 'Update key', 'Remove']) {
    await expect(page.getByRole('button', { name })).toHaveCount(0);
  }
  await expect(page.getByRole('button', { name: /^Remove/ })).toHaveCount(0);
  await checkPage(page, 'member-models');

  await page.getByRole('link', { name: 'Default models' }).click();
  const ro = page.getByTestId('read-only');
  await expect(ro).toContainText('llama3.2@Ollama');
  await expect(page.getByRole('combobox')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Save' })).toHaveCount(0);
  await checkPage(page, 'member-defaults');

  await page.getByRole('link', { name: 'AI API keys' }).click();
  await expect(page.getByTestId('aikey-row')).toContainText('team-llama');
  await expect(page.getByRole('button', { name: 'Create', exact: true })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Update team-llama' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Delete team-llama' })).toHaveCount(0);
  await page.getByRole('button', { name: 'Details of team-llama' }).click();
  await expect(page.getByTestId('aikey-details')).toContainText('Ollama / llama3.2');
  await page.keyboard.press('Escape');
  await checkPage(page, 'member-aikeys');
  expect(w.problems).toEqual([]);
});
