import { chromium, expect, test } from '@playwright/test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openApp, person, send } from './helpers';
import { ControlledServer } from './server';

test('the manifest makes the chat installable, with icons of the sizes it names', async ({ request }) => {
  const manifest = await request.get('/manifest.webmanifest');
  expect(manifest.headers()['content-type']).toContain('application/manifest+json');
  const app = await manifest.json();
  expect(app).toMatchObject({ name: 'Hearth', start_url: '/', display: 'standalone' });
  for (const size of [192, 512]) {
    const icon = app.icons.find((i: { sizes: string }) => i.sizes === `${size}x${size}`);
    expect(icon?.type).toBe('image/png');
    const png = await request.get(icon.src);
    expect(png.headers()['content-type']).toBe('image/png');
    const bytes = await png.body();
    // The PNG's own header says its width and height.
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([size, size]);
  }
  // Chromium's own verdict on the page, its manifest and its service worker, in a
  // profile of its own (an incognito one cannot install anything).
  const profile = mkdtempSync(join(tmpdir(), 'hearth-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    ...test.info().project.use.launchOptions,
    baseURL: test.info().project.use.baseURL,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await openApp(page);
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const cdp = await context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  expect(installabilityErrors).toEqual([]);
  await context.close();
});

test('with the network gone, a returning visitor still sees the page, their name and what waits to be sent', async ({
  browser,
}) => {
  const server = new ControlledServer(3105);
  await server.start();
  const ada = await person(browser, 'Ada', server.url);
  // The service worker keeps the page once it controls it.
  await ada.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await send(ada.page, 'said while online');
  await expect(ada.page.getByTestId('message-text')).toHaveText(['said while online']);

  // The server is gone and so is the network; what is written now waits.
  await server.kill();
  await ada.context.setOffline(true);
  await expect(ada.page.getByTestId('connection-status')).toHaveAttribute('data-state', 'reconnecting');
  await send(ada.page, 'written offline');
  await expect(ada.page.getByTestId('pending-message')).toContainText('written offline');

  // Coming back to the page with no network: the kept page, the name, the outbox.
  const reloaded = await ada.page.reload();
  expect(reloaded?.fromServiceWorker()).toBe(true);
  await expect(ada.page.getByTestId('current-name')).toHaveText(ada.name);
  await expect(ada.page.getByTestId('connection-status')).toHaveAttribute('data-state', /reconnecting|connecting/);
  await expect(ada.page.getByTestId('pending-message')).toHaveCount(1);
  await expect(ada.page.getByTestId('pending-message')).toContainText('written offline');
  // Outside its room, the outbox says where each message goes.
  await expect(ada.page.getByTestId('pending-channel')).toHaveText('to #General');
  await expect(ada.page.getByRole('heading', { name: 'Waiting for the connection' })).toBeVisible();

  // The network and the server return: the page reconnects by itself.
  await server.start();
  await ada.context.setOffline(false);
  await expect(ada.page.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected', {
    timeout: 20_000,
  });
  // And what waited is sent, once.
  await expect(ada.page.getByTestId('message-text')).toHaveText(['said while online', 'written offline']);
  await expect(ada.page.getByTestId('pending-message')).toHaveCount(0);
  await ada.context.close();
  await server.kill();
});
