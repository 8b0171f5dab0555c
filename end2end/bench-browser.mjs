// Browser-side figures for the bench: what a first visit downloads as served (every
// file, compressed as the server sends it, headers included), the server-rendered
// page's time to first byte, and how long until the name prompt can be used in
// headless Chromium, on loopback and on an emulated slow 4G line. Prints one JSON
// object.
import { chromium } from '@playwright/test';

const [url] = process.argv.slice(2);

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

// Chrome DevTools' "Slow 4G" preset as the issue measured it: 1.6 Mbps down,
// 750 kbps up, 150 ms round trip.
const SLOW_4G = {
  offline: false,
  latency: 150,
  downloadThroughput: (1.6 * 1024 * 1024) / 8,
  uploadThroughput: (750 * 1024) / 8,
};

/// One first visit in a fresh profile: until the name prompt works (the page has
/// hydrated), then until the service worker has stored the shell, which a first
/// visit also pays for. Returns the time to the prompt and the bytes by file.
async function firstVisit(throttle) {
  const context = await browser.newContext();
  const page = await context.newPage();
  if (throttle) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', throttle);
  }
  const files = new Map();
  const pending = [];
  context.on('requestfinished', (request) => {
    pending.push(
      request.sizes().then(({ responseBodySize, responseHeadersSize }) => {
        const key = new URL(request.url()).pathname;
        files.set(key, (files.get(key) ?? 0) + responseBodySize + responseHeadersSize);
      }),
    );
  });
  const started = performance.now();
  await page.goto(url);
  await page.getByTestId('name-input').waitFor();
  const promptMs = performance.now() - started;
  // The worker precaches the shell once it activates; wait for that to be counted.
  await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    for (let i = 0; i < 100 && (await caches.keys()).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return registration.active?.state;
  });
  await page.waitForTimeout(300);
  await Promise.all(pending);
  await context.close();
  return { promptMs, files };
}

const loopback = [];
let files;
for (let i = 0; i < 5; i++) {
  const visit = await firstVisit(null);
  loopback.push(visit.promptMs);
  files = visit.files;
}
const slow = [];
for (let i = 0; i < 3; i++) slow.push((await firstVisit(SLOW_4G)).promptMs);
await browser.close();

const isClient = (file) => file.startsWith('/pkg/') && (file.endsWith('.wasm') || file.endsWith('.js'));
const sum = (entries) => entries.reduce((total, [, bytes]) => total + bytes, 0);
const entries = [...files.entries()];
console.log(JSON.stringify({
  system: 'hearth',
  scenario: 'browser',
  first_visit_bytes: sum(entries),
  client_bytes: sum(entries.filter(([file]) => isClient(file))),
  first_visit_files: Object.fromEntries(entries.sort(([, a], [, b]) => b - a)),
  ssr_ttfb_ms: Number(median(ttfb).toFixed(2)),
  hydrated_interactive_ms: Number(median(loopback).toFixed(1)),
  slow_4g_interactive_ms: Number(median(slow).toFixed(0)),
}));
