// Drives Debian's Chromium against a real controller that scripts/test.sh builds and that
// Playwright starts (and stops, also on failure) with its own empty data directory.
const { defineConfig } = require('@playwright/test');

const port = process.env.E2E_PORT || '18765';
const bin = process.env.SERVERWARE_BIN;
if (!bin) throw new Error('SERVERWARE_BIN must name the controller binary (scripts/test.sh sets it)');

module.exports = defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    },
  },
  webServer: {
    command: bin,
    url: `http://127.0.0.1:${port}/api/v1/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'ignore',
    stderr: 'pipe',
    env: {
      SERVERWARE_CONFIG: '/dev/null',
      SERVERWARE_LISTEN: `127.0.0.1:${port}`,
      SERVERWARE_DATA_DIR: process.env.E2E_DATA_DIR,
      SERVERWARE_STATIC_DIR: process.env.SERVERWARE_STATIC_DIR,
      SERVERWARE_ADMIN_PASSWORD: process.env.E2E_ADMIN_PASSWORD,
      SERVERWARE_LOG: 'warn',
    },
  },
});
