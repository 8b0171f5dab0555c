import { defineConfig, devices } from '@playwright/test';

// Two servers from the release build, each with a fresh store: the main one with
// default limits, and a small one whose rooms hold two people, for the capacity test.
export const MAIN_URL = 'http://127.0.0.1:3100';
export const SMALL_URL = 'http://127.0.0.1:3101';

const server = (port: number, extraEnv: Record<string, string>) => ({
  command: `rm -rf .data/${port} && exec ../target/release/hearth`,
  url: `http://127.0.0.1:${port}/`,
  reuseExistingServer: false,
  timeout: 30_000,
  stdout: 'ignore' as const,
  stderr: 'pipe' as const,
  env: {
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    LEPTOS_SITE_ROOT: '../target/site',
    HEARTH_CONFIG: '/nonexistent/Leptos.toml',
    HEARTH_DATA_DIR: `.data/${port}`,
    RUST_LOG: 'warn',
    // The suite claims names and creates channels far faster than a person would.
    HEARTH_CLAIMS_PER_MINUTE: '10000',
    ...extraEnv,
  },
});

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 7_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: process.env.CI ? 'list' : [['list']],
  use: {
    baseURL: MAIN_URL,
    trace: 'retain-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
          args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-dev-shm-usage',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
  webServer: [
    server(3100, {}),
    // Small limits: rooms of two, and one message a second after a burst of three.
    server(3101, { HEARTH_ROOM_CAPACITY: '2', HEARTH_SEND_RATE: '1', HEARTH_SEND_BURST: '3' }),
  ],
});
