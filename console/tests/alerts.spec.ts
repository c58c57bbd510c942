// Budget alerts on the AI API keys page: an owner sets the tenant's webhook, copies the generated
// secret from the dialog that shows it once, sends a test event that a real receiver on loopback
// gets signed with that secret, renews the secret and removes the webhook; a member of the same
// tenant is not offered the section. No secret stays in the page, its fields or storage.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, type Page, test } from '@playwright/test';
import { checkPage, expectNoSecrets, signInUser, userWithKey, watch } from './support';

type Got = { headers: IncomingHttpHeaders; body: Buffer };

function signedBy(header: string | string[] | undefined, key: string, body: Buffer): boolean {
  const parts = Object.fromEntries(
    String(header)
      .split(',')
      .map((p) => p.split('=', 2)),
  );
  if (!parts.t || !parts.v1) return false;
  const want = createHmac('sha256', key).update(`${parts.t}.`).update(body).digest();
  const got = Buffer.from(parts.v1, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Dismiss every notice, as a user would before reaching a button one of them covers. */
async function dismissNotices(page: Page): Promise<void> {
  const dismiss = page.getByRole('status').getByRole('button', { name: 'Dismiss' });
  while ((await dismiss.count()) > 0) await dismiss.first().click();
}

test('an owner sets the webhook, copies the secret once, and a test event arrives signed with it', async ({
  page,
  context,
}) => {
  const received: Got[] = [];
  const got = (i: number): Got => {
    const g = received[i];
    if (!g) throw new Error(`the receiver got ${received.length} requests, not ${i + 1}`);
    return g;
  };
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/console`;
    const run = test.info().repeatEachIndex;
    const { user, key } = await userWithKey(`alerts-owner-${run}`);
    const member = await userWithKey(`alerts-member-${run}`, { tenant_id: user.tenant_id, role: 'member' });
    const w = watch(page);
    await signInUser(page, key.token);
    await page.getByRole('link', { name: 'AI API keys' }).click();
    const section = page.getByTestId('budget-alerts');
    await expect(section.getByRole('heading', { name: 'Budget alerts' })).toBeVisible();
    await expect(section.getByTestId('webhook')).toHaveCount(0);

    await section.getByLabel('Webhook URL').fill(url);
    await section.getByRole('button', { name: 'Set webhook' }).click();
    const dialog = page.getByTestId('webhook-secret');
    await expect(dialog).toBeVisible();
    const secret = (await dialog.getByTestId('new-webhook-secret').textContent()) ?? '';
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    await dialog.getByRole('button', { name: 'I have copied it' }).click();
    await expect(dialog).toHaveCount(0);
    await expect(section.getByTestId('webhook')).toContainText(url);
    await expect(section.getByTestId('webhook')).toContainText('...');
    await expectNoSecrets(page, context, [secret]);

    await section.getByRole('button', { name: 'Send test event' }).click();
    await expect(page.getByText('Test event delivered (HTTP 200)')).toBeVisible();
    expect(received).toHaveLength(1);
    expect(got(0).headers['keyward-event-type']).toBe('webhook.test');
    expect(signedBy(got(0).headers['keyward-signature'], secret, got(0).body)).toBe(true);
    await checkPage(page, 'aikeys-alerts');

    // A new secret: shown once again, and the next event is signed with it, not the old one.
    await dismissNotices(page);
    await section.getByRole('button', { name: 'New secret' }).click();
    await page.getByTestId('confirm').getByRole('button', { name: 'Renew' }).click();
    const renewed = (await dialog.getByTestId('new-webhook-secret').textContent()) ?? '';
    expect(renewed).not.toBe(secret);
    await dialog.getByRole('button', { name: 'I have copied it' }).click();
    await section.getByRole('button', { name: 'Send test event' }).click();
    await expect.poll(() => received.length).toBe(2);
    expect(signedBy(got(1).headers['keyward-signature'], renewed, got(1).body)).toBe(true);
    expect(signedBy(got(1).headers['keyward-signature'], secret, got(1).body)).toBe(false);
    await expectNoSecrets(page, context, [secret, renewed]);

    // A URL the deployment refuses is answered inside the form, and nothing changes.
    await section.getByLabel('Webhook URL').fill('http://hooks.example.com/x');
    await section.getByRole('button', { name: 'Save webhook' }).click();
    await expect(section.getByRole('alert')).toContainText('https');
    await expect(section.getByTestId('webhook')).toContainText(url);

    await dismissNotices(page);
    await section.getByRole('button', { name: 'Remove' }).click();
    await page.getByTestId('confirm').getByRole('button', { name: 'Remove' }).click();
    await expect(page.getByText('Webhook removed')).toBeVisible();
    await expect(section.getByTestId('webhook')).toHaveCount(0);
    expect(w.problems).toEqual([]);

    // A member reads the keys but is not offered the webhook.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signInUser(page, member.key.token);
    await page.getByRole('link', { name: 'AI API keys' }).click();
    await expect(page.getByTestId('read-only')).toBeVisible();
    await expect(page.getByTestId('budget-alerts')).toHaveCount(0);
  } finally {
    await new Promise((resolve) => receiver.close(resolve));
  }
});
