import { expect, test } from '@playwright/test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMALL_URL } from '../playwright.config';
import { createRoom, messageTexts, openRoom, person, uniqueRoom } from './helpers';
import { ControlledServer } from './server';

test('sending too fast is explained, and the held-back messages still arrive once, in order', async ({ browser }) => {
  // The small server allows a burst of three messages, then one a second.
  const ada = await person(browser, 'Ada', SMALL_URL);
  const bob = await person(browser, 'Bob', SMALL_URL);
  const room = uniqueRoom('Fast');
  await createRoom(ada.page, room);
  await openRoom(bob.page, room);

  const input = ada.page.getByTestId('composer-input');
  const texts = ['one', 'two', 'three', 'four', 'five'];
  for (const text of texts) {
    await input.fill(text);
    await input.press('Enter');
  }
  await expect(ada.page.getByTestId('error-banner')).toContainText('too fast');
  // Nothing typed is lost: the refused ones wait and go out when allowed.
  await expect(messageTexts(bob.page)).toHaveText(texts, { timeout: 15_000 });
  await expect(messageTexts(ada.page)).toHaveText(texts);
  await expect(ada.page.getByTestId('pending-message')).toHaveCount(0);
  await ada.context.close();
  await bob.context.close();
});

test('invisible and direction-changing characters in messages are shown inertly', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const bob = await person(browser, 'Bob');
  const room = uniqueRoom('Marks');
  await createRoom(ada.page, room);
  await openRoom(bob.page, room);
  // A right-to-left override must not flip the author's name or the page after it.
  const text = 'abc\u202Edcba\u200B <i>not italic</i> javascript:alert(1)';
  await ada.page.getByTestId('composer-input').fill(text);
  await ada.page.getByTestId('composer-input').press('Enter');
  const shown = bob.page.getByTestId('message').last();
  await expect(shown.getByTestId('message-text')).toHaveText(text);
  await expect(shown.locator('i, a')).toHaveCount(0);
  // The text is isolated, so its override cannot reach the author's name.
  expect(await shown.getByTestId('message-text').evaluate((el) => getComputedStyle(el).unicodeBidi)).toBe('plaintext');
  expect(await shown.getByTestId('message-author').evaluate((el) => getComputedStyle(el).unicodeBidi)).toBe('isolate');
  await ada.context.close();
  await bob.context.close();
});

test('a page on another site cannot make a visitor claim a name or create a channel', async ({ browser }) => {
  // The visitor is on a page of another site: another origin (another port), with
  // no policy of Hearth's own to stop what it sends.
  const elsewhere = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!DOCTYPE html><title>Elsewhere</title><p>Win a prize!</p>');
  });
  await new Promise<void>((listening) => elsewhere.listen(0, '127.0.0.1', listening));
  const { port } = elsewhere.address() as AddressInfo;
  const context = await browser.newContext();
  const visitor = { page: await context.newPage(), context };
  await visitor.page.goto(`http://127.0.0.1:${port}/`);
  const name = `Forged ${Date.now().toString(36)}`;
  const target = test.info().project.use.baseURL as string;
  // What a page elsewhere can do: post a form, and fetch without reading the answer.
  const statuses = await visitor.page.evaluate(
    async ({ target, name }) => {
      const form = new URLSearchParams({ name, token: 'forged-token' });
      const fetched = await fetch(`${target}/api/claim_name`, { method: 'POST', body: form, mode: 'no-cors' });
      const frame = document.createElement('iframe');
      frame.name = 'sink';
      document.body.append(frame);
      const posted = document.createElement('form');
      posted.method = 'POST';
      posted.action = `${target}/api/create_channel`;
      posted.target = 'sink';
      for (const [key, value] of Object.entries({ name: 'Forged channel', as_name: name, token: 'forged-token' })) {
        const input = document.createElement('input');
        input.name = key;
        input.value = value;
        posted.append(input);
      }
      document.body.append(posted);
      const loaded = new Promise((resolve) => frame.addEventListener('load', resolve, { once: true }));
      posted.submit();
      await loaded;
      return fetched.type;
    },
    { target, name },
  );
  expect(statuses).toBe('opaque');
  // Neither happened: the name is free for whoever claims it, and no channel appeared.
  const owner = await person(browser, 'Owner', undefined, name);
  await expect(owner.page.locator('[data-testid="room-item"][data-room="Forged channel"]')).toHaveCount(0);
  await owner.context.close();
  await visitor.context.close();
  elsewhere.close();
});

test('refusals of every kind reach the person as words, whatever their status', async ({ browser }) => {
  const server = new ControlledServer(3106, { HEARTH_CHANNELS_PER_HOUR: '1' });
  await server.start();
  try {
    const ada = await person(browser, 'Ada', server.url);
    const answers: number[] = [];
    ada.page.on('response', (r) => {
      if (r.url().includes('/api/create_channel')) answers.push(r.status());
    });
    // A conflict (409): the channel exists. It costs none of the hour's one channel.
    await ada.page.getByTestId('new-room-input').fill('General');
    await ada.page.getByTestId('new-room-submit').click();
    await expect(ada.page.getByTestId('error-banner')).toContainText('A channel named “General” already exists.');
    await createRoom(ada.page, uniqueRoom('first'));
    // Too often (429, with how long to wait): one channel an hour.
    await ada.page.getByTestId('new-room-input').fill(uniqueRoom('second'));
    await ada.page.getByTestId('new-room-submit').click();
    await expect(ada.page.getByTestId('error-banner')).toContainText('You can create 1 channel an hour');
    expect(answers).toEqual([409, 200, 429]);
    await ada.context.close();
  } finally {
    await server.kill();
  }
});
