// The VPS list measured for the fleet bench (bench/src/fleet.rs): Debian's Chromium signs in to
// the controller at BENCH_URL, opens the VPS list of the names in BENCH_NAMES (a JSON file),
// filters, scrolls and orders it, and prints the figures as one line of JSON.
const { chromium } = require('@playwright/test');
const fs = require('fs');
const { login, measureList, summary } = require('./list');

(async () => {
  const url = process.env.BENCH_URL;
  const names = JSON.parse(fs.readFileSync(process.env.BENCH_NAMES));
  const probes = JSON.parse(process.env.BENCH_PROBES || '[]');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  try {
    const page = await (await browser.newContext()).newPage();
    await login(page, url, process.env.BENCH_PASSWORD);
    const m = await measureList(page, { url, names, probes, limitMs: 60000 });
    const f = summary(m.filterMs);
    console.log(JSON.stringify({ ...m, filterP50Ms: f.p50, filterMaxMs: f.max }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
