import crypto from 'node:crypto';
import fs from 'node:fs';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startPlatform, type Platform } from '../../src/platform.js';
import { openStore } from '../../src/store/db.js';
import { FakeProvisioner } from '../support/fake-provisioner.js';
import { api, FAST_ENV, tempDir, waitFor, type Api } from '../support/harness.js';
import { insertWorkspaces } from '../support/workspace-rows.js';
import { hasBrowser, launchChromium, missingBrowser, shot } from './browser.js';

/**
 * The fleet at 1,200 workspaces in Chromium: the server pages, searches and filters (the page holds 100 rows at a
 * time), and the list still follows the live event stream. The workspaces are rows in the store of a platform on
 * a fake backend: no agents run.
 */
const N = 1200;

describe.skipIf(!hasBrowser)(`the fleet pages at ${N} workspaces${hasBrowser ? '' : ` (skipped: ${missingBrowser})`}`, { shuffle: false }, () => {
  const dataDir = tempDir('ui-pages');
  let platform: Platform;
  let http: Api;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const listRequests: string[] = [];
  const failedEvery = 10;
  const failedCount = Math.ceil(N / failedEvery);

  beforeAll(async () => {
    // The rows first (paused and failed: states the reconciler leaves alone), then the platform on that store.
    // They form teams for the tree view: every hundredth is a lead, every tenth reports to its lead, the rest to
    // their tenth (fleet-0123 → fleet-0120 → fleet-0100); creation order (what the table shows) is unchanged.
    const store = await openStore({ dataDir });
    const seedIds = Array.from({ length: N }, () => crypto.randomUUID());
    const parentIndex = (i: number) => (i % 100 === 0 ? null : i % 10 === 0 ? i - (i % 100) : i - (i % 10));
    await insertWorkspaces(
      store.db,
      Array.from({ length: N }, (_, i) => ({
        id: seedIds[i],
        name: `fleet-${String(i).padStart(4, '0')}`,
        status: i % failedEvery === 0 ? ('failed' as const) : ('paused' as const),
        parentId: parentIndex(i) === null ? null : seedIds[parentIndex(i)!],
      })),
    );
    await insertWorkspaces(store.db, [{ name: 'fleet-gone', status: 'removed' }]);
    await store.close();
    [platform, browser] = await Promise.all([
      startPlatform({ env: { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process' }, logger: pino({ level: 'silent' }), provisioner: new FakeProvisioner() }),
      launchChromium(),
    ]);
    http = api(platform.url);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname === '/workspaces') listRequests.push(u.search);
    });
    page.setDefaultTimeout(15_000);
  });

  afterAll(async () => {
    await browser?.close();
    await platform?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') {
      if (pageErrors.length) process.stderr.write(`page errors:\n${pageErrors.join('\n')}\n`);
      await page?.screenshot({ path: shot(`failed-pages-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => undefined);
    }
  });

  const rows = () => page.locator('tr[data-workspace-id]');
  const names = () => page.locator('tr[data-workspace-id] a.ws-name').allInnerTexts();
  const count = () => page.locator('p.count');
  const firstName = async () => (await names())[0];

  it('shows the first 100 of the whole fleet and pages forward and back', async () => {
    await page.goto(platform.url);
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    await page.locator('.live-live').waitFor();
    await waitFor('the first page', async () => (await rows().count()) === 100);
    expect(await firstName()).toBe('fleet-0000');
    await waitFor('the count', async () => (await count().innerText()) === `1–100 of ${N} workspaces`);
    // One request for the page, with the limit: the browser never holds the whole list.
    expect(listRequests).toEqual(['?limit=100']);

    const pager = page.getByRole('navigation', { name: 'Pages' });
    expect(await pager.getByRole('button', { name: 'Previous' }).isDisabled()).toBe(true);
    await pager.getByRole('button', { name: 'Next' }).click();
    await waitFor('page 2', async () => (await firstName()) === 'fleet-0100');
    expect(await rows().count()).toBe(100);
    expect(await count().innerText()).toBe(`101–200 of ${N} workspaces`);
    expect(await pager.innerText()).toContain('Page 2');
    await pager.getByRole('button', { name: 'Next' }).click();
    await waitFor('page 3', async () => (await firstName()) === 'fleet-0200');
    await pager.getByRole('button', { name: 'Previous' }).click();
    await waitFor('back on page 2', async () => (await firstName()) === 'fleet-0100');
    await pager.getByRole('button', { name: 'Previous' }).click();
    await waitFor('back on page 1', async () => (await firstName()) === 'fleet-0000');
    expect(await pager.getByRole('button', { name: 'Previous' }).isDisabled()).toBe(true);
    // Every page came from the server with a cursor, none held all 1,200 rows.
    expect(listRequests.filter((q) => q.includes('cursor=')).length).toBeGreaterThanOrEqual(3);
    expect(listRequests.every((q) => q.includes('limit=100'))).toBe(true);
    await page.screenshot({ path: shot('fleet-pages.png') });
  });

  it('searches names on the server, ignoring case, across all pages', async () => {
    listRequests.length = 0;
    await page.getByLabel('Search').fill('FLEET-119');
    await waitFor('the matches of fleet-119', async () => (await rows().count()) === 10 && (await firstName()) === 'fleet-1190');
    expect(await names()).toEqual(Array.from({ length: 10 }, (_, i) => `fleet-119${i}`));
    expect(listRequests.at(-1)).toContain('q=FLEET-119');
    expect(await page.getByRole('navigation', { name: 'Pages' }).count()).toBe(0);
    await page.getByLabel('Search').fill('no-such-workspace');
    await page.getByText('No workspace matches.').waitFor();
    // A removed workspace is not found by name either.
    await page.getByLabel('Search').fill('fleet-gone');
    await page.getByText('No workspace matches.').waitFor();
    await page.getByLabel('Search').fill('');
    await waitFor('the whole fleet again', async () => (await rows().count()) === 100 && (await firstName()) === 'fleet-0000');
  });

  it('filters by status on the server and pages through the filtered list', async () => {
    listRequests.length = 0;
    await page.getByLabel('Status').selectOption('failed');
    await waitFor('failed only', async () => (await count().innerText()) === `1–100 of ${failedCount} matching workspaces` && (await firstName()) === 'fleet-0000');
    expect(await page.locator('tr[data-workspace-id] [data-status]').evaluateAll((els) => [...new Set(els.map((e) => e.getAttribute('data-status')))])).toEqual(['failed']);
    expect(await names()).toEqual(Array.from({ length: 100 }, (_, i) => `fleet-${String(i * failedEvery).padStart(4, '0')}`));
    expect(listRequests.at(-1)).toContain('status=failed');
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('button', { name: 'Next' }).click();
    await waitFor('the second page of failed ones', async () => (await firstName()) === 'fleet-1000');
    expect(await rows().count()).toBe(failedCount - 100);
    // Search and status together.
    await page.getByLabel('Search').fill('fleet-11');
    await waitFor('failed and fleet-11', async () => (await names()).join() === Array.from({ length: 10 }, (_, i) => `fleet-11${i}0`).join());
    expect(listRequests.at(-1)).toMatch(/status=failed.*q=fleet-11|q=fleet-11.*status=failed/);
    await page.getByLabel('Search').fill('');
    await page.getByLabel('Status').selectOption('');
    await waitFor('the whole fleet again', async () => (await rows().count()) === 100 && (await firstName()) === 'fleet-0000');
  });

  it('still follows the live event stream: a new workspace appears and a deleted one goes, without reloading', async () => {
    await page.evaluate(() => ((window as any).__sameDocument = true));
    await page.getByLabel('Search').fill('live-');
    await page.getByText('No workspace matches.').waitFor();
    const created = await http.call('POST', '/workspaces', { name: 'live-one' });
    expect(created.status).toBe(201);
    const row = page.locator(`tr[data-workspace-id="${created.body.id}"]`);
    await row.waitFor();
    await row.locator('[data-status="provisioning"]').waitFor();
    // A status change reaches the row on the page.
    expect((await http.call('POST', `/workspaces/${created.body.id}/pause`)).status).toBe(200);
    await row.locator('[data-status="paused"]').waitFor();
    expect((await http.call('DELETE', `/workspaces/${created.body.id}`)).status).toBe(202);
    await row.waitFor({ state: 'detached' });
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
    await page.getByLabel('Search').fill('');
    await waitFor('the whole fleet again', async () => (await rows().count()) === 100);
    expect(pageErrors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
  });

  it('shows the 1,200 as a tree, fetched 500 at a time, with the large branches collapsed until opened', async () => {
    listRequests.length = 0;
    const views = page.getByRole('group', { name: 'View' });
    await views.getByRole('button', { name: 'Tree' }).click();
    const items = page.locator('ul.tree li[data-workspace-id]');
    const item = (name: string) => page.locator('ul.tree li[data-workspace-id]', { has: page.locator(':scope > .tree-row a.ws-name', { hasText: new RegExp(`^${name}$`) }) });
    // Twelve leads, each with 18 children, all collapsed: 12 rows rendered, not 1,200.
    await waitFor('the twelve leads', async () => (await items.count()) === 12);
    expect(await page.locator('p.count').innerText()).toBe(`${N} workspaces`);
    expect(listRequests.slice(0, 3)).toEqual(['?limit=500', expect.stringMatching(/^\?limit=500&cursor=/), expect.stringMatching(/^\?limit=500&cursor=/)]);
    expect(listRequests.every((q) => q.includes('limit=500'))).toBe(true);
    expect(await item('fleet-0100').locator(':scope > .tree-row .child-count').innerText()).toContain('18 children');

    await page.getByRole('button', { name: 'Children of fleet-0100', exact: true }).click();
    await waitFor('its 18 children', async () => (await items.count()) === 12 + 18);
    await page.getByRole('button', { name: 'Children of fleet-0120', exact: true }).click();
    await waitFor('and fleet-0120’s 9', async () => (await items.count()) === 12 + 18 + 9);
    await item('fleet-0123').waitFor();

    // Under a filter the branches open: the 120 failed ones (the leads and every tenth) in their tree.
    await page.getByLabel('Status').selectOption('failed');
    await waitFor('the failed ones', async () => (await items.count()) === failedCount);
    expect(await page.locator('ul.tree li[data-match="false"]').count()).toBe(0);
    // A search deep in the tree: the match under its two ancestors, which are fetched by id and dimmed.
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('fleet-0457');
    await waitFor('fleet-0457 under fleet-0450 under fleet-0400', async () => (await items.count()) === 3 && (await item('fleet-0457').count()) === 1);
    expect(await page.locator('ul.tree li[data-match="false"]').count()).toBe(2);
    await page.getByLabel('Search').fill('');
    await waitFor('the leads again', async () => (await items.count()) === 12 + 18 + 9);
    await views.getByRole('button', { name: 'Table' }).click();
    await waitFor('the table again', async () => (await rows().count()) === 100);
    expect(pageErrors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
  });

  it('lays the 1,200 out on the team map, drawing only what is in view', async () => {
    const started = Date.now();
    await page.goto(`${platform.url}/#/map`);
    await page.getByRole('heading', { name: 'Team map' }).waitFor();
    await page.locator('.map-node').first().waitFor();
    const took = Date.now() - started;
    const drawn = await page.locator('.map-node').count();
    process.stderr.write(`team map at ${N}: ${took} ms to the first nodes, ${drawn} nodes drawn\n`);
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThan(N);
    expect(took).toBeLessThan(10_000);
  });
});
