// Browser tests: Playwright's runner driving Debian's Chromium against the real built worker on
// workerd (wrangler dev, local D1 and KV, throwaway state) and the provider stand-in, both started
// by tests/global-setup.ts and stopped by its teardown, also when a test fails.
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: 'tests',
  globalSetup: './tests/global-setup.ts',
  // One worker and one server: the walk's steps build on each other.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    browserName: 'chromium',
    headless: true,
    viewport: { width: 1280, height: 860 },
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      // Root needs --no-sandbox; the rest keeps Chromium from calling out on a closed network.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-default-apps',
      ],
    },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
});
