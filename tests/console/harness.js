// What the browser tests share: the real netlog binary started on
// 127.0.0.1:0 in a temporary directory (its address read back from its
// start-up line, as tests/common does), Debian's chromium driven by
// playwright-core, and a page that records every console error, page
// error and CSP violation. Everything talks to 127.0.0.1 only; every wait
// has a time limit.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '..', '..');
/** Longest a broker may take to print its start-up line. */
export const START_TIMEOUT_MS = 30000;
/** Longest any single wait in a test may take. */
export const WAIT_MS = 10000;

/** The netlog binary: $NETLOG_BIN, else the debug build of the target dir. */
export function binary() {
  if (process.env.NETLOG_BIN) return process.env.NETLOG_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
  return join(target, 'debug', 'netlog');
}

/** The browser: $CHROMIUM, else Debian's /usr/bin/chromium. */
export function chromiumPath() {
  return process.env.CHROMIUM || '/usr/bin/chromium';
}

export function sha256Hex(text) {
  return createHash('sha256').update(text).digest('hex');
}

/** The plugin components the build put in plugins/dist. */
export function pluginPath(file) {
  return join(ROOT, 'plugins', 'dist', file);
}

/**
 * Starts netlog with `toml` as its config file (may be empty) and returns
 * {url, addr, dir, stop(), log()}.
 */
export async function startBroker(toml = '') {
  const dir = mkdtempSync(join(tmpdir(), 'netlog-console-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const config = join(dir, 'netlog.toml');
  writeFileSync(config, toml);
  const bin = binary();
  if (!existsSync(bin)) throw new Error(`no netlog binary at ${bin} (cargo build first, or set NETLOG_BIN)`);
  const child = spawn(bin, ['-listen', '127.0.0.1:0', '-dir', data, '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'info' },
  });
  let log = '';
  const addr = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no start-up line in ${START_TIMEOUT_MS} ms:\n${log}`)), START_TIMEOUT_MS);
    const read = (chunk) => {
      log += chunk;
      const line = log.split('\n').find((l) => l.includes('netlog listening'));
      const m = line && line.match(/addr[=":]+([0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`netlog exited with ${code}:\n${log}`)); });
  });
  child.removeAllListeners('exit');
  return {
    addr,
    url: `http://${addr}`,
    dir,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((ok) => child.once('exit', ok));
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS);
        await gone;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A request to the broker from outside the browser. */
export async function api(broker, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  const res = await fetch(broker.url + path, { method, body, headers: h, signal: AbortSignal.timeout(WAIT_MS) });
  return res;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: START_TIMEOUT_MS,
    // Nothing but 127.0.0.1: every other name fails to resolve, and the
    // browser's own background services stay off.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-default-browser-check'],
  });
}

/**
 * A page in its own context (so its sessionStorage is its own) that records
 * problems: console errors, uncaught errors and CSP violations.
 */
export async function openPage(browser, { colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return { page, context, problems };
}

/**
 * Where the screenshots go: tests/console/shots/ (ignored by git), or the
 * folder $CONSOLE_SHOTS names; `CONSOLE_SHOTS=docs/console` refreshes the
 * committed ones that the README shows.
 */
export function shotPath(name) {
  const dir = resolve(ROOT, process.env.CONSOLE_SHOTS || join('tests', 'console', 'shots'));
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}.png`);
}
