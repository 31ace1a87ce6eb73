import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ROOT } from '../support/harness.js';

/** Debian's Chromium (apt-get install chromium); tests never download a browser. */
export const CHROMIUM = process.env.MOLECULE_CHROMIUM ?? '/usr/bin/chromium';
export const hasBrowser = fs.existsSync(CHROMIUM);
export const requireBrowser = process.env.MOLECULE_REQUIRE_BROWSER === '1';
export const missingBrowser = `${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`;

if (!hasBrowser && !requireBrowser) {
  process.stderr.write(`web UI browser tests SKIPPED: ${missingBrowser}\n`);
}

/**
 * Flags for a root user on a machine whose network is closed: no sandbox (root), and none of Chromium's own
 * background connections. Playwright gives every launch a new empty profile.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export const SCREENSHOTS = path.join(ROOT, '.artifacts', 'screenshots');
fs.mkdirSync(SCREENSHOTS, { recursive: true });
export const shot = (name: string) => path.join(SCREENSHOTS, name);

/**
 * Screenshots shown in the README (light mode, 1200 px wide): written to docs/ only when asked
 * (`MOLECULE_UPDATE_DOCS=1`), so that a test run leaves the checkout as it found it; otherwise beside the others.
 */
export const DOCS = path.join(ROOT, 'docs');
export const docShot = (name: string) => (process.env.MOLECULE_UPDATE_DOCS === '1' ? path.join(DOCS, name) : shot(name));

/**
 * Collects the page's uncaught errors and console errors into `errors`, for a test to assert there are none. The
 * browser logs every 4xx answer (a validation error, a 410 after a delete, a refused move) as "Failed to load
 * resource": those are expected and left out.
 */
export function collectPageErrors(page: Page, errors: string[]): void {
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
}
