import { defineConfig, devices } from '@playwright/test';

// Two servers from the release build, each with a fresh store: the main one with
// default limits, and a small one whose rooms hold two people, for the capacity test.
export const MAIN_URL = 'http://127.0.0.1:3100';
export const SMALL_URL = 'http://127.0.0.1:3101';
// Two nodes of one cluster: their records in a PostgreSQL of their own, their bus a
// Redis of their own (both fresh each run).
const REDIS_PORT = 3190;
const POSTGRES_PORT = 3191;
export const CLUSTER_A_URL = 'http://127.0.0.1:3103';
export const CLUSTER_B_URL = 'http://127.0.0.1:3104';

const server = (port: number, extraEnv: Record<string, string>, before = '') => ({
  command: `${before}rm -rf .data/${port} && exec ../target/release/hearth`,
  url: `http://127.0.0.1:${port}/`,
  reuseExistingServer: false,
  timeout: 30_000,
  stdout: 'ignore' as const,
  stderr: 'pipe' as const,
  env: {
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    LEPTOS_SITE_ROOT: '../target/site',
    HEARTH_CONFIG: '/dev/null',
    HEARTH_DATA_DIR: `.data/${port}`,
    RUST_LOG: 'warn',
    // The suite claims names and creates channels far faster than a person would,
    // and is one address playing many people.
    HEARTH_CLAIMS_PER_MINUTE: '10000',
    HEARTH_API_PER_MINUTE: '10000',
    HEARTH_CHANNELS_PER_HOUR: '10000',
    HEARTH_ROOM_SEATS_PER_ADDRESS: '10000',
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
    // The crowd test opens over a hundred chat connections from this one address.
    server(3100, { HEARTH_MAX_CONNS_PER_IP: '1000' }),
    // Small limits: rooms of two, and one message a second after a burst of three.
    server(3101, { HEARTH_ROOM_CAPACITY: '2', HEARTH_SEND_RATE: '1', HEARTH_SEND_BURST: '3' }),
    {
      command: `exec redis-server --port ${REDIS_PORT} --bind 127.0.0.1 --save '' --appendonly no`,
      port: REDIS_PORT,
      reuseExistingServer: false,
      timeout: 30_000,
      stdout: 'ignore' as const,
    },
    {
      command: `exec ../scripts/postgres.sh ${POSTGRES_PORT}`,
      port: POSTGRES_PORT,
      reuseExistingServer: false,
      timeout: 30_000,
      stdout: 'ignore' as const,
    },
    ...[3103, 3104].map((port) =>
      server(
        port,
        {
          HEARTH_DATABASE_URL: `postgres://hearth@127.0.0.1:${POSTGRES_PORT}/postgres`,
          HEARTH_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}/`,
        },
        // Both nodes need Redis and PostgreSQL up before they start.
        `until redis-cli -p ${REDIS_PORT} ping >/dev/null 2>&1 && ` +
          `pg_isready -q -h 127.0.0.1 -p ${POSTGRES_PORT}; do sleep 0.1; done; `,
      ),
    ),
  ],
});
