// Browser-side figures for the bench: the client's download size (WASM + JS, brotli),
// the server-rendered page's time to first byte, and how long until the page is
// hydrated and interactive in headless Chromium. Prints one JSON object.
import { chromium } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { brotliCompressSync, constants } from 'node:zlib';
import path from 'node:path';

const [url, siteRoot] = process.argv.slice(2);
const pkg = path.join(siteRoot, 'pkg');
const brotli = (file) =>
  brotliCompressSync(readFileSync(path.join(pkg, file)), {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
  }).length;
const clientBytes = brotli('hearth.wasm') + brotli('hearth.js');

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ttfb = [];
for (let i = 0; i < 30; i++) {
  const started = performance.now();
  const response = await fetch(url);
  ttfb.push(performance.now() - started);
  await response.text();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const hydrated = [];
for (let i = 0; i < 5; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const started = performance.now();
  await page.goto(url);
  // The name prompt appears only once the WASM client has hydrated the page.
  await page.getByTestId('name-input').waitFor();
  hydrated.push(performance.now() - started);
  await context.close();
}
await browser.close();
console.log(JSON.stringify({
  system: 'hearth',
  scenario: 'browser',
  wasm_js_brotli_bytes: clientBytes,
  ssr_ttfb_ms: Number(median(ttfb).toFixed(2)),
  hydrated_interactive_ms: Number(median(hydrated).toFixed(1)),
}));
