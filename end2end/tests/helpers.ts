import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';

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

/** A person in a fresh browser profile who has picked `name` and is connected. */
export async function person(
  browser: Browser,
  name: string,
  baseURL?: string,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext(baseURL ? { baseURL } : {});
  const page = await context.newPage();
  await openApp(page);
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-submit').click();
  await expect(page.getByTestId('current-name')).toHaveText(name);
  await expect(page.getByTestId('connection-status')).toHaveAttribute('data-state', 'connected');
  return { context, page };
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
