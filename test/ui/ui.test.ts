import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { api, killRecordedAgents, launchPlatform, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.js';
import { collectPageErrors, hasBrowser, launchChromium, missingBrowser, requireBrowser, shot } from './browser.js';

/**
 * The web UI in a real Chromium against a real platform on the process backend: everything a person does in
 * the browser, checked against what the API then says.
 */

if (!hasBrowser && requireBrowser) {
  it('Chromium is installed (MOLECULE_REQUIRE_BROWSER=1)', () => {
    throw new Error(missingBrowser);
  });
}

// One story told in order: each step starts where the previous one left the page (never shuffled).
describe.skipIf(!hasBrowser)(`web UI in Chromium${hasBrowser ? '' : ` (skipped: ${missingBrowser})`}`, { shuffle: false }, () => {
  const dataDir = tempDir('ui');
  let platform: PlatformProcess;
  let http: Api;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let model: FakeOpenAI;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    model = await startFakeOpenAI(() => 'Streaming works: this reply arrives in several chunks from the model.');
    // One automatic restart, then a second death is a crash loop: `failed` comes quickly and for real.
    [platform, browser] = await Promise.all([launchPlatform({ dataDir, env: { MOLECULE_CRASH_LOOP_MAX: '1' } }), launchChromium()]);
    http = api(platform.url);
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    collectPageErrors(page, pageErrors);
    page.setDefaultTimeout(20_000);
  });

  afterAll(async () => {
    await browser?.close();
    await platform?.stop();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
    await model?.close();
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && pageErrors.length) process.stderr.write(`page errors:\n${pageErrors.join('\n')}\n`);
    if (ctx.task.result?.state === 'fail') await page?.screenshot({ path: shot(`failed-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => undefined);
  });

  const row = (name: string) => page.locator('tr[data-workspace-id]', { has: page.locator('a.ws-name', { hasText: new RegExp(`^${name}$`) }) });
  const idOf = async (name: string) => (await row(name).getAttribute('data-workspace-id'))!;

  async function createThroughDialog(name: string, opts: { role?: string; tier?: string; secrets?: Record<string, string> } = {}) {
    await page.getByRole('button', { name: 'New workspace' }).click();
    const dialog = page.getByRole('dialog', { name: 'New workspace' });
    await dialog.getByLabel('Name', { exact: true }).first().fill(name);
    if (opts.role) await dialog.getByLabel('Role').fill(opts.role);
    if (opts.tier) await dialog.getByLabel('Tier').selectOption(opts.tier);
    let i = 0;
    for (const [k, v] of Object.entries(opts.secrets ?? {})) {
      await dialog.getByRole('button', { name: 'Add secret' }).click();
      await page.locator(`#create-secret-key-${i}`).fill(k);
      await page.locator(`#create-secret-value-${i}`).fill(v);
      i++;
    }
    await dialog.getByRole('button', { name: 'Create workspace' }).click();
    await dialog.waitFor({ state: 'detached' });
  }

  it('creates a workspace in the dialog and watches it turn ready without reloading', async () => {
    await page.goto(platform.url);
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    await page.locator('.live-live').waitFor();
    // Anything that reloads the page would lose this.
    await page.evaluate(() => ((window as any).__sameDocument = true));

    await createThroughDialog('ui-worker', { role: 'Answers questions about itself', tier: '3', secrets: { EXAMPLE_TOKEN: 'hunter2-secret-value' } });
    const r = row('ui-worker');
    await r.waitFor();
    await r.locator('[data-status="ready"]').waitFor({ timeout: 30_000 });
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);

    const id = await idOf('ui-worker');
    const ws = (await http.call('GET', `/workspaces/${id}`)).body;
    expect(ws).toMatchObject({ name: 'ui-worker', role: 'Answers questions about itself', tier: 3, status: 'ready', backend: 'process' });
    expect(await r.locator('.badge.tier').textContent()).toBe('T3 · 2 GB · 2 CPUs');
    expect(await r.locator('td[data-label="Backend"]').innerText()).toBe('process');
    expect(await r.locator('td[data-label="Region"]').innerText()).toContain('local');
    // Heartbeats (every second here) reach the row as pulses over /ws, with no request for the workspace list.
    const cell = r.locator('td[data-label="Last heartbeat"] time');
    await cell.waitFor();
    const listFetches: string[] = [];
    const onRequest = (req: { url(): string }) => /\/workspaces(\/[^/]+)?(\?|$)/.test(new URL(req.url()).pathname + '?') && listFetches.push(req.url());
    page.on('request', onRequest);
    const first = await cell.getAttribute('datetime');
    await page.waitForFunction(
      ([el, before]) => (el as Element | null)?.getAttribute('datetime') !== before,
      [await cell.elementHandle(), first] as const,
      { timeout: 10_000 },
    );
    page.off('request', onRequest);
    expect(listFetches).toEqual([]);

    // Search and status filter narrow the list.
    await page.getByLabel('Search').fill('no-such-workspace');
    await page.getByText('No workspace matches.').waitFor();
    await page.getByLabel('Search').fill('ui-work');
    await r.waitFor();
    await page.getByLabel('Status').selectOption('paused');
    await r.waitFor({ state: 'detached' });
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('');
    await r.waitFor();
    await page.screenshot({ path: shot('fleet.png') });
  });

  it("shows the API's validation errors next to their fields", async () => {
    // By keyboard: open the dialog, type into the focused name field, submit with Enter.
    await page.getByRole('button', { name: 'New workspace' }).focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'New workspace' });
    await dialog.waitFor();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('create-name');
    await page.keyboard.type('   ');
    await dialog.getByRole('button', { name: 'Add secret' }).click();
    await page.locator('#create-secret-key-0').fill('MOLECULE_OVERRIDE');
    await page.locator('#create-secret-value-0').fill('x');
    await dialog.getByLabel('Region').fill('Not A Region');
    await page.keyboard.press('Enter');

    await page.locator('#create-name-error').waitFor();
    expect(await page.locator('#create-name-error').innerText()).toContain('must not be blank');
    expect(await page.locator('#create-name').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#create-name').getAttribute('aria-describedby')).toBe('create-name-error');
    expect(await page.locator('#create-region-error').innerText()).toContain('must be a region code');
    expect(await page.locator('#create-secrets-error').innerText()).toMatch(/MOLECULE_OVERRIDE.*reserved/);
    // Focus went to the first field in error, and Escape closes the dialog (keyboard use).
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('create-name');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    expect((await http.call('GET', '/workspaces')).body.map((w: any) => w.name)).toEqual(['ui-worker']);
  });

  it('opens the detail view: timeline, agent card, secret names, logs, and a chat answered by the agent', async () => {
    const id = await idOf('ui-worker');
    await row('ui-worker').getByRole('link', { name: 'ui-worker' }).click();
    await page.getByRole('heading', { name: 'ui-worker', level: 1 }).waitFor();
    expect(page.url()).toBe(`${platform.url}/#/workspaces/${id}`);
    expect(await page.title()).toBe('ui-worker · Molecule');

    const timeline = page.getByRole('list', { name: 'Events, newest first' });
    await timeline.getByText('provisioning → ready: agent registered').waitFor();
    await timeline.getByText(/^registered/).waitFor();
    await page.locator('.agent-card').getByText('Answers questions about itself').first().waitFor();
    await page.getByRole('list', { name: 'Secret names' }).getByText('EXAMPLE_TOKEN').waitFor();
    expect(await page.content()).not.toContain('hunter2-secret-value');
    await page.locator('[data-log-state="following"]').waitFor();
    await page.getByLabel('Instance log').getByText(/registered|listening/).first().waitFor();

    await page.getByLabel('Message to the agent').fill('What region are you running in?');
    await page.keyboard.press('Enter');
    const reply = page.locator('.turn-agent').last();
    await reply.locator('.bubble', { hasText: "I'm running in region local." }).waitFor();
    await page.locator('.turn-agent[data-state="done"]').waitFor();
    await page.screenshot({ path: shot('detail.png'), fullPage: true });

    // The proxy sends JSON-RPC errors with HTTP 200: the chat shows the message and the reason from error.data.code.
    const a2a = `**/workspaces/${id}/a2a`;
    await page.route(a2a, (route) =>
      route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({ jsonrpc: '2.0', id: 'x', error: { code: -32031, message: 'the workspace agent is unreachable: ECONNREFUSED', data: { code: 'agent_unreachable', retry_after_s: 5 } } }),
      }),
    );
    try {
      await page.getByLabel('Message to the agent').fill('Are you there?');
      await page.keyboard.press('Enter');
      await page.locator('.turn-agent[data-state="failed"]', { hasText: 'the workspace agent is unreachable: ECONNREFUSED (agent_unreachable)' }).waitFor();
    } finally {
      await page.unroute(a2a);
    }
  });

  it('streams a reply into the chat as the model produces it', async () => {
    await page.getByRole('link', { name: 'Workspaces', exact: true }).first().click();
    await createThroughDialog('ui-streamer', { secrets: { OPENAI_API_KEY: 'sk-ui-test', OPENAI_BASE_URL: model.url, MODEL: 'fake-model' } });
    await row('ui-streamer').locator('[data-status="ready"]').waitFor({ timeout: 30_000 });
    await row('ui-streamer').getByRole('link', { name: 'ui-streamer' }).click();
    await page.getByRole('heading', { name: 'ui-streamer', level: 1 }).waitFor();

    model.holdNextStream();
    const gate = model.gate!;
    await page.getByLabel('Message to the agent').fill('Say something long');
    await page.getByRole('button', { name: 'Send' }).click();
    // The model holds its last chunk: what is on screen now arrived chunk by chunk, before the answer ended.
    const reply = page.locator('.turn-agent').last();
    await reply.locator('.bubble', { hasText: 'Streaming works: this reply arrives' }).waitFor();
    expect(await reply.getAttribute('data-state')).toBe('streaming');
    expect(await reply.innerText()).not.toContain('from the model.');
    gate.release();
    await page.locator('.turn-agent[data-state="done"]', { hasText: 'arrives in several chunks from the model.' }).waitFor();
    expect(model.requests.at(-1)?.authorization).toBe('Bearer sk-ui-test');
  });

  it('restarts, pauses and resumes from the detail view, live', async () => {
    await page.getByRole('link', { name: 'Workspaces', exact: true }).first().click();
    const id = await idOf('ui-worker');
    await row('ui-worker').getByRole('link', { name: 'ui-worker' }).click();
    const actions = page.getByRole('group', { name: 'Workspace actions' });
    await actions.getByRole('button', { name: 'Restart' }).click();
    const timeline = page.getByRole('list', { name: 'Events, newest first' });
    await timeline.getByText('ready → provisioning: restart requested').waitFor();
    await page.locator('.status-line [data-status="ready"]').waitFor({ timeout: 30_000 });
    await waitFor('two registrations on the timeline', async () => (await timeline.getByText(/^registered/).count()) >= 2);
    // The log tail follows the new instance too: both boots are in it.
    await waitFor('both boots in the log tail', async () => ((await page.getByLabel('Instance log').innerText()).match(/agent listening/g) ?? []).length >= 2);

    await actions.getByRole('button', { name: 'Pause' }).click();
    await page.locator('.status-line [data-status="paused"]').waitFor();
    expect((await http.call('GET', `/workspaces/${id}`)).body.status).toBe('paused');
    await actions.getByRole('button', { name: 'Resume' }).click();
    await page.locator('.status-line [data-status="ready"]').waitFor({ timeout: 30_000 });
  });

  it('deletes after confirmation; the workspace leaves the fleet and answers 410', async () => {
    const id = page.url().split('/').pop()!;
    expect((await http.call('GET', `/workspaces/${id}`)).body.name).toBe('ui-worker');
    const actions = page.getByRole('group', { name: 'Workspace actions' });
    await actions.getByRole('button', { name: 'Delete' }).click();
    const confirm = page.getByRole('dialog', { name: 'Delete ui-worker?' });
    await confirm.waitFor();
    // The safe choice has the focus: Enter on an unexpected dialog does not delete anything.
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel');
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    await confirm.waitFor({ state: 'detached' });
    expect((await http.call('GET', `/workspaces/${id}`)).status).toBe(200);

    await actions.getByRole('button', { name: 'Delete' }).click();
    await confirm.getByRole('button', { name: 'Delete workspace' }).click();
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    await row('ui-worker').waitFor({ state: 'detached', timeout: 30_000 });
    await waitFor('410', async () => (await http.call('GET', `/workspaces/${id}`)).status === 410);
    await row('ui-streamer').waitFor();
  });

  it('shows a workspace that keeps dying as failed, in red with the reason, and retries it', async () => {
    await row('ui-streamer').getByRole('link', { name: 'ui-streamer' }).click();
    await page.getByRole('heading', { name: 'ui-streamer', level: 1 }).waitFor();
    const id = page.url().split('/').pop()!;
    const pidOf = async () => (await http.call('GET', `/workspaces/${id}`)).body.instance?.pid as number;
    const first = await pidOf();
    process.kill(first, 'SIGKILL');
    await page.getByRole('list', { name: 'Events, newest first' }).getByText(/^ready → offline: /).waitFor();
    await waitReady(http, id, { what: 'restarted automatically', until: async () => (await pidOf()) !== first });
    process.kill(await pidOf(), 'SIGKILL');

    const badge = page.locator('.status-line [data-status="failed"]');
    await badge.waitFor();
    expect(await page.locator('.status-line .reason').innerText()).toMatch(/^crash loop: the agent stopped 2 times/);
    expect(await badge.evaluate((el) => getComputedStyle(el).color)).toBe('rgb(180, 35, 24)');
    const actions = page.getByRole('group', { name: 'Workspace actions' });
    expect(await actions.getByRole('button', { name: 'Restart' }).count()).toBe(0);
    await actions.getByRole('button', { name: 'Retry' }).click();
    await page.locator('.status-line [data-status="ready"]').waitFor({ timeout: 30_000 });
    await page.getByRole('link', { name: 'Workspaces', exact: true }).first().click();
  });

  it('works on a narrow screen and in dark mode', async () => {
    const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
    try {
      const p = await narrow.newPage();
      await p.goto(platform.url);
      await p.locator('tr[data-workspace-id] [data-status="ready"]').first().waitFor();
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow).toBeLessThanOrEqual(0);
      const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor || getComputedStyle(document.documentElement).backgroundColor);
      const dark = await p.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches);
      expect(dark).toBe(true);
      expect(bg).not.toBe('rgb(246, 247, 249)');
      await p.screenshot({ path: shot('fleet-narrow-dark.png'), fullPage: true });
    } finally {
      await narrow.close();
    }
  });

  it('shows global secrets by name and platform info in settings', async () => {
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByRole('heading', { name: 'Settings' }).waitFor();
    await page.locator('[data-backend="process"]').waitFor();
    // The cluster card: one replica (SQLite), this one, and it leads.
    const me = (await http.call('GET', '/healthz')).body.cluster.this as string;
    const row = page.getByRole('table', { name: 'Replicas' }).locator(`[data-replica="${me}"]`);
    await row.waitFor();
    expect(await row.textContent()).toMatch(/this.*leader/);
    expect(await page.getByRole('table', { name: 'Replicas' }).locator('tbody tr').count()).toBe(1);
    await page.getByLabel('Name').fill('SHARED_KEY');
    await page.getByLabel('Value').fill('shared-secret-value');
    await page.getByRole('button', { name: 'Set secret' }).click();
    await page.getByRole('list', { name: 'Secret names' }).getByText('SHARED_KEY').waitFor();
    await page.screenshot({ path: shot('settings.png'), fullPage: true });
    expect(await page.content()).not.toContain('shared-secret-value');
    expect((await http.call('GET', '/settings/secrets')).body.map((s: any) => s.key)).toEqual(['SHARED_KEY']);
    await page.getByRole('button', { name: 'Delete secret SHARED_KEY' }).click();
    await page.getByText('No secrets.').waitFor();
    expect(pageErrors).toEqual([]);
  });
});

describe.skipIf(!hasBrowser)('web UI sign-in with an admin token', () => {
  const dataDir = tempDir('ui-auth');
  const token = 'ui-admin-token-0123456789';
  let platform: PlatformProcess;
  let browser: Browser;

  beforeAll(async () => {
    [platform, browser] = await Promise.all([launchPlatform({ dataDir, env: { MOLECULE_ADMIN_TOKEN: token } }), launchChromium()]);
  });
  afterAll(async () => {
    await browser?.close();
    await platform?.stop();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('asks for the token, refuses a wrong one, then uses the right one for the API and /ws', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(platform.url);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Admin token').fill('wrong-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('The platform refused that token.').waitFor();

    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Workspaces' }).waitFor();
    await page.locator('.live-live').waitFor();

    // A workspace created behind the UI's back shows up over the (token-authenticated) WebSocket.
    const http = api(platform.url, token);
    const created = await http.call('POST', '/workspaces', { name: 'made-by-curl' });
    expect(created.status).toBe(201);
    await page.locator(`tr[data-workspace-id="${created.body.id}"] [data-status="ready"]`).waitFor({ timeout: 30_000 });

    // The token lives in this tab's sessionStorage; signing out forgets it.
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await context.close();
    await http.call('DELETE', `/workspaces/${created.body.id}`);
    await waitFor('removed', async () => (await http.call('GET', `/workspaces/${created.body.id}`)).status === 410);
  });
});
