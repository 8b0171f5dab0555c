import { expect, test } from '@playwright/test';
import { createRoom, messageTexts, openApp, openRoom, person, send, uniqueName, uniqueRoom } from './helpers';
import { ControlledServer } from './server';

// Reconnection backs off up to 15 s, so delivery after a restart may take a while.
const AFTER_RESTART = { timeout: 25_000 };

test('a message sent while the server is down waits, survives a closed tab, and arrives once', async ({ browser }) => {
  test.setTimeout(90_000);
  const server = new ControlledServer(3102);
  await server.start();
  try {
    const ada = await person(browser, 'Ada', server.url);
    const bob = await person(browser, 'Bob', server.url);
    const room = uniqueRoom('Durable');
    await createRoom(ada.page, room);
    await openRoom(bob.page, room);
    await send(ada.page, 'before the crash');
    await expect(messageTexts(bob.page)).toHaveText(['before the crash']);

    await server.kill();
    await expect(ada.page.getByTestId('connection-status')).toHaveAttribute('data-state', 'reconnecting');
    await send(ada.page, 'sent while down');
    const pending = ada.page.getByTestId('pending-message');
    await expect(pending).toHaveCount(1);
    await expect(pending.getByTestId('pending-state')).toHaveText('waiting for the connection…');
    await expect(messageTexts(ada.page)).toHaveText(['before the crash']);

    // The tab is closed before the server comes back: the outbox keeps the message.
    await ada.page.close();
    await server.start();
    const page = await ada.context.newPage();
    await openApp(page);
    await expect(page.getByTestId('room-title')).toContainText(room);
    await expect(messageTexts(page)).toHaveText(['before the crash', 'sent while down'], AFTER_RESTART);
    await expect(page.getByTestId('pending-message')).toHaveCount(0);

    // Bob, who stayed, resumes and sees it exactly once.
    await expect(bob.page.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected', AFTER_RESTART);
    await expect(messageTexts(bob.page)).toHaveText(['before the crash', 'sent while down'], AFTER_RESTART);

    // Another crash: what was acknowledged is still there, with the same numbers.
    const seqs = await page.getByTestId('message').evaluateAll((els) => els.map((e) => e.getAttribute('data-seq')));
    await server.kill();
    await server.start();
    await bob.page.reload();
    await expect(bob.page.getByTestId('room-title')).toContainText(room);
    await expect(messageTexts(bob.page)).toHaveText(['before the crash', 'sent while down']);
    expect(await bob.page.getByTestId('message').evaluateAll((els) => els.map((e) => e.getAttribute('data-seq')))).toEqual(seqs);
    await ada.context.close();
    await bob.context.close();
  } finally {
    await server.kill();
  }
});

test('a name held by one browser cannot be taken by another', async ({ browser }) => {
  const ada = await person(browser, 'Ada Holder');
  const otherSpelling = ada.name.toUpperCase();
  const other = await browser.newContext();
  const page = await other.newPage();
  await openApp(page);
  await page.getByTestId('name-input').fill(otherSpelling);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('error-banner')).toContainText('taken by someone else');
  await expect(page.getByTestId('current-name')).toHaveCount(0);

  // Ada gives the name up by changing hers; then it is free.
  await ada.page.getByTestId('change-name').click();
  const renamed = uniqueName('Ada Renamed');
  await ada.page.getByTestId('name-input').fill(renamed);
  await ada.page.getByTestId('name-submit').click();
  await expect(ada.page.getByTestId('current-name')).toHaveText(renamed);
  await expect(async () => {
    await page.getByTestId('name-submit').click();
    await expect(page.getByTestId('current-name')).toHaveText(otherSpelling, { timeout: 1_000 });
  }).toPass({ timeout: 10_000 });
  await ada.context.close();
  await other.close();
});
