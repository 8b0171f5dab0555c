import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';

let people = 0;

/**
 * A display name no other test uses: names are owned, so two tests cannot both be
 * "Ada". The base comes first, so names still sort by it.
 */
export function uniqueName(base: string): string {
  people += 1;
  return `${base} ${Date.now().toString(36).slice(-3)}${people}`;
}

/** A channel name no other test uses. */
export function uniqueRoom(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
}

/**
 * Opens the app and waits for hydration: the name prompt and the current name only
 * appear once the WASM client has read localStorage.
 */
export async function openApp(page: Page): Promise<void> {
  await page.goto('/');
  await expect(page.getByTestId('name-input').or(page.getByTestId('current-name'))).toBeVisible();
}

/**
 * A person in a fresh browser profile who has picked a name (`base` made unique, or
 * `exactName`) and is connected.
 */
export async function person(
  browser: Browser,
  base: string,
  baseURL?: string,
  exactName?: string,
): Promise<{ context: BrowserContext; page: Page; name: string }> {
  const name = exactName ?? uniqueName(base);
  const context = await browser.newContext(baseURL ? { baseURL } : {});
  const page = await context.newPage();
  await openApp(page);
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('current-name')).toHaveText(name);
  await expect(page.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected');
  return { context, page, name };
}

export async function createRoom(page: Page, room: string): Promise<void> {
  await page.getByTestId('new-room-input').fill(room);
  await page.getByTestId('new-room-submit').click();
  await expect(page.getByTestId('room-title')).toContainText(room);
}

export async function openRoom(page: Page, room: string): Promise<void> {
  await page.locator(`[data-testid="room-item"][data-room="${room}"]`).click();
  await expect(page.getByTestId('room-title')).toContainText(room);
}

export async function send(page: Page, text: string): Promise<void> {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
}

/** The texts of the messages shown, oldest first. */
export function messageTexts(page: Page) {
  return page.getByTestId('message').getByTestId('message-text');
}
