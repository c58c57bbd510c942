// Keyboard use: focus stays inside an open dialog whichever way Tab goes, Escape closes it and
// gives focus back to what opened it, and every field of a form is reached by its label.
import { expect, test } from '@playwright/test';
import { env, signInUser, userWithKey, watch } from './support';

test('dialogs keep focus inside, close on Escape and give focus back', async ({ page }) => {
  const w = watch(page);
  const { key } = await userWithKey(`keys-${Date.now().toString(36)}@example.com`);
  await signInUser(page, key.token);
  const opener = page.getByRole('button', { name: 'Create API key' });
  await opener.focus();
  await page.keyboard.press('Enter');
  const d = page.getByRole('dialog', { name: 'Create API key' });
  await expect(d).toBeVisible();
  await expect(d.getByLabel('Description')).toBeFocused();
  const inside = () => page.evaluate(() => !!document.activeElement?.closest('dialog[open]'));
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    expect(await inside(), `Tab ${i + 1} stays in the dialog`).toBe(true);
  }
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Shift+Tab');
    expect(await inside(), `Shift+Tab ${i + 1} stays in the dialog`).toBe(true);
  }
  // Every field is reached by its label, and typing works from the keyboard alone.
  await d.getByLabel('Description').focus();
  await page.keyboard.type('typed');
  await expect(d.getByLabel('Expires after')).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(d).toHaveCount(0);
  await expect(opener).toBeFocused();
  // The confirmation prompt: Escape cancels, nothing is deleted.
  await page.getByRole('button', { name: `Delete key ${key.access_key}` }).click();
  await expect(page.getByTestId('confirm')).toBeVisible();
  await expect(page.getByTestId('confirm').getByRole('button', { name: 'Cancel' })).toBeFocused();
  await page.keyboard.press('Escape');
  await expect(page.getByTestId('confirm')).toHaveCount(0);
  await expect(page.getByTestId('key-row')).toHaveCount(1);
  expect(env.base).toBeTruthy();
  expect(w.problems).toEqual([]);
});
