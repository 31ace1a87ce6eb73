import fs from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFlySim, type FlySim } from '../../tools/fly-sim/index.js';
import { FLY_REGIONS } from '../../src/backends/flyio/limits.js';
import { api, launchPlatform, tempDir, waitFor, type PlatformProcess } from '../support/harness.js';
import { hasBrowser, launchChromium, shot } from './browser.js';

/** On the flyio backend (the Machines API simulator in place of Fly), the create dialog offers Fly's regions. */
describe.skipIf(!hasBrowser)('web UI on the flyio backend', () => {
  const dataDir = tempDir('ui-flyio');
  let sim: FlySim;
  let platform: PlatformProcess;
  let browser: Browser;

  beforeAll(async () => {
    sim = await startFlySim({});
    [platform, browser] = await Promise.all([
      launchPlatform({
        dataDir,
        env: { CONTAINER_BACKEND: 'flyio', FLY_WORKSPACE_APP: 'ui-workspaces', ...sim.env, FLY_REGION: 'ord' },
      }),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await platform?.stop();
    await sim?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('picks a Fly region in the create dialog; the machine runs there and the agent says so', async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    await page.goto(platform.url);
    await page.getByRole('button', { name: 'New workspace' }).click();
    const region = page.getByRole('dialog', { name: 'New workspace' }).getByLabel('Region');
    const options = await region.locator('option').evaluateAll((os) => os.map((o) => [(o as HTMLOptionElement).value, o.textContent]));
    expect(options[0]).toEqual(['', 'Default (ord)']);
    expect(options.slice(1).map(([v]) => v)).toEqual(Object.keys(FLY_REGIONS));
    expect(options).toContainEqual(['iad', 'iad — Ashburn VA']);

    await page.locator('#create-name').fill('fly-ui');
    await region.selectOption('iad');
    await page.getByRole('button', { name: 'Create workspace' }).click();
    const row = page.locator('tr[data-workspace-id]', { hasText: 'fly-ui' });
    await row.locator('[data-status="ready"]').waitFor({ timeout: 60_000 });
    expect(await row.locator('td[data-label="Backend"]').innerText()).toBe('flyio');
    expect(await row.locator('td[data-label="Region"]').innerText()).toBe('iad');
    const id = (await row.getAttribute('data-workspace-id'))!;
    expect(sim.machines('ui-workspaces').find((m) => m.metadata.molecule_workspace_id === id)?.region).toBe('iad');

    await row.getByRole('link', { name: 'fly-ui' }).click();
    await page.getByLabel('Message to the agent').fill('What region are you running in?');
    await page.keyboard.press('Enter');
    await page.locator('.turn-agent[data-state="done"]', { hasText: 'iad' }).waitFor();
    await page.screenshot({ path: shot('detail-flyio.png'), fullPage: true });

    const http = api(platform.url);
    await http.call('DELETE', `/workspaces/${id}`);
    await waitFor('removed', async () => (await http.call('GET', `/workspaces/${id}`)).status === 410, 60_000);
  });
});
