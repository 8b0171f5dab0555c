import AxeBuilder from '@axe-core/playwright';
import { expect, test, type Page } from '@playwright/test';
import { SMALL_URL } from '../playwright.config';
import { createRoom, openApp, person, send, uniqueRoom } from './helpers';

/** Every rule axe-core has, on the whole page: no violation of any. */
async function expectAccessible(page: Page, state: string): Promise<void> {
  const { violations } = await new AxeBuilder({ page }).analyze();
  const found = violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(' ')).join('\n    ')}`,
  );
  expect(found, `axe-core on ${state}`).toEqual([]);
}

for (const colorScheme of ['light', 'dark'] as const) {
  test(`every state a person meets is accessible (${colorScheme})`, async ({ browser }) => {
    const context = await browser.newContext({ colorScheme });
    const page = await context.newPage();
    await openApp(page);
    await expectAccessible(page, `the first visit (${colorScheme})`);

    await page.getByTestId('name-input').fill('   ');
    await page.getByTestId('name-submit').click();
    await expect(page.getByTestId('error-banner')).toBeVisible();
    await expectAccessible(page, `an error (${colorScheme})`);
    await context.close();

    const ada = await person(browser, 'Ada', SMALL_URL);
    await ada.page.emulateMedia({ colorScheme });
    const room = uniqueRoom('Seen');
    await createRoom(ada.page, room);
    await send(ada.page, 'Hello, everyone');
    await expect(ada.page.getByTestId('message')).toHaveCount(1);
    await expectAccessible(ada.page, `the chat (${colorScheme})`);

    // A full room: its refusal and the page around it.
    const bob = await person(browser, 'Bob', SMALL_URL);
    await bob.page.locator(`[data-testid="room-item"][data-room="${room}"]`).click();
    const cleo = await person(browser, 'Cleo', SMALL_URL);
    await cleo.page.emulateMedia({ colorScheme });
    await cleo.page.locator(`[data-testid="room-item"][data-room="${room}"]`).click();
    await expect(cleo.page.getByTestId('error-banner')).toContainText('room is full');
    await expectAccessible(cleo.page, `a full room (${colorScheme})`);

    // A phone: the channel list is a drawer, closed and open.
    await ada.page.setViewportSize({ width: 390, height: 844 });
    await expectAccessible(ada.page, `a phone (${colorScheme})`);
    // Nothing is cut off at the side: the page is no wider than the screen.
    expect(await ada.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await ada.page.getByRole('button', { name: 'Channels' }).click();
    await expectAccessible(ada.page, `a phone with the channels open (${colorScheme})`);
    for (const p of [ada, bob, cleo]) await p.context.close();
  });
}

test('the keyboard reaches everything: Alt+arrows between channels, Esc closes what is open', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const first = uniqueRoom('Keys');
  const second = uniqueRoom('Keys');
  await createRoom(ada.page, first);
  await createRoom(ada.page, second);
  const names = await ada.page.getByTestId('room-item').evaluateAll((items) =>
    items.map((item) => item.getAttribute('data-room')),
  );
  const at = names.indexOf(second);
  await ada.page.keyboard.press('Alt+ArrowUp');
  await expect(ada.page.getByTestId('room-title')).toContainText(names[at - 1] as string);
  await ada.page.keyboard.press('Alt+ArrowDown');
  await expect(ada.page.getByTestId('room-title')).toContainText(second);

  // Tab reaches the composer, and what has focus shows it.
  await ada.page.getByTestId('composer-input').focus();
  await ada.page.keyboard.press('Shift+Tab');
  const outline = await ada.page.evaluate(() => getComputedStyle(document.activeElement as Element).outlineStyle);
  expect(outline).not.toBe('none');

  // Esc: the error banner, a name prompt opened by "Change", the drawer on a phone.
  await ada.page.getByTestId('composer-input').fill('x'.repeat(2001));
  await ada.page.getByTestId('composer-input').press('Enter');
  await expect(ada.page.getByTestId('error-banner')).toBeVisible();
  await ada.page.keyboard.press('Escape');
  await expect(ada.page.getByTestId('error-banner')).toBeHidden();
  await ada.page.getByRole('button', { name: 'Change' }).click();
  await expect(ada.page.getByTestId('name-input')).toBeVisible();
  await ada.page.keyboard.press('Escape');
  await expect(ada.page.getByTestId('current-name')).toHaveText(ada.name);
  await ada.page.setViewportSize({ width: 390, height: 844 });
  const toggle = ada.page.getByRole('button', { name: 'Channels' });
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await ada.page.keyboard.press('Escape');
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await ada.context.close();
});

test('a screen reader hears messages as they arrive, not the history a room opens with', async ({ browser }) => {
  const ada = await person(browser, 'Ada');
  const bob = await person(browser, 'Bob');
  const room = uniqueRoom('Heard');
  await createRoom(ada.page, room);
  await send(ada.page, 'said before Bob came');
  await bob.page.locator(`[data-testid="room-item"][data-room="${room}"]`).click();
  await expect(bob.page.getByTestId('message')).toHaveCount(1);
  const announcer = bob.page.getByTestId('announcer');
  await expect(announcer).toHaveAttribute('aria-live', 'polite');
  await expect(announcer).toHaveText('');
  await expect(bob.page.getByTestId('message-list')).not.toHaveAttribute('aria-live', /.*/);
  await send(ada.page, 'welcome, Bob');
  await expect(announcer).toHaveText(`${ada.name}: welcome, Bob`);
  // Bob's own words are not read back to him.
  await send(bob.page, 'thanks');
  await expect(bob.page.getByTestId('message')).toHaveCount(3);
  await expect(announcer).toHaveText(`${ada.name}: welcome, Bob`);
  await ada.context.close();
  await bob.context.close();
});
