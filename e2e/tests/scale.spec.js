// The VPS list of a large site in the browser: a controller of its own (started here, stopped by
// its PID also on failure) with simulated hosts (sw-fleetsim: real SSH, the real agent protocol)
// and a few hundred VPSes. The page holds only the rows on screen and a margin, the count is
// the controller's, the filter and the order are the controller's, a scroll reaches the end.
// The same measurement with 10,000 VPSes is the fleet bench's (scale/bench.js).
const { test, expect } = require('@playwright/test');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { freePort, until } = require('../support');
const { login, measureList, summary } = require('../scale/list');

const BIN = process.env.SERVERWARE_BIN;
const STATIC = process.env.SERVERWARE_STATIC_DIR;
const FLEETSIM = path.join(path.dirname(BIN || '.'), 'sw-fleetsim');
const AGENT = path.join(path.dirname(BIN || '.'), 'serverware-agent');
const HOSTS = 10;
const PER_HOST = 30;

let dir;
const procs = [];

test.afterAll(() => {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a list of hundreds of VPSes holds only what is on screen; filter, order and scroll are the controller\'s', async ({ page }) => {
  test.setTimeout(300_000);
  expect(fs.existsSync(FLEETSIM), `${FLEETSIM} is missing (scripts/test.sh builds it)`).toBe(true);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serverware-e2e-scale-'));
  const password = `scale-${process.pid}`;
  const adminPassword = `admin-${process.pid}-${Date.now()}`;

  // The simulated hosts: their addresses and keys are written to hosts.json when ready.
  const simPort = await freePort();
  const sim = spawn(FLEETSIM, ['--hosts', String(HOSTS), '--port', String(simPort), '--agent', AGENT,
    '--out', path.join(dir, 'hosts.json')], {
    env: { ...process.env, SW_FLEETSIM_PASSWORD: password },
    stdio: ['pipe', 'pipe', fs.openSync(path.join(dir, 'fleetsim.log'), 'a')],
  });
  procs.push(sim);
  let said = '';
  sim.stdout.on('data', (d) => { said += d.toString(); });
  await until('sw-fleetsim is ready', () => said.includes(`ready ${HOSTS}`), 120_000);
  const hosts = JSON.parse(fs.readFileSync(path.join(dir, 'hosts.json')));

  // A controller of its own.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  fs.mkdirSync(path.join(dir, 'data'), { mode: 0o700 });
  const out = fs.openSync(path.join(dir, 'controller.log'), 'a');
  procs.push(spawn(BIN, [], {
    env: {
      ...process.env,
      SERVERWARE_CONFIG: '/dev/null', SERVERWARE_LISTEN: `127.0.0.1:${port}`, SERVERWARE_SSH_LISTEN: 'off',
      SERVERWARE_DATA_DIR: path.join(dir, 'data'), SERVERWARE_STATIC_DIR: STATIC,
      SERVERWARE_ADMIN_PASSWORD: adminPassword, SERVERWARE_LOG: 'warn',
    },
    stdio: ['ignore', out, out],
  }));
  await until('the controller answers', async () => (await fetch(`${url}/api/v1/health`)).ok, 120_000);
  const login_ = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: adminPassword }),
  });
  expect(login_.status).toBe(200);
  const cookie = login_.headers.get('set-cookie').split(';')[0];
  const api = async (method, p, body) => {
    const r = await fetch(`${url}/api/v1${p}`, {
      method, headers: { cookie, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };

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
});
