import { expect, test } from '@playwright/test';
import { SMALL_URL } from '../playwright.config';
import { createRoom, messageTexts, openApp, openRoom, person, send, uniqueName, uniqueRoom } from './helpers';

test('a first visit asks for a name, which is checked, remembered and changeable', async ({ page }) => {
  await openApp(page);
  await expect(page.getByTestId('name-input')).toBeVisible();

  await page.getByTestId('name-input').fill('   ');
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('error-banner')).toContainText('Please enter a display name');

  await page.getByTestId('name-input').fill('x'.repeat(33));
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('error-banner')).toContainText('at most 32 characters');

  const name = uniqueName('Ada');
  await page.getByTestId('name-input').fill(`  ${name}  `);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('current-name')).toHaveText(name);
  await expect(page.getByTestId('error-banner')).toBeHidden();
  await expect(page.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected');
  await expect(page.getByTestId('connection-status')).toContainText('Connected');

  // A new tab in the same browser knows the name and does not ask again.
  const tab = await page.context().newPage();
  await openApp(tab);
  await expect(tab.getByTestId('current-name')).toHaveText(name);
  await expect(tab.getByTestId('name-input')).toHaveCount(0);

  await page.getByTestId('change-name').click();
  const renamed = uniqueName('Ada L');
  await page.getByTestId('name-input').fill(renamed);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('current-name')).toHaveText(renamed);
  // The other tab does not go on as the old name, which is now free for anyone.
  await expect(tab.getByTestId('current-name')).toHaveText(renamed);
  await expect(tab.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected');
  await page.reload();
  await expect(page.getByTestId('current-name')).toHaveText(renamed);
});

test('channels are created, refused when they clash, and appear live for everyone', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const bob = await person(browser, 'Bob');
  const room = uniqueRoom('Design');

  await createRoom(ada.page, room);
  // Bob's list updates without a reload.
  await expect(bob.page.locator(`[data-testid="room-item"][data-room="${room}"]`)).toBeVisible();

  // Same name, other case and spacing: refused, and said so.
  await bob.page.getByTestId('new-room-input').fill(`  ${room.toUpperCase()} `);
  await bob.page.getByTestId('new-room-submit').click();
  await expect(bob.page.getByTestId('error-banner')).toContainText('already exists');
  await expect(bob.page.locator(`[data-testid="room-item"]`)).toHaveCount(
    await ada.page.locator('[data-testid="room-item"]').count(),
  );

  await bob.page.getByTestId('new-room-input').fill('no <tags> here');
  await bob.page.getByTestId('new-room-submit').click();
  await expect(bob.page.getByTestId('error-banner')).toContainText('letters, digits');

  // A name that only looks the same (fullwidth letters and digits) is refused too,
  // naming the channel it would pass for.
  const fullwidth = room.replace(/[A-Za-z0-9]/g, (c) =>
    String.fromCharCode(c.charCodeAt(0) + 0xfee0),
  );
  await bob.page.getByTestId('new-room-input').fill(fullwidth);
  await bob.page.getByTestId('new-room-submit').click();
  await expect(bob.page.getByTestId('error-banner')).toContainText(
    `A channel named “${room}” already exists.`,
  );
  await expect(bob.page.locator(`[data-testid="room-item"]`)).toHaveCount(
    await ada.page.locator('[data-testid="room-item"]').count(),
  );

  await openRoom(bob.page, room);
  await expect(bob.page.getByTestId('room-title')).toContainText(room);
  await ada.context.close();
  await bob.context.close();
});

test('messages arrive live with name and time, and history shows on opening', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const bob = await person(browser, 'Bob');
  const room = uniqueRoom('Talk');
  await createRoom(ada.page, room);
  await openRoom(bob.page, room);

  // Shift+Enter makes a new line; Enter sends.
  const input = ada.page.getByTestId('composer-input');
  await input.fill('hello');
  await input.press('Shift+Enter');
  await input.pressSequentially('world');
  await input.press('Enter');
  await expect(input).toHaveValue('');

  const received = bob.page.getByTestId('message').last();
  await expect(received.getByTestId('message-text')).toHaveText('hello\nworld');
  await expect(received.getByTestId('message-author')).toHaveText(ada.name);
  await expect(received.getByTestId('message-time')).toHaveText(/\d{1,2}:\d{2}/);
  // The full date is on hover, and the machine-readable time is within a minute of now.
  await expect(received.getByTestId('message-time')).toHaveAttribute('title', /\d{4}/);
  const when = Date.parse((await received.getByTestId('message-time').getAttribute('datetime')) ?? '');
  expect(Math.abs(Date.now() - when)).toBeLessThan(60_000);

  await send(bob.page, 'hi Ada');
  await expect(messageTexts(ada.page)).toHaveText(['hello\nworld', 'hi Ada']);
  await expect(ada.page.getByTestId('message').last().getByTestId('message-author')).toHaveText(bob.name);

  // Blank messages are not sent.
  await input.fill('   ');
  await input.press('Enter');
  await ada.page.getByTestId('composer-send').click({ force: true });
  await expect(messageTexts(bob.page)).toHaveCount(2);

  // Too long: a clear error, and the draft is kept.
  await input.fill('y'.repeat(2001));
  await input.press('Enter');
  await expect(ada.page.getByTestId('error-banner')).toContainText('at most 2000 characters');
  await expect(input).toHaveValue('y'.repeat(2001));
  await expect(messageTexts(bob.page)).toHaveCount(2);

  // Someone arriving later sees what was said, oldest first.
  const cleo = await person(browser, 'Cleo');
  await openRoom(cleo.page, room);
  await expect(messageTexts(cleo.page)).toHaveText(['hello\nworld', 'hi Ada']);
  const seqs = await cleo.page.getByTestId('message').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));
  expect(seqs).toEqual([1, 2]);
  for (const p of [ada, bob, cleo]) await p.context.close();
});

test('switching rooms shows each room its own messages, whose numbers overlap', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const first = uniqueRoom('One');
  const second = uniqueRoom('Two');
  await createRoom(ada.page, first);
  for (const text of ['one a', 'one b', 'one c']) await send(ada.page, text);
  await expect(messageTexts(ada.page)).toHaveText(['one a', 'one b', 'one c']);
  await createRoom(ada.page, second);
  for (const text of ['two a', 'two b']) await send(ada.page, text);
  await expect(messageTexts(ada.page)).toHaveText(['two a', 'two b']);
  await openRoom(ada.page, first);
  await expect(messageTexts(ada.page)).toHaveText(['one a', 'one b', 'one c']);
  await openRoom(ada.page, second);
  await expect(ada.page.getByTestId('room-title')).toContainText(second);
  await expect(messageTexts(ada.page)).toHaveText(['two a', 'two b']);
  await ada.context.close();
});

test('the browser remembers the name and the channel across a restart', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const room = uniqueRoom('Home');
  await createRoom(ada.page, room);
  await send(ada.page, 'before the restart');
  await expect(messageTexts(ada.page)).toHaveText(['before the restart']);

  await ada.page.reload();
  await expect(ada.page.getByTestId('room-title')).toContainText(room);

  // Closing the browser and coming back: a new browser context from the saved storage.
  const saved = await ada.context.storageState();
  await ada.context.close();
  const context = await browser.newContext({ storageState: saved });
  const page = await context.newPage();
  const frames: string[] = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => frames.push(`sent ${JSON.parse(String(f.payload)).type}`));
    ws.on('framereceived', (f) => frames.push(`received ${JSON.parse(String(f.payload)).type}`));
  });
  await openApp(page);
  await expect(page.getByTestId('current-name')).toHaveText(ada.name);
  await expect(page.getByTestId('name-input')).toHaveCount(0);
  await expect(page.getByTestId('room-title')).toContainText(room);
  await expect(messageTexts(page)).toHaveText(['before the restart']);
  // The remembered channel is joined right behind the hello, a round trip sooner
  // than after the welcome, and only once.
  expect(frames.slice(0, 4)).toEqual(['sent hello', 'sent join', 'received welcome', 'received joined']);
  expect(frames.filter((f) => f === 'sent join')).toHaveLength(1);
  await context.close();
});

test('the online list follows people in and out of the room', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const bob = await person(browser, 'Bob');
  const room = uniqueRoom('Lounge');
  await createRoom(ada.page, room);
  const online = ada.page.getByTestId('presence-item');
  await expect(online).toHaveText([ada.name]);

  await openRoom(bob.page, room);
  await expect(online).toHaveText([ada.name, bob.name]);
  await expect(bob.page.getByTestId('presence-item')).toHaveText([ada.name, bob.name]);

  // Leaving for another room.
  await openRoom(bob.page, 'General');
  await expect(online).toHaveText([ada.name]);

  // A second tab of the same person counts once, and closing the tab leaves.
  await openRoom(bob.page, room);
  await expect(online).toHaveText([ada.name, bob.name]);
  const secondTab = await bob.context.newPage();
  await openApp(secondTab);
  await expect(secondTab.getByTestId('room-title')).toContainText(room);
  await expect(online).toHaveText([ada.name, bob.name]);
  await bob.page.close();
  await secondTab.close();
  await expect(online).toHaveText([ada.name]);
  await ada.context.close();
  await bob.context.close();
});

test('a full room refuses the next person clearly, who can pick another room', async ({ browser }) => {
  const room = uniqueRoom('Tiny');
  const ada = await person(browser, 'Ada', SMALL_URL);
  await createRoom(ada.page, room);
  const bob = await person(browser, 'Bob', SMALL_URL);
  await openRoom(bob.page, room);
  await expect(ada.page.getByTestId('presence-item')).toHaveText([ada.name, bob.name]);

  const cleo = await person(browser, 'Cleo', SMALL_URL);
  await cleo.page.locator(`[data-testid="room-item"][data-room="${room}"]`).click();
  await expect(cleo.page.getByTestId('error-banner')).toContainText('room is full');
  await expect(cleo.page.getByTestId('room-title')).not.toContainText(room);
  await expect(ada.page.getByTestId('presence-item')).toHaveText([ada.name, bob.name]);

  // Once someone leaves there is room again.
  await bob.context.close();
  await expect(ada.page.getByTestId('presence-item')).toHaveText([ada.name]);
  await openRoom(cleo.page, room);
  await expect(cleo.page.getByTestId('error-banner')).toBeHidden();
  await expect(cleo.page.getByTestId('presence-item')).toHaveText([ada.name, cleo.name]);
  await ada.context.close();
  await cleo.context.close();
});

test('markup and odd characters are shown as text and do nothing', async ({ browser }) => {
  const evilName = '<img src=x onerror=__pwned=1>';
  const evil = await person(browser, 'Evil', undefined, evilName);
  const reader = await person(browser, 'Reader');
  const room = uniqueRoom('Safe');
  await createRoom(evil.page, room);
  await openRoom(reader.page, room);

  const payload = '<script>window.__pwned=1</script><b>bold</b> <a href="javascript:window.__pwned=1">x</a> \u202Eevil';
  await send(evil.page, payload);
  const shown = reader.page.getByTestId('message').last();
  await expect(shown.getByTestId('message-text')).toHaveText(payload);
  await expect(shown.getByTestId('message-author')).toHaveText(evilName);
  await expect(shown.locator('script, b, a, img')).toHaveCount(0);
  await expect(reader.page.getByTestId('presence-item')).toContainText([evilName, reader.name]);
  await expect(reader.page.locator('img[src="x"]')).toHaveCount(0);
  expect(await reader.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  expect(await evil.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();

  // Invisible characters cannot be used to pass for someone else.
  await reader.page.getByTestId('change-name').click();
  await reader.page.getByTestId('name-input').fill('Read\u200Ber');
  await reader.page.getByTestId('name-submit').click();
  await expect(reader.page.getByTestId('error-banner')).toContainText('invisible');
  await evil.context.close();
  await reader.context.close();
});

test('a crowded room lists its first hundred people and counts everyone', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const room = uniqueRoom('Crowd');
  await createRoom(ada.page, room);
  // 104 more people join over plain WebSockets from a page of their own.
  const crowd = await browser.newPage();
  await crowd.goto('/');
  await crowd.evaluate(
    async ({ room, prefix, count }) => {
      const sockets: WebSocket[] = [];
      for (let i = 0; i < count; i++) {
        const body = new URLSearchParams({ name: `${prefix} ${String(i).padStart(3, '0')}` });
        const grant = await (await fetch('/api/claim_name', { method: 'POST', body })).json();
        const socket = new WebSocket(`ws://${location.host}/ws`);
        await new Promise((resolve, reject) => {
          socket.onopen = resolve;
          socket.onerror = reject;
        });
        socket.send(JSON.stringify({ type: 'hello', name: grant.name, token: grant.token }));
        socket.send(JSON.stringify({ type: 'join', channel: room }));
        sockets.push(socket);
      }
      (window as unknown as { crowd: WebSocket[] }).crowd = sockets;
    },
    { room, prefix: uniqueName('Crowd'), count: 104 },
  );
  await expect(ada.page.getByTestId('presence-count')).toHaveText('105');
  await expect(ada.page.getByTestId('presence-item')).toHaveCount(100);
  await expect(ada.page.getByTestId('presence-item').first()).toHaveText(ada.name);
  await expect(ada.page.getByTestId('presence-more')).toHaveText('and 5 more');

  // When they all leave, Ada is alone on the list again.
  await crowd.close();
  await expect(ada.page.getByTestId('presence-count')).toHaveText('1');
  await expect(ada.page.getByTestId('presence-more')).toHaveCount(0);
  await expect(ada.page.getByTestId('presence-item')).toHaveText([ada.name]);
  await ada.context.close();
});
