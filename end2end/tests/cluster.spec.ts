import { expect, test } from '@playwright/test';
import { CLUSTER_A_URL, CLUSTER_B_URL } from '../playwright.config';
import { createRoom, messageTexts, openRoom, person, send, uniqueRoom } from './helpers';

test('two people on two nodes of one cluster chat live and see each other online', async ({ browser }) => {
  const ada = await person(browser, 'Ada', CLUSTER_A_URL);
  const bob = await person(browser, 'Bob', CLUSTER_B_URL);

  // A room made through node A shows up live for Bob on node B.
  const room = uniqueRoom('across');
  await createRoom(ada.page, room);
  await openRoom(bob.page, room);

  // Each sees the other online, though they are connected to different nodes.
  const adaSees = ada.page.getByTestId('presence-item');
  const bobSees = bob.page.getByTestId('presence-item');
  await expect(adaSees.filter({ hasText: bob.name })).toBeVisible({ timeout: 10_000 });
  await expect(bobSees.filter({ hasText: ada.name })).toBeVisible({ timeout: 10_000 });

  await send(ada.page, 'hello from node A');
  await expect(messageTexts(bob.page)).toHaveText(['hello from node A']);
  await send(bob.page, 'and hello from node B');
  await expect(messageTexts(ada.page)).toHaveText(['hello from node A', 'and hello from node B']);
  // One numbering for everyone: both pages show the same sequence numbers.
  const seqs = async (page: typeof ada.page) =>
    page.getByTestId('message').evaluateAll((items) => items.map((m) => m.getAttribute('data-seq')));
  expect(await seqs(ada.page)).toEqual(await seqs(bob.page));

  // Bob leaves; Ada's list shows it.
  await bob.context.close();
  await expect(adaSees.filter({ hasText: bob.name })).toHaveCount(0, { timeout: 10_000 });
  await ada.context.close();
});
