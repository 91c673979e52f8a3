// The VPS list of a large site in the browser: a controller of its own (started here, stopped by
// its PID also on failure) with simulated hosts (sw-fleetsim: real SSH, the real agent protocol)
// and a few hundred VPSes. The page holds only the rows on screen and a margin, the count is
// the controller's, the filter and the order are the controller's, a scroll reaches the end.
// The Hosts page of its hundred hosts draws only the rows on screen too.
// The same measurement with 10,000 VPSes and 1,000 hosts is the fleet bench's (scale/bench.js).
const { test, expect } = require('@playwright/test');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { until, startFleetsim, startController, stopAll } = require('../support');
const { login, measureList, measureHosts, summary } = require('../scale/list');

const HOSTS = 100;
const PER_HOST = 3;

let dir;
const procs = [];

test.afterAll(() => {
  stopAll(procs);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a list of hundreds of VPSes holds only what is on screen; filter, order and scroll are the controller\'s', async ({ page }) => {
  test.setTimeout(300_000);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serverware-e2e-scale-'));
  const password = `scale-${process.pid}`;
  const adminPassword = `admin-${process.pid}-${Date.now()}`;
  const { hosts } = await startFleetsim(dir, HOSTS, password, procs);
  const { url, api } = await startController(dir, adminPassword, procs);

  // The hosts added as an operator adds them; VPSes made on each through the API.
  for (const h of hosts) {
    const r = await api('POST', '/hosts', { name: h.name, address: h.address, host_key: h.host_key, password });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
  const added = (await api('GET', '/hosts')).body;
  await until('every host online', async () => (await api('GET', '/hosts')).body.every((h) => h.status === 'online'), 120_000);
  const tpl = (await api('GET', '/templates')).body.find((t) => t.name === 'minimal');
  const names = [];
  for (let i = 0; i < HOSTS * PER_HOST; i++) {
    const name = `sc-${String(i).padStart(4, '0')}`;
    names.push(name);
    const r = await api('POST', '/vpses', {
      name, template_id: tpl.id, host_id: added[i % HOSTS].id,
      ipv4: `10.77.${200 + Math.floor(i / 250)}.${(i % 250) + 1}`, memory_limit_bytes: 64 << 20, start: false,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
  }
  await until('every VPS made', async () => (await api('GET', '/tasks?status=running')).body.length === 0, 240_000);

  // The list in the browser.
  await login(page, url, adminPassword);
  const m = await measureList(page, { url, names, probes: ['sc-0123', 'sc-02', 'sc-01'] });
  console.log(`VPS list of ${m.total}: first paint ${m.firstPaintMs.toFixed(0)} ms, ` +
    `filter p50 ${summary(m.filterMs).p50.toFixed(0)} ms (max ${summary(m.filterMs).max.toFixed(0)}), ` +
    `scroll to the end ${m.scrollMs.toFixed(0)} ms, order ${m.sortMs.toFixed(0)} ms; rows held ${m.rowsHeld}`);
  // Only a window of rows, wherever the list is.
  expect(m.rowsHeld).toBeGreaterThan(5);
  expect(m.rowsHeld).toBeLessThan(150);
  expect(m.rowsAtEnd).toBeLessThan(150);
  // The filter matched on the controller: by name, by address (VPSes 250–299 are in 10.77.201.x).
  await page.locator('input[name=vps-filter]').fill('10.77.201.');
  await expect(page.locator('[data-test=vps-count]')).toHaveText('50 match');
  await page.locator('input[name=vps-filter]').fill('no-such-vps');
  await expect(page.locator('[data-test=vps-count]')).toHaveText('No VPS matches.');
  await expect(page.locator('tr[data-vps]')).toHaveCount(0);

  // The Hosts page draws a window of its hundred rows, and a scroll reaches the last host.
  const byName = added.map((h) => h.name).sort();
  const h = await measureHosts(page, { url, hosts: byName.length, first: byName[0], last: byName[byName.length - 1] });
  console.log(`Hosts page of ${h.hosts}: first paint ${h.hostsFirstPaintMs.toFixed(0)} ms, ` +
    `${h.hostsRowsDrawn} rows drawn, scroll to the last host ${h.hostsScrollMs.toFixed(0)} ms`);
  expect(h.hostsRowsDrawn).toBeGreaterThan(5);
  expect(h.hostsRowsDrawn).toBeLessThan(HOSTS);
  await expect(page.locator(`tr[data-host="${byName[0]}"]`)).toHaveCount(0);
});
