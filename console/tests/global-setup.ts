// Starts the provider stand-in and the built worker (with the console as its static assets) once
// for the whole run, with e2e/harness.mjs, the same harness as the end-to-end suite; the returned
// teardown stops both, whatever the tests did. What the tests need goes through the environment.

import { existsSync } from 'node:fs';
import { readAdminToken, STANDIN_GOOD_KEY, startStandIn, Worker } from '../../e2e/harness.mjs';

export default async function globalSetup(): Promise<() => Promise<void>> {
  const chromium = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(chromium)) {
    throw new Error(
      `The browser tests drive Debian's Chromium at ${chromium}, which is missing: run \`make setup\` as root ` +
        '(it installs it), or install it with `sudo apt-get update && sudo apt-get install -y chromium`',
    );
  }
  const started: Array<{ stop: () => Promise<void> }> = [];
  const stopAll = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };
  try {
    const standin = await startStandIn();
    started.push(standin);
    // The production brute-force budget (wrangler.toml), so the 429 test meets the real limiter.
    // The harness is plain JavaScript: its fields start as null, so name what is used here.
    const worker = new Worker() as unknown as {
      start(opts: {
        authFailureLimit: number | null;
        logLevel: string;
        vars: Record<string, string>;
      }): Promise<unknown>;
      stop(): Promise<void>;
      base: string;
    };
    started.push(worker);
    // Usage counted by the limits' Durable Objects reaches D1 (and the charts) within 2 s.
    await worker.start({ authFailureLimit: null, logLevel: 'warn', vars: { USAGE_FLUSH_SECONDS: '2' } });
    process.env.KEYWARD_BASE = worker.base;
    process.env.KEYWARD_ADMIN_TOKEN = readAdminToken();
    process.env.KEYWARD_STANDIN = String(standin.base);
    process.env.KEYWARD_STANDIN_KEY = STANDIN_GOOD_KEY;
  } catch (e) {
    await stopAll();
    throw e;
  }
  return stopAll;
}
