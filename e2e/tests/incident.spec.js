// The dashboard during an incident, in Chromium against the real controller and two real test
// hosts (network namespaces with sshd and LXC) that the test powers off and on through
// sw-testhosts' control socket.
const { test, expect, request } = require('@playwright/test');
const net = require('net');
const http = require('http');
const path = require('path');

const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD;
const HOSTS = [process.env.E2E_HOST_URL, process.env.E2E_HOST_URL2];
const SHOTS = process.env.E2E_SCREENSHOTS;

test.describe.configure({ mode: 'serial' });

/** Sends one command to sw-testhosts (`off 0`, `boot 0` …); resolves once it answered `ok`. */
function control(cmd) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(process.env.E2E_CONTROL);
    let answer = '';
    sock.on('connect', () => sock.write(`${cmd}\n`));
    sock.on('data', (d) => { answer += d; });
    sock.on('error', reject);
    sock.on('close', () => (answer.trim() === 'ok' ? resolve() : reject(new Error(`${cmd}: ${answer}`))));
  });
}

/** What the VPS's web server answers at `ip` (its host name), or null. */
function answer(ip) {
  return new Promise((resolve) => {
    const req = http.get({ host: ip, port: 80, path: '/', timeout: 800 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.statusCode === 200 ? body : null));
    });
    req.on('timeout', () => { req.destroy(); resolve(null); });
    req.on('error', () => resolve(null));
  });
}

async function login(page) {
  await page.goto('/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('[data-test=link]')).toHaveText('Live');
}

async function adminApi(baseURL) {
  const api = await request.newContext({ baseURL });
  const r = await api.post('/api/v1/auth/login', { data: { username: 'admin', password: ADMIN_PASSWORD } });
  expect(r.status()).toBe(200);
  return api;
}

async function json(api, url) {
  const r = await api.get(url);
  expect(r.status(), `${url}: ${await r.text()}`).toBe(200);
  return r.json();
}

/** The test host at `url`, added through the API unless an earlier test added it; online. */
async function ensureHost(api, url, name) {
  let host = (await json(api, '/api/v1/hosts')).find((h) => h.address === url);
  if (!host) {
    const probe = await (await api.post('/api/v1/hosts/probe', { data: { address: url } })).json();
    const r = await api.post('/api/v1/hosts', { data: { name, address: url, host_key: probe.host_key, password: process.env.E2E_HOST_PASSWORD } });
    expect(r.status(), await r.text()).toBe(201);
    host = await r.json();
  }
  await expect.poll(async () => (await json(api, `/api/v1/hosts/${host.id}`)).status, { timeout: 90_000 }).toBe('online');
  return json(api, `/api/v1/hosts/${host.id}`);
}

async function taskDone(api, task) {
  await expect.poll(async () => (await json(api, `/api/v1/tasks/${task.id}`)).status, { timeout: 180_000 }).toMatch(/succeeded|failed/);
  const t = await json(api, `/api/v1/tasks/${task.id}`);
  expect(t.status, JSON.stringify(t)).toBe('succeeded');
  return t;
}

async function createVps(api, body) {
  const r = await api.post('/api/v1/vpses', { data: { memory_limit_bytes: 64 << 20, start: true, ...body } });
  expect(r.status(), await r.text()).toBe(202);
  const t = await taskDone(api, await r.json());
  const id = Number(t.target_id);
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${id}`)).state, { timeout: 60_000 }).toBe('running');
  return id;
}

/** Events of `action` about VPS `id`, newest first. */
async function events(api, action, id) {
  return (await json(api, `/api/v1/events?action=${action}&target_type=vps&target_id=${id}&limit=50`)).events;
}

const site = {};

test('a host powered off: a toast and a banner name it and its VPSes; the VPS page follows its failover without a wrong state', async ({ browser, baseURL }) => {
  test.setTimeout(600_000);
  expect(HOSTS[1] && process.env.E2E_CONTROL, 'scripts/test.sh starts two test hosts and their control socket').toBeTruthy();
  const api = await adminApi(baseURL);
  const a = await ensureHost(api, HOSTS[0], 'e2e-host');
  const b = await ensureHost(api, HOSTS[1], 'e2e-host-2');
  const prefix = HOSTS[0].match(/@(\d+\.\d+\.\d+)\.\d+/)[1];
  const tpl = (await json(api, '/api/v1/templates'))[0].id;
  const ip = `${prefix}.81`;
  const haId = await createVps(api, { name: 'ha-web', template_id: tpl, host_id: a.id, ipv4: ip, ha_enabled: true, ha_priority: 5, check_ports: [80] });
  await createVps(api, { name: 'plain-1', template_id: tpl, host_id: a.id, ipv4: `${prefix}.82` });
  // Protected: a restore point to come back from, and its services answering.
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${haId}/duplo`)).last_cycle ?? 0, { timeout: 120_000 }).toBeGreaterThan(0);
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${haId}`)).services?.up ?? false, { timeout: 60_000 }).toBe(true);
  Object.assign(site, { api, a, b, ip, haId, prefix, tpl });

  const context = await browser.newContext();
  const dash = await context.newPage();
  await login(dash);
  await expect(dash.locator('[data-test=ha-health]')).toContainText(/of [1-9]/);
  const vpsPage = await context.newPage();
  await vpsPage.goto(`/vpses/${haId}`);
  const badge = vpsPage.locator('[data-test=vps-state]');
  await expect(badge).toHaveText('running');
  await expect(vpsPage.locator('.page-head')).toContainText(`on ${a.name}`);
  // The badge sampled every 100 ms from now on, in the page itself (a reload would lose it).
  await vpsPage.evaluate(() => {
    window.__notReloaded = true;
    window.__states = [];
    setInterval(() => {
      const b = document.querySelector('[data-test=vps-state]');
      const s = b ? b.textContent : '(none)';
      if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
    }, 100);
  });

  const off = Date.now();
  await control('off 0');
  // The banner names the host and what becomes of each of its VPSes; so does a toast.
  const incident = dash.locator(`[data-test=incident-banner] [data-incident="host:${a.id}"]`);
  await expect(incident).toContainText(`Host ${a.name} is offline`, { timeout: 30_000 });
  const bannerAfter = (Date.now() - off) / 1000;
  await expect(incident).toContainText('ha-web');
  await expect(incident).toContainText('plain-1: down until the host is back (not HA)');
  await expect(incident.getByRole('link', { name: 'Open' })).toHaveAttribute('href', `/hosts/${a.id}`);
  const toast = dash.locator('[data-test=toasts] .toast.error', { hasText: `host ${a.name} stopped answering` });
  await expect(toast).toContainText('ha-web');
  await expect(toast).toContainText('plain-1');
  console.log(`incident banner ${bannerAfter.toFixed(1)} s after the host was powered off`);
  if (SHOTS) {
    await dash.setViewportSize({ width: 1280, height: 800 });
    await dash.screenshot({ path: path.join(SHOTS, 'incident.png') });
  }

  // The VPS page moves to the new host by itself, and the failover is a success toast.
  await expect(vpsPage.locator('.page-head')).toContainText(`on ${b.name}`, { timeout: 120_000 });
  await expect(badge).toHaveText('running', { timeout: 60_000 });
  await expect(dash.locator('[data-test=toasts] .toast.ok', { hasText: 'VPS ha-web failed over' })).toBeVisible({ timeout: 30_000 });
  await expect(vpsPage.locator('[data-test=vps-failovers]')).toContainText(`from ${a.name} to ${b.name}`);
  // The page's own sampler runs every 100 ms: its newest sample catches up with the badge.
  await expect.poll(() => vpsPage.evaluate(() => window.__states[window.__states.length - 1]), { timeout: 10_000 }).toBe('running');
  const states = await vpsPage.evaluate(() => window.__states);
  expect(await vpsPage.evaluate(() => window.__notReloaded)).toBe(true);
  // Never a wrong state in between: not `stopped` on the new host, not `running` on the dead one.
  for (const s of states) expect(['running', 'host offline', 'failing over'], states.join(' → ')).toContain(s);
  expect(states[0]).toBe('running');
  expect(states).toContain('failing over');
  expect(states[states.length - 1]).toBe('running');
  console.log(`badge: ${states.join(' → ')}`);
  // The banner still says the host is down, and what stays down with it.
  await expect(incident).toContainText('plain-1');

  // Back on: the incident ends by itself.
  await control('boot 0');
  await expect.poll(async () => (await json(api, `/api/v1/hosts/${a.id}`)).status, { timeout: 120_000 }).toBe('online');
  await expect(incident).toHaveCount(0, { timeout: 60_000 });
  await expect(dash.locator('[data-test=toasts] .toast.ok', { hasText: `host ${a.name} answers again` })).toBeVisible({ timeout: 30_000 });
  await context.close();
});

test('Enter maintenance asks first, then moves the HA VPS once: no restart after its move', async ({ page }) => {
  test.setTimeout(600_000);
  const { api, b, ip, haId } = site;
  expect(haId, 'the test above made the HA VPS').toBeTruthy();
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${haId}`)).services?.up ?? false, { timeout: 90_000 }).toBe(true);
  const restartsBefore = (await events(api, 'netmon.restart', haId)).length;
  await login(page);
  await page.goto(`/hosts/${b.id}`);
  const button = page.getByRole('button', { name: 'Enter maintenance' });
  // Refused at the confirmation: nothing happens. The confirmation names the VPS it moves.
  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
  await button.click();
  await expect.poll(() => asked).toContain('ha-web');
  expect((await json(api, `/api/v1/hosts/${b.id}`)).maintenance).toBe(false);

  // Its web server, sampled every 100 ms through the move and until it is judged up again.
  const samples = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push((await answer(ip)) !== null);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  page.once('dialog', (d) => d.accept());
  await button.click();
  await expect(page.locator('[data-test=maintenance-badge]')).toBeVisible();
  // The move's progress shows by the button that started it.
  const move = page.locator('[data-test=maintenance-moves] [data-test=task-progress]');
  await expect(move).toHaveAttribute('data-status', 'succeeded', { timeout: 180_000 });
  await expect.poll(async () => {
    const v = await json(api, `/api/v1/vpses/${haId}`);
    return v.host_id !== b.id && v.state === 'running' && v.busy_task === null;
  }, { timeout: 180_000 }).toBe(true);
  await expect.poll(() => samples.slice(-5).every(Boolean), { timeout: 60_000 }).toBe(true);
  const settled = samples.length;
  // Sampled on until netMON's own checks found it answering since its move: from then on the
  // old verdict (down during the move) can no longer restart it.
  const moved = (await json(api, '/api/v1/tasks?limit=200'))
    .filter((t) => t.kind === 'vps.move' && t.target_id === String(haId))
    .sort((x, y) => y.id - x.id)[0];
  expect(moved, 'the move task').toBeTruthy();
  await expect.poll(async () => {
    const s = (await json(api, `/api/v1/vpses/${haId}`)).services;
    return Boolean(s?.up) && Date.parse(s.since) > Date.parse(moved.started_at);
  }, { timeout: 60_000 }).toBe(true);
  sampling = false;
  await sampler;
  const outages = samples.filter((up, i) => i > 0 && samples[i - 1] && !up).length;
  console.log(`maintenance: ${samples.length} answers sampled, ${outages} outage(s)`);
  expect(outages, `answers: ${samples.map((x) => (x ? '+' : '.')).join('')}`).toBe(1);
  expect(samples.slice(settled).every(Boolean)).toBe(true);
  expect((await events(api, 'netmon.restart', haId)).length).toBe(restartsBefore);

  await page.getByRole('button', { name: 'Leave maintenance' }).click();
  await expect(page.locator('[data-test=maintenance-badge]')).toHaveCount(0);
});

test('Fail over asks first, and the events name who asked', async ({ page }) => {
  test.setTimeout(300_000);
  const { api, haId } = site;
  expect(haId, 'the test above made the HA VPS').toBeTruthy();
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${haId}`)).services?.up ?? false, { timeout: 90_000 }).toBe(true);
  const before = (await events(api, 'netmon.failover', haId)).length;
  await login(page);
  await page.goto(`/vpses/${haId}`);
  const from = (await json(api, `/api/v1/vpses/${haId}`)).host_name;
  const button = page.getByRole('button', { name: 'Fail over' });
  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
  await button.click();
  await expect.poll(() => asked).toContain(`Fail over VPS ha-web? It is stopped on ${from}`);
  expect((await events(api, 'vps.failover', haId)).length).toBe(0);

  page.once('dialog', (d) => d.accept());
  await button.click();
  await expect(page.locator('.notice', { hasText: 'Failing over' })).toBeVisible();
  const asks = await events(api, 'vps.failover', haId);
  expect(asks.length).toBe(1);
  expect(asks[0].actor).toBe('admin');
  expect(asks[0].kind).toBe('audit');
  await expect.poll(async () => (await events(api, 'netmon.failover', haId)).length, { timeout: 120_000 }).toBe(before + 1);
  const done = (await events(api, 'netmon.failover', haId))[0];
  expect(done.actor).toBe('admin');
  expect(done.message).toContain('as admin asked');
  // Its page says so, live, and the notice goes once it is done.
  await expect(page.locator('[data-test=vps-failovers]')).toContainText('as admin asked');
  await expect(page.locator('[data-test=toasts] .toast.ok', { hasText: 'as admin asked' })).toBeVisible();
  await expect(page.locator('.notice', { hasText: 'Failing over' })).toHaveCount(0, { timeout: 30_000 });
  await expect(page.locator('[data-test=vps-state]')).toHaveText('running', { timeout: 60_000 });
});

test('a restore shows its progress next to its form; the Storage page counts what storage holds', async ({ page }) => {
  test.setTimeout(300_000);
  const { api, haId, prefix } = site;
  expect(haId, 'the test above made the HA VPS').toBeTruthy();
  await login(page);
  await page.goto(`/vpses/${haId}`);
  const duplo = page.locator('[data-test=duplo]');
  await duplo.locator('[data-test=restore-button]').first().click();
  const form = duplo.locator('[data-test=restore-form]');
  await form.locator('input[name=restore-as-new]').check();
  await form.locator('input[name=restore-name]').fill('ha-web-copy');
  await form.locator('input[name=restore-ipv4]').fill(`${prefix}.83`);
  await form.getByRole('button', { name: 'Restore', exact: true }).click();
  const progress = duplo.locator('[data-test=restore-progress] [data-test=task-progress]');
  await expect(progress).toBeVisible();
  await expect(progress).toBeInViewport();
  await expect(progress).toHaveAttribute('data-status', 'succeeded', { timeout: 180_000 });

  // After a cycle, the Storage page shows what GET /storage counts.
  const last = (await json(api, `/api/v1/vpses/${haId}/duplo`)).last_cycle;
  expect((await api.post(`/api/v1/vpses/${haId}/duplo/now`)).status()).toBe(202);
  await expect.poll(async () => (await json(api, `/api/v1/vpses/${haId}/duplo`)).last_cycle, { timeout: 120_000 }).toBeGreaterThan(last);
  await page.getByRole('link', { name: 'Storage' }).click();
  const stored = page.locator('[data-test=storage-stored]');
  await expect.poll(async () => {
    const r = await json(api, '/api/v1/storage');
    const shown = [await stored.getAttribute('data-chunks'), await stored.getAttribute('data-bytes')];
    return r.chunks_used > 0 && shown[0] === String(r.chunks_used) && shown[1] === String(r.bytes_stored);
  }, { timeout: 30_000 }).toBe(true);
  await expect(page.getByRole('link', { name: '(change in Settings)' })).toBeVisible();
});

test('Drill now rehearses the failover on the VPS page: its progress, then RTO and RPO', async ({ page }) => {
  test.setTimeout(300_000);
  const { haId } = site;
  expect(haId, 'the test above made the HA VPS').toBeTruthy();
  await login(page);
  await page.goto(`/vpses/${haId}`);
  const card = page.locator('[data-test=drills]');
  await expect(card).toContainText('No drill yet.');
  await card.locator('[data-test=drill-now]').click();
  const progress = card.locator('[data-test=drill-progress] [data-test=task-progress]');
  await expect(progress).toBeVisible();
  await expect(progress).toHaveAttribute('data-status', 'succeeded', { timeout: 180_000 });
  const row = card.locator('[data-test=drill-list] tbody tr').first();
  await expect(row.locator('[data-test=drill-result]')).toHaveText('passed', { timeout: 30_000 });
  await expect(row.locator('[data-test=drill-rto]')).toHaveText(/^\d+\.\d s$/);
  await expect(row.locator('[data-test=drill-rpo]')).toHaveText(/^\d+\.\d s$/);
  // The live VPS stayed where it was, running.
  await expect(page.locator('[data-test=vps-state]')).toHaveText('running');
});

test('a VPS with many restore points shows them a page at a time', async ({ page }) => {
  test.setTimeout(600_000);
  const { api, haId } = site;
  expect(haId, 'the test above made the HA VPS').toBeTruthy();
  const want = SHOTS ? 100 : 25;
  expect((await api.patch('/api/v1/settings', { data: { duplo_keep_last: 200 } })).status()).toBe(200);
  // Points asked for one after another: a cycle that finds nothing changed lands none, and
  // this VPS is idle.
  const points = async () => (await json(api, `/api/v1/vpses/${haId}/duplo`)).points;
  for (let n = await points(); n < want; n = await points()) {
    expect((await api.post(`/api/v1/vpses/${haId}/duplo/now`)).status()).toBe(202);
    await expect.poll(points, { timeout: 60_000, intervals: [200] }).toBeGreaterThan(n);
  }
  await login(page);
  await page.goto(`/vpses/${haId}`);
  const rows = page.locator('[data-test=restore-points] tbody tr');
  await expect(rows).toHaveCount(10);
  const pager = page.locator('[data-test=points-pager]');
  await expect(pager).toContainText(/^Newer1–10 of \d+Older$/);
  const first = await rows.first().locator('td').first().textContent();
  await pager.getByRole('button', { name: 'Older' }).click();
  await expect(pager).toContainText('11–20 of');
  expect(Number(await rows.first().locator('td').first().textContent())).toBeLessThan(Number(first));
  // The actions and the rest of the page stay in reach: the card is not pushed off by points.
  await expect(page.locator('[data-test=vps-failovers]')).toBeAttached();
  if (SHOTS) {
    await page.getByRole('button', { name: 'Newer' }).click();
    // Its charts with a few seconds of figures in them.
    await expect(page.locator('[data-test=vps-chart-cpu] polyline').first()).toHaveAttribute('points', /(\S+ ){8}/, { timeout: 60_000 });
    await page.setViewportSize({ width: 1280, height: 1600 });
    await page.screenshot({ path: path.join(SHOTS, 'vps.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await expect(page.locator('[data-test=site-health]')).toBeVisible();
    await page.screenshot({ path: path.join(SHOTS, 'dashboard.png') });
  }
});
