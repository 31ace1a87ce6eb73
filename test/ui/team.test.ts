import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { a2aRequest } from '../support/a2a-client.js';
import { api, killRecordedAgents, launchPlatform, processEnv, tempDir, waitFor, waitReady, waitStatus, type Api, type PlatformProcess } from '../support/harness.js';
import { collectPageErrors, docShot, hasBrowser, launchChromium, missingBrowser, shot } from './browser.js';

/**
 * Teams in the web UI (issue 16), in Chromium against a platform on the process backend with real agents: the
 * fleet's tree view, a workspace's parent and children, the team map with live agent-to-agent traffic, and moving
 * a workspace to another parent. The screenshots in the README's UI section are made here.
 *
 *   orch ─┬─ worker-1 ── w1-helper        solo
 *         ├─ worker-2
 *         └─ worker-3
 */
describe.skipIf(!hasBrowser)(`teams in the web UI${hasBrowser ? '' : ` (skipped: ${missingBrowser})`}`, { shuffle: false }, () => {
  const dataDir = tempDir('ui-team');
  let platform: PlatformProcess;
  let http: Api;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const ids: Record<string, string> = {};

  const create = async (name: string, body: Record<string, unknown> = {}) => {
    const r = await http.call('POST', '/workspaces', { name, ...body });
    expect(r.status, r.text).toBe(201);
    ids[name] = r.body.id;
    return r.body.id as string;
  };

  beforeAll(async () => {
    [platform, browser] = await Promise.all([launchPlatform({ dataDir }), launchChromium()]);
    http = api(platform.url);
    const orch = await create('orch', { role: 'Plans the work and hands it out' });
    await Promise.all([
      create('worker-1', { parent_id: orch, role: 'Writes the code' }),
      create('worker-2', { parent_id: orch, role: 'Reviews it' }),
      create('worker-3', { parent_id: orch, role: 'Runs the tests' }),
    ]);
    await create('w1-helper', { parent_id: ids['worker-1'], role: 'Looks things up' });
    await create('solo');
    await Promise.all(Object.values(ids).map((id) => waitReady(http, id)));
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, colorScheme: 'light' });
    page = await context.newPage();
    collectPageErrors(page, pageErrors);
    page.setDefaultTimeout(20_000);
  });

  afterAll(async () => {
    await browser?.close();
    await platform?.stop();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') {
      if (pageErrors.length) process.stderr.write(`page errors:\n${pageErrors.join('\n')}\n`);
      await page?.screenshot({ path: shot(`failed-team-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => undefined);
    }
  });

  const item = (name: string) => page.locator(`ul.tree li[data-workspace-id="${ids[name]}"]`);
  /** The tree item `child` directly under the item `parent`. */
  const under = (parent: string, child: string) => page.locator(`li[data-workspace-id="${ids[parent]}"] > ul.tree > li[data-workspace-id="${ids[child]}"]`);
  const topLevel = (name: string) => page.locator(`.tree-wrap > ul.tree > li[data-workspace-id="${ids[name]}"]`);
  const parentOf = async (name: string) => (await http.call('GET', `/workspaces/${ids[name]}`)).body.parent_id;
  /** Clips a screenshot to the page's top down to the bottom of `selector`, 1200 px wide. */
  const clipTo = async (selector: string) => {
    const box = (await page.locator(selector).first().boundingBox())!;
    return { x: 0, y: 0, width: 1200, height: Math.ceil(box.y + box.height + 16) };
  };

  it('shows the fleet as a tree: children indented under their parent, collapsible, remembered, kept under a filter, live', async () => {
    await page.goto(platform.url);
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    await page.locator('.live-live').waitFor();
    const views = page.getByRole('group', { name: 'View' });
    expect(await views.getByRole('button', { name: 'Table' }).getAttribute('aria-pressed')).toBe('true');
    await views.getByRole('button', { name: 'Tree' }).click();

    const tree = page.getByRole('list', { name: 'Workspaces by parent' });
    await tree.waitFor();
    for (const w of ['worker-1', 'worker-2', 'worker-3']) await under('orch', w).waitFor();
    await under('worker-1', 'w1-helper').waitFor();
    await topLevel('orch').waitFor();
    await topLevel('solo').waitFor();
    expect(await item('orch').locator('> .tree-row .child-count').innerText()).toContain('3 children');
    expect(await item('worker-1').locator('> .tree-row .child-count').innerText()).toContain('1 child');
    await item('w1-helper').locator('[data-status="ready"]').waitFor();
    // Indented by depth.
    const x = async (name: string) => (await item(name).locator('> .tree-row a.ws-name').boundingBox())!.x;
    expect(await x('worker-1')).toBeGreaterThan(await x('orch'));
    expect(await x('w1-helper')).toBeGreaterThan(await x('worker-1'));
    await page.screenshot({ path: docShot('ui-tree.png'), clip: await clipTo('.tree-wrap') });

    // Collapse and expand: a collapsed branch is not rendered at all.
    const toggle = page.getByRole('button', { name: 'Children of orch', exact: true });
    expect(await toggle.getAttribute('aria-expanded')).toBe('true');
    await toggle.click();
    expect(await toggle.getAttribute('aria-expanded')).toBe('false');
    await item('worker-1').waitFor({ state: 'detached' });
    expect(await item('w1-helper').count()).toBe(0);
    await toggle.click();
    await under('worker-1', 'w1-helper').waitFor();

    // The choice of view survives a reload.
    await page.reload();
    await tree.waitFor();
    expect(await page.getByRole('group', { name: 'View' }).getByRole('button', { name: 'Tree' }).getAttribute('aria-pressed')).toBe('true');
    await under('orch', 'worker-2').waitFor();

    // A status filter keeps the tree: the match under its parent, which does not match and is dimmed.
    expect((await http.call('POST', `/workspaces/${ids['worker-2']}/pause`)).status).toBe(200);
    await page.getByLabel('Status').selectOption('paused');
    await under('orch', 'worker-2').locator('[data-status="paused"]').waitFor();
    await waitFor('only the paused worker and its parent', async () => (await page.locator('ul.tree li[data-workspace-id]').count()) === 2);
    expect(await item('orch').getAttribute('data-match')).toBe('false');
    expect(await item('worker-2').getAttribute('data-match')).toBeNull();
    expect(await page.locator('p.count').innerText()).toBe('1 matching workspace, under 1 ancestor that does not match (dimmed)');
    // A search too, two levels deep.
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('helper');
    await waitFor('the helper under its two ancestors', async () => (await page.locator('ul.tree li[data-workspace-id]').count()) === 3 && (await under('worker-1', 'w1-helper').count()) === 1);
    expect(await item('orch').getAttribute('data-match')).toBe('false');
    expect(await item('worker-1').getAttribute('data-match')).toBe('false');
    await page.getByLabel('Search').fill('');
    await topLevel('solo').waitFor();

    // Live, without reloading: a new child appears under its parent.
    await page.evaluate(() => ((window as any).__sameDocument = true));
    await create('w3-sub', { parent_id: ids['worker-3'] });
    await under('worker-3', 'w3-sub').waitFor();
    await under('worker-3', 'w3-sub').locator('[data-status="ready"]').waitFor({ timeout: 30_000 });
    expect(await item('worker-3').locator('> .tree-row .child-count').innerText()).toContain('1 child');
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
  });

  it("shows a workspace's parent and children, and creates a child with the parent chosen", async () => {
    await page.goto(`${platform.url}/#/workspaces/${ids['worker-1']}`);
    await page.getByRole('heading', { name: 'worker-1', level: 1 }).waitFor();
    const parent = page.getByRole('list', { name: 'Parent' });
    await parent.getByRole('link', { name: 'orch' }).waitFor();
    expect(await parent.getByRole('link', { name: 'orch' }).getAttribute('href')).toBe(`#/workspaces/${ids.orch}`);
    await parent.locator('[data-status="ready"]').waitFor();
    await page.getByRole('list', { name: /^Children/ }).getByRole('link', { name: 'w1-helper' }).waitFor();

    await parent.getByRole('link', { name: 'orch' }).click();
    await page.getByRole('heading', { name: 'orch', level: 1 }).waitFor();
    await page.getByText('None: a top-level workspace.').waitFor();
    const children = page.getByRole('list', { name: /^Children/ });
    for (const w of ['worker-1', 'worker-2', 'worker-3']) await children.getByRole('link', { name: w, exact: true }).waitFor();
    expect(await children.getByRole('listitem').count()).toBe(3);
    await children.getByRole('listitem').filter({ hasText: 'worker-2' }).locator('[data-status="paused"]').waitFor();

    await page.getByRole('button', { name: 'Create child' }).click();
    const dialog = page.getByRole('dialog', { name: 'New child of orch' });
    await dialog.waitFor();
    expect(await dialog.locator('#create-parent_id').inputValue()).toBe(ids.orch);
    await dialog.getByLabel('Name', { exact: true }).first().fill('worker-4');
    await dialog.getByLabel('Role').fill('Writes the docs');
    await dialog.getByRole('button', { name: 'Create workspace' }).click();
    await dialog.waitFor({ state: 'detached' });
    await children.getByRole('link', { name: 'worker-4' }).waitFor();
    ids['worker-4'] = (await children.getByRole('link', { name: 'worker-4' }).getAttribute('href'))!.split('/').pop()!;
    expect(await parentOf('worker-4')).toBe(ids.orch);
    // Its status follows live on the parent's page.
    await children.getByRole('listitem').filter({ hasText: 'worker-4' }).locator('[data-status="ready"]').waitFor({ timeout: 30_000 });
    await page.screenshot({ path: docShot('ui-team.png'), clip: await clipTo('.team') });
  });

  it('draws the team map and lights up an edge when one workspace calls another through the platform', async () => {
    await page.goto(`${platform.url}/#/map`);
    await page.getByRole('heading', { name: 'Team map' }).waitFor();
    expect(await page.getByRole('link', { name: 'Team map' }).getAttribute('aria-current')).toBe('page');
    const node = (name: string) => page.locator(`.map-node[data-workspace-id="${ids[name]}"]`);
    for (const name of Object.keys(ids)) await node(name).waitFor();
    expect(await node('orch').getAttribute('data-tone')).toBe('ok');
    expect(await node('worker-2').locator('[data-status="paused"]').count()).toBe(1);
    // One edge per parent → child line.
    expect(await page.locator('.react-flow__edge.hierarchy').count()).toBe(6);
    // dagre puts children below their parent.
    const y = async (name: string) => (await node(name).boundingBox())!.y;
    expect(await y('worker-1')).toBeGreaterThan(await y('orch'));
    expect(await y('w1-helper')).toBeGreaterThan(await y('worker-1'));

    // worker-1 calls its parent with its own workspace token (read from its agent's environment), and orch calls it back.
    const tokenOf = async (name: string) => processEnv(Number((await http.call('GET', `/workspaces/${ids[name]}`)).body.instance.pid), 'MOLECULE_WORKSPACE_TOKEN')!;
    const up = await api(platform.url, await tokenOf('worker-1')).call('POST', `/workspaces/${ids.orch}/a2a`, a2aRequest('message/send', 'What is your name?'));
    expect(up.status, up.text).toBe(200);
    expect(up.body.result, up.text).toBeTruthy();
    const label = page.locator(`.edge-label[data-edge="${ids['worker-1']}->${ids.orch}"]`);
    await label.waitFor({ timeout: 10_000 });
    expect(await label.innerText()).toMatch(/^1 call · p50 \d+ ms$/);
    expect(await label.getAttribute('class')).toContain('lit');
    expect(await label.getAttribute('title')).toContain('over the last 5 minutes as seen by this browser since the map was opened');
    // Not a parent → child line: drawn as a traffic edge of its own.
    await page.locator(`.react-flow__edge.traffic.lit[data-id="traffic:${ids['worker-1']}->${ids.orch}"]`).waitFor();

    const down = await api(platform.url, await tokenOf('orch')).call('POST', `/workspaces/${ids['worker-1']}/a2a`, a2aRequest('message/send', 'What is your name?'));
    expect(down.status, down.text).toBe(200);
    // Along the hierarchy: the parent → child edge itself lights up and carries the label.
    await page.locator(`.react-flow__edge.hierarchy.lit[data-id="hierarchy:${ids.orch}->${ids['worker-1']}"]`).waitFor({ timeout: 10_000 });
    await page.locator(`.edge-label[data-edge="${ids.orch}->${ids['worker-1']}"]`).waitFor();
    const calls = page.getByRole('table', { name: 'Calls in the last 5 minutes' });
    await calls.locator(`tr[data-edge="${ids['worker-1']}->${ids.orch}"]`).waitFor();
    await page.screenshot({ path: docShot('ui-map.png'), fullPage: true, clip: await clipTo('.calls-card') });
    // The glow fades; the count stays.
    await page.waitForFunction((el) => !el?.classList.contains('lit'), await label.elementHandle(), { timeout: 5_000 });
    expect(await label.innerText()).toMatch(/^1 call/);

    // Live status: the node changes colour without a reload.
    expect((await http.call('POST', `/workspaces/${ids['worker-3']}/pause`)).status).toBe(200);
    await node('worker-3').locator('[data-status="paused"]').waitFor();
    expect(await node('worker-3').getAttribute('data-tone')).toBe('idle');
  });

  it('moves a workspace to another parent, and shows the refusal of a cycle without changing anything', async () => {
    await page.goto(`${platform.url}/#/workspaces/${ids['w1-helper']}`);
    await page.getByRole('heading', { name: 'w1-helper', level: 1 }).waitFor();
    await page.getByRole('list', { name: 'Parent' }).getByRole('link', { name: 'worker-1' }).waitFor();

    await page.getByRole('button', { name: 'Move…' }).click();
    let dialog = page.getByRole('dialog', { name: 'Move w1-helper' });
    await dialog.getByLabel('Find a workspace').fill('worker-');
    const select = dialog.getByLabel('New parent');
    expect(await select.locator('option').first().innerText()).toBe('No parent (top level)');
    await select.selectOption({ label: 'worker-3' });
    await dialog.getByRole('button', { name: 'Move', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByRole('list', { name: 'Parent' }).getByRole('link', { name: 'worker-3' }).waitFor();
    expect(await parentOf('w1-helper')).toBe(ids['worker-3']);

    // A cycle: orch under its own grandchild. The platform refuses; the dialog says why and nothing moves.
    await page.goto(`${platform.url}/#/workspaces/${ids.orch}`);
    await page.getByRole('heading', { name: 'orch', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Move…' }).click();
    dialog = page.getByRole('dialog', { name: 'Move orch' });
    const choices = dialog.getByLabel('New parent');
    await dialog.getByLabel('Find a workspace').fill('o');
    // A workspace is never offered as its own parent.
    await waitFor('the candidates', async () => (await choices.locator('option').count()) > 1);
    expect(await choices.locator('option').allInnerTexts()).not.toContain('orch');
    await dialog.getByLabel('Find a workspace').fill('w1-helper');
    await choices.selectOption({ label: 'w1-helper' });
    await dialog.getByRole('button', { name: 'Move', exact: true }).click();
    const refusal = dialog.getByRole('alert');
    await refusal.waitFor();
    expect((await refusal.innerText()).length).toBeGreaterThan(10);
    expect(await choices.getAttribute('aria-invalid')).toBe('true');
    expect(await parentOf('orch')).toBeNull();
    expect(await parentOf('w1-helper')).toBe(ids['worker-3']);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    await page.getByText('None: a top-level workspace.').waitFor();

    // Back to the top level.
    await page.goto(`${platform.url}/#/workspaces/${ids['w1-helper']}`);
    await page.getByRole('heading', { name: 'w1-helper', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Move…' }).click();
    dialog = page.getByRole('dialog', { name: 'Move w1-helper' });
    await dialog.getByLabel('New parent').selectOption({ label: 'No parent (top level)' });
    await dialog.getByRole('button', { name: 'Move', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByText('None: a top-level workspace.').waitFor();
    expect(await parentOf('w1-helper')).toBeNull();
    expect(pageErrors).toEqual([]);
  });
});
