// An organization's other sites on one page: this dashboard (the suite's controller) shows a
// second site (a controller of this spec's own, with two simulated hosts), read by the browser
// from that site's own API with a token made there. Bad input is refused with the reason and the
// form keeps it; a host powered off on the other site shows there; the list outlives a reload;
// the other site lets another page read (GET) with a token and nothing else.
const { test, expect } = require('@playwright/test');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { freePort, until, startFleetsim, startController, stopAll } = require('../support');
const { login } = require('../scale/list');

const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD;

let dir;
const procs = [];

test.afterAll(() => {
  stopAll(procs);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function addSite(page, name, url, token) {
  await page.locator('input[name=site-name]').fill(name);
  await page.locator('input[name=site-url]').fill(url);
  await page.locator('input[name=site-token]').fill(token);
  await page.getByRole('button', { name: 'Add site' }).click();
}

test('other sites\' health on one page, each read from its own API with its own token', async ({ page, baseURL }) => {
  test.setTimeout(240_000);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serverware-e2e-sites-'));
  const password = `sites-${process.pid}`;
  const { sim, hosts } = await startFleetsim(dir, 2, password, procs);
  const other = await startController(dir, `admin-${process.pid}-${Date.now()}`, procs);
  for (const h of hosts) {
    const r = await other.api('POST', '/hosts', { name: h.name, address: h.address, host_key: h.host_key, password });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
  await until('both hosts online', async () => (await other.api('GET', '/hosts')).body.every((h) => h.status === 'online'), 120_000);
  const made = await other.api('POST', '/tokens', { name: 'dashboard of the organization', role: 'viewer' });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  const token = made.body.secret;

  // The other site lets another origin read with a token, and only read.
  const own = new URL(baseURL).origin;
  const pre = await fetch(`${other.url}/api/v1/site`, {
    method: 'OPTIONS',
    headers: { origin: own, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  });
  expect(pre.status).toBe(204);
  expect(pre.headers.get('access-control-allow-origin')).toBe('*');
  expect(pre.headers.get('access-control-allow-methods')).toBe('GET');
  expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
  const read = await fetch(`${other.url}/api/v1/site`, { headers: { origin: own, authorization: `Bearer ${token}` } });
  expect(read.status).toBe(200);
  expect(read.headers.get('access-control-allow-origin')).toBe('*');
  const write = await fetch(`${other.url}/api/v1/tokens`, {
    method: 'POST', headers: { origin: own, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'x' }),
  });
  expect(write.headers.get('access-control-allow-origin')).toBeNull();

  await login(page, baseURL, ADMIN_PASSWORD);
  await page.getByRole('link', { name: 'Sites' }).click();
  await expect(page.getByRole('heading', { name: 'Sites' })).toBeVisible();
  await expect(page.locator('[data-test=this-site]')).toContainText('this site');
  await expect(page.locator('[data-test=this-site] [data-test=sites-state]')).not.toBeEmpty();

  // Bad input: refused with the reason, next to its field; the form keeps what was typed.
  await addSite(page, 'bad name', other.url, token);
  await expect(page.locator('[data-test=add-site]')).toContainText('is not a site name');
  await addSite(page, 'lon-2', `${other.url}/api/v1`, token);
  await expect(page.locator('[data-test=add-site]')).toContainText('no path');
  await addSite(page, 'lon-2', other.url, 'not-a-token');
  await expect(page.locator('[data-test=add-site]')).toContainText('not an API token');
  await expect(page.locator('input[name=site-token]')).toHaveValue('not-a-token');
  // A token of the right shape that the site does not know; a site that does not answer.
  await addSite(page, 'lon-2', other.url, `swt_${'x'.repeat(40)}`);
  await expect(page.locator('[data-test=add-site-error]')).toContainText('refused the token');
  const nowhere = `http://127.0.0.1:${await freePort()}`;
  await addSite(page, 'lon-3', nowhere, token);
  await expect(page.locator('[data-test=add-site-error]')).toContainText(`cannot reach ${nowhere}`);
  await expect(page.locator('tr[data-site=lon-2], tr[data-site=lon-3]')).toHaveCount(0);

  // The other site, added: its health as its own controller says.
  await addSite(page, 'lon-2', other.url, token);
  const row = page.locator('tr[data-site=lon-2]');
  await expect(row.locator('[data-test=sites-state]')).toContainText('Healthy');
  await expect(row.locator('[data-test=sites-hosts]')).toContainText('2 of 2');
  await expect(page.locator('input[name=site-name]')).toHaveValue('');
  // Listed once.
  await addSite(page, 'lon-2b', other.url, token);
  await expect(page.locator('[data-test=add-site]')).toContainText('already listed');

  // A host of the other site loses power: the page shows it there (asked every 10 s).
  sim.stdin.write('off 0\n');
  await expect(row.locator('[data-test=sites-hosts]')).toContainText('1 of 2', { timeout: 90_000 });
  await expect(row.locator('[data-test=sites-state]')).toContainText('incident');

  // The list is this browser's: it outlives a reload; removing it asks first.
  await page.reload();
  await expect(page.locator('tr[data-site=lon-2] [data-test=sites-hosts]')).toContainText('of 2');
  page.once('dialog', (d) => d.accept());
  await page.locator('tr[data-site=lon-2] [data-test=remove-site]').click();
  await expect(page.locator('tr[data-site=lon-2]')).toHaveCount(0);
  await page.reload();
  await expect(page.locator('[data-test=this-site]')).toBeVisible();
  await expect(page.locator('tr[data-site=lon-2]')).toHaveCount(0);
});
