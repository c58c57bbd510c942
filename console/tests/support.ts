// What every browser test shares: the servers' addresses, a direct API caller (for setting up and
// for checking what the page did), the watch on each page (dialogs, script errors, CSP reports,
// requests to other origins), the accessibility check and screenshot of every page, and the scan
// for secrets left where they must not be.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import AxeBuilder from '@axe-core/playwright';
import { type BrowserContext, expect, type Page } from '@playwright/test';

export const env = {
  get base() {
    return must('KEYWARD_BASE');
  },
  get admin() {
    return must('KEYWARD_ADMIN_TOKEN');
  },
  get standin() {
    return must('KEYWARD_STANDIN');
  },
  get goodKey() {
    return must('KEYWARD_STANDIN_KEY');
  },
};

function must(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: tests/global-setup.ts did not run`);
  return v;
}

export const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');

/**
 * The pages the README shows: with CONSOLE_DOCS_SHOTS=1 a run also writes them, the size of the
 * window rather than the whole page (small PNGs), to docs/console/ for committing.
 */
const DOCS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'console');
const DOC_PAGES = [
  'signin',
  'account',
  'account-create-key',
  'models-added',
  'models-add',
  'defaults',
  'aikeys-details',
  'admin-users',
  'member-models',
  'aikeys-alerts',
];

/** One call to the API from the test itself; returns the envelope's data or throws with the body. */
export async function call<T = unknown>(
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<T> {
  const r = await rawCall(method, path, opts);
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
  return (r.json as { data: T }).data;
}

export async function rawCall(
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; json: unknown; headers: Headers }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(env.base + path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await r.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, text, json, headers: r.headers };
}

export const admin = <T = unknown>(method: string, path: string, body?: unknown) =>
  call<T>(method, path, { token: env.admin, body });

export interface Created {
  id: string;
  token: string;
  access_key: string;
  secret_key: string;
}

/** A user (with a tenant of their own unless one is given) and a key for them, through the admin API. */
export async function userWithKey(
  username: string,
  opts: { tenant_id?: string; role?: string; description?: string } = {},
): Promise<{ user: { username: string; tenant_id: string; role: string }; key: Created }> {
  const body: Record<string, unknown> = { username };
  if (opts.tenant_id) body.tenant_id = opts.tenant_id;
  if (opts.role) body.role = opts.role;
  const user = await admin<{ username: string; tenant_id: string; role: string }>(
    'POST',
    '/api/v1/admin/users',
    body,
  );
  const key = await admin<Created>('POST', `/api/v1/admin/users/${encodeURIComponent(username)}/api_key`, {
    description: opts.description ?? 'browser test',
    ttl_minutes: 1440,
  });
  return { user, key };
}

/**
 * Watch a page for what must never happen: a JavaScript dialog (an injected script ran), an
 * uncaught error, a console error other than the network's own report of an API's 4xx answer
 * (which the page shows as a message), a CSP violation, a request to any other origin.
 */
export function watch(page: Page): { problems: string[] } {
  const problems: string[] = [];
  const origin = new URL(env.base).origin;
  page.on('dialog', (d) => {
    problems.push(`dialog ${d.type()}: ${d.message()}`);
    void d.dismiss();
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const text = m.text();
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
    if (m.type() === 'warning' && !/Content Security Policy|Refused/.test(text)) return;
    problems.push(`console ${m.type()}: ${text}`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (u.startsWith('data:') || u.startsWith('blob:')) return;
    if (new URL(u).origin !== origin) problems.push(`request to another origin: ${u}`);
  });
  return { problems };
}

/** Screenshot the page (to console/screenshots/NAME.png) and check it with axe: nothing serious. */
export async function checkPage(page: Page, name: string): Promise<void> {
  await page.waitForLoadState('networkidle');
  await expect(page.locator('[aria-busy="true"]')).toHaveCount(0);
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  if (process.env.CONSOLE_DOCS_SHOTS === '1' && DOC_PAGES.includes(name)) {
    mkdirSync(DOCS, { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({
      path: join(DOCS, `${name}.png`),
      clip: { x: 0, y: 0, width: 1280, height: 720 },
    });
  }
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(
    bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`),
    `accessibility of ${name}`,
  ).toEqual([]);
}

/** No secret in localStorage, cookies, the URL, or the page's text, markup and field values. */
export async function expectNoSecrets(page: Page, context: BrowserContext, secrets: string[]): Promise<void> {
  const seen = await page.evaluate(() => {
    const fields = Array.from(
      document.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>('input, textarea'),
    ).map((e) => e.value);
    const local: string[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i) as string;
      local.push(k, localStorage.getItem(k) ?? '');
    }
    return {
      url: location.href,
      html: document.documentElement.outerHTML,
      text: document.body.textContent ?? '',
      fields: fields.join('\n'),
      local: local.join('\n'),
      cookie: document.cookie,
    };
  });
  const cookies = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('\n');
  for (const s of secrets) {
    for (const [where, text] of Object.entries({ ...seen, cookies })) {
      expect(text.includes(s), `a secret is in ${where}`).toBe(false);
    }
  }
}

/** Sign in through the page with the admin token. */
export async function signInAdmin(page: Page): Promise<void> {
  await page.goto(`${env.base}/`);
  await page.getByRole('tab', { name: 'Admin token' }).click();
  await page.getByLabel('Admin token').fill(env.admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Tenants' })).toBeVisible();
}

/** Sign in through the page with a user key's bearer token. */
export async function signInUser(page: Page, token: string): Promise<void> {
  await page.goto(`${env.base}/`);
  await page.getByRole('tab', { name: 'API key' }).click();
  await page.getByLabel('API key', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Account & API Keys' })).toBeVisible();
}

export async function signOut(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in to keyward' })).toBeVisible();
}
