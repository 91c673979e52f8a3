// The VPS list measured for the fleet bench (bench/src/fleet.rs): Debian's Chromium signs in to
// the controller at BENCH_URL, opens the VPS list of the names in BENCH_NAMES (a JSON file),
// filters, scrolls and orders it, then opens the Hosts page (the hosts in BENCH_HOSTS, in the
// page's order) and scrolls it to the end, and prints the figures as one line of JSON.
const { chromium } = require('@playwright/test');
const fs = require('fs');
const { login, measureList, measureHosts, summary } = require('./list');

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
    // The Hosts page, when the bench names its first and last host (BENCH_HOSTS: a JSON array).
    const hosts = JSON.parse(process.env.BENCH_HOSTS || '[]');
    const h = hosts.length > 0
      ? await measureHosts(page, { url, hosts: hosts.length, first: hosts[0], last: hosts[hosts.length - 1], limitMs: 60000 })
      : {};
    console.log(JSON.stringify({ ...m, ...h, filterP50Ms: f.p50, filterMaxMs: f.max }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
