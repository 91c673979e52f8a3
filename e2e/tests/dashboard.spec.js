const { test, expect, request } = require('@playwright/test');

const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD;

async function login(page, password = ADMIN_PASSWORD) {
  await page.goto('/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test.describe.configure({ mode: 'serial' });

test('log in, create and use an API token, see a field error, watch events live, log out', async ({ page, baseURL }) => {
  // A wrong password is refused on the login page.
  await login(page, 'not-the-password');
  await expect(page.getByRole('alert')).toContainText('wrong user name or password');

  await login(page);
  await expect(page.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
  await expect(page.locator('[data-test=link]')).toHaveText('Live');

  // Create an API token in Settings; the secret is shown once.
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.locator('input[name=token-name]').fill('e2e token');
  await page.locator('select[name=token-role]').selectOption('viewer');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.locator('[data-test=token-secret]').textContent()).trim();
  expect(secret).toMatch(/^swt_/);
  await expect(page.getByRole('cell', { name: 'e2e token' })).toBeVisible();

  // Use it with a real request.
  const api = await request.newContext({ baseURL });
  const me = await api.get('/api/v1/auth/me', { headers: { Authorization: `Bearer ${secret}` } });
  expect(me.status()).toBe(200);
  expect((await me.json()).effective_role).toBe('viewer');

  // A bad value gets an error next to its field, from the shared validation code...
  await page.locator('input[name=new-username]').fill('bad name');
  await page.locator('input[name=new-password]').fill('long-enough-password');
  await page.getByRole('button', { name: 'Add user' }).click();
  await expect(page.locator('label', { hasText: 'User name' }).locator('.field-error'))
    .toContainText('is not allowed in a user name');
  // ...and a conflict found by the controller lands next to the same field.
  await page.locator('input[name=new-username]').fill('admin');
  await page.getByRole('button', { name: 'Add user' }).click();
  await expect(page.locator('label', { hasText: 'User name' }).locator('.field-error'))
    .toContainText("the user name 'admin' is taken");

  // The README's picture of the dashboard.
  if (process.env.E2E_SCREENSHOT) {
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await expect(page.locator('.timeline li').first()).toBeVisible();
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.screenshot({ path: process.env.E2E_SCREENSHOT });
  }

  // The Events page shows an audit event the moment it happens, without reloading.
  await page.getByRole('link', { name: 'Events' }).click();
  await expect(page.getByRole('heading', { name: 'Events' })).toBeVisible();
  await page.evaluate(() => { window.__notReloaded = true; });
  const adminToken = await api.post('/api/v1/auth/login', { data: { username: 'admin', password: ADMIN_PASSWORD } });
  expect(adminToken.status()).toBe(200);
  const made = await api.post('/api/v1/tokens', { data: { name: 'made-elsewhere' } });
  expect(made.status()).toBe(201);
  await expect(page.locator('tr[data-action="token.create"]', { hasText: 'made-elsewhere' })).toBeVisible();
  expect(await page.evaluate(() => window.__notReloaded)).toBe(true);

  // Log out: back to the login page, and the API refuses a caller without credentials.
  await page.locator('[data-test=logout]').click();
  await expect(page.getByRole('button', { name: 'Sign in' })).toBeVisible();
  const anon = await request.newContext({ baseURL });
  const refused = await anon.get('/api/v1/users');
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error).toBe('unauthorized');
  const afterLogout = await page.request.get('/api/v1/auth/me');
  expect(afterLogout.status()).toBe(401);
  await api.dispose();
  await anon.dispose();
});

test('a deep link loads the app, which goes live', async ({ page }) => {
  await login(page);
  await expect(page.locator('[data-test=link]')).toHaveText('Live');
  // A deep link is served the app, which shows the page.
  await page.goto('/events');
  await expect(page.getByRole('heading', { name: 'Events' })).toBeVisible();
  await expect(page.locator('[data-test=link]')).toHaveText('Live');
});

test('after the live connection drops, the app reconnects and shows what it missed', async ({ page, baseURL }) => {
  // Keep a handle on the app's sockets so the test can cut one, as a network blip would.
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.__blockSockets = false;
    window.WebSocket = function (url, ...rest) {
      // While blocked, connections go to a closed loopback port and fail, as during an outage.
      const ws = new Native(window.__blockSockets ? 'ws://127.0.0.1:1/' : url, ...rest);
      window.__sockets.push(ws);
      return ws;
    };
    window.WebSocket.prototype = Native.prototype;
    Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  });
  await login(page);
  await page.getByRole('link', { name: 'Events' }).click();
  const link = page.locator('[data-test=link]');
  await expect(link).toHaveText('Live');

  await page.evaluate(() => {
    window.__blockSockets = true;
    window.__sockets.forEach((s) => s.close());
  });
  await expect(link).toHaveText(/reconnecting|Connecting/);

  // Something happens while the page is not connected...
  const api = await request.newContext({ baseURL });
  expect((await api.post('/api/v1/auth/login', { data: { username: 'admin', password: ADMIN_PASSWORD } })).status()).toBe(200);
  expect((await api.post('/api/v1/tokens', { data: { name: 'while-offline' } })).status()).toBe(201);

  // ...and shows up once the app has reconnected and refreshed, without a reload.
  await expect(page.locator('tr[data-action="token.create"]', { hasText: 'while-offline' })).toHaveCount(0);
  await page.evaluate(() => { window.__blockSockets = false; });
  await expect(link).toHaveText('Live', { timeout: 45_000 });
  await expect(page.locator('tr[data-action="token.create"]', { hasText: 'while-offline' })).toBeVisible();
  expect(await page.evaluate(() => window.__sockets.length)).toBeGreaterThan(1);
  await api.dispose();
});

test('the Hosts page checks an address before contacting it', async ({ page }) => {
  await login(page);
  await page.getByRole('link', { name: 'Hosts' }).click();
  await expect(page.getByRole('heading', { name: 'Add a host' })).toBeVisible();
  await page.locator('input[name=host-address]').fill('10.77.0.5');
  await page.getByRole('button', { name: 'Check host key' }).click();
  await expect(page.locator('label', { hasText: 'SSH address' }).locator('.field-error')).toContainText('ssh://');
  await expect(page.getByText('No hosts yet.')).toBeVisible();
});

test('add a test host in the browser after confirming its fingerprint; it comes online', async ({ page }) => {
  const hostUrl = process.env.E2E_HOST_URL;
  expect(hostUrl, 'E2E_HOST_URL names the test host (scripts/test.sh starts it)').toBeTruthy();
  test.setTimeout(240_000);
  await login(page);
  await page.getByRole('link', { name: 'Hosts' }).click();
  await page.locator('input[name=host-address]').fill(hostUrl);
  await page.getByRole('button', { name: 'Check host key' }).click();
  await expect(page.locator('[data-test=fingerprint]')).toHaveText(/^SHA256:/);
  await page.locator('input[name=host-name]').fill('e2e-host');
  await page.locator('input[name=host-password]').fill('not-the-password');
  await page.getByRole('button', { name: 'Confirm key and add host' }).click();
  await expect(page.locator('label', { hasText: 'Password' }).locator('.field-error')).toContainText('refused');
  await page.locator('input[name=host-password]').fill(process.env.E2E_HOST_PASSWORD);
  await page.getByRole('button', { name: 'Confirm key and add host' }).click();
  const row = page.locator('tr[data-host="e2e-host"]');
  await expect(row.locator('.badge')).toHaveText('online', { timeout: 45_000 });
  await expect(row.locator('td').nth(4)).toHaveText(/%$/);
  await expect(row.locator('td').nth(6)).toHaveText('0');

  // Its page: the report as tables, and live charts that move with every sample.
  await row.getByRole('link', { name: 'e2e-host' }).click();
  await expect(page).toHaveURL(/\/hosts\/\d+$/);
  await expect(page.locator('[data-test=host-status]')).toHaveText('online');
  await expect(page.locator('[data-test=filesystems] tr[data-mount="/srv"]')).toBeVisible();
  await expect(page.locator('[data-test=cpus] tbody tr').first()).toBeVisible();
  await expect(page.locator('[data-test=interfaces]')).toContainText('eth0');
  for (const chart of ['chart-cpu', 'chart-memory', 'chart-network', 'chart-disk']) {
    const line = page.locator(`[data-test=${chart}] polyline`).first();
    await expect(line).toHaveAttribute('points', /\d/);
    const before = await line.getAttribute('points');
    await expect.poll(() => line.getAttribute('points'), { timeout: 15_000 }).not.toBe(before);
  }
  // The newest minute appears in the history charts.
  await expect(page.locator('[data-test=history-cpu] polyline').first()).toHaveAttribute('points', /\d/, { timeout: 75_000 });

  // Edit: a bad interval is refused at its field; a good edit is saved.
  await page.locator('input[name=edit-interval]').fill('5');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('label', { hasText: 'Sample every' }).locator('.field-error')).toContainText('between 250 and 60000');
  await page.locator('input[name=edit-interval]').fill('500');
  await page.locator('input[name=edit-description]').fill('rack 7');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.saved')).toBeVisible();
  await expect(page.locator('.page-head')).toContainText('rack 7');

  // The dashboard: cluster totals and a sparkline per host.
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await expect(page.locator('[data-test=total-cpu] .muted')).toContainText(/of [1-9]\d* CPUs online/);
  const spark = page.locator('[data-test=host-sparks] tr[data-host="e2e-host"] [data-test=sparkline] polyline');
  await expect(spark).toHaveAttribute('points', /\d+(\.\d+)?,\d+(\.\d+)? \d/);
});

test('create and start a VPS in the browser, watch its progress, see it running with live figures', async ({ page }) => {
  const hostUrl = process.env.E2E_HOST_URL;
  expect(hostUrl, 'E2E_HOST_URL names the test host (scripts/test.sh starts it)').toBeTruthy();
  test.setTimeout(240_000);
  await login(page);
  await expect(page.locator('[data-test=logout]')).toBeVisible();
  // The host from the journey above, or added here through the API.
  const hosts = await (await page.request.get('/api/v1/hosts')).json();
  if (!hosts.some((h) => h.address === hostUrl)) {
    const probe = await (await page.request.post('/api/v1/hosts/probe', { data: { address: hostUrl } })).json();
    const r = await page.request.post('/api/v1/hosts', { data: { name: 'e2e-vps-host', address: hostUrl, host_key: probe.host_key, password: process.env.E2E_HOST_PASSWORD } });
    expect(r.status()).toBe(201);
  }
  await expect.poll(async () => {
    const hs = await (await page.request.get('/api/v1/hosts')).json();
    return hs.find((h) => h.address === hostUrl)?.status;
  }, { timeout: 60_000 }).toBe('online');
  const net = hostUrl.match(/@(\d+\.\d+\.\d+)\.\d+/)[1];
  const ip = `${net}.80`;

  await page.getByRole('link', { name: 'VPSes' }).click();
  const form = page.locator('[data-test=create-vps]');
  await form.locator('input[name=vps-name]').fill('shop-1');
  await form.locator('input[name=vps-ip]').fill(`${net}.999`);
  await form.getByRole('button', { name: 'Create' }).click();
  await expect(form.locator('label', { hasText: 'IPv4 address' }).locator('.field-error')).toBeVisible();
  await form.locator('input[name=vps-ip]').fill(ip);
  await form.locator('input[name=vps-memory]').fill('64');
  // Privileged is off by default, and asking for it shows what it means.
  const privileged = form.locator('input[name=vps-privileged]');
  await expect(privileged).not.toBeChecked();
  await privileged.check();
  await expect(page.locator('[data-test=privileged-warning]')).toContainText('root inside it is root on its host');
  await privileged.uncheck();
  await expect(page.locator('[data-test=privileged-warning]')).toHaveCount(0);
  await form.getByRole('button', { name: 'Create' }).click();

  // The progress bar moves to the end and the task succeeds.
  const task = page.locator('[data-test=task-progress]').first();
  await expect(task).toBeVisible();
  await expect(task).toHaveAttribute('data-status', 'succeeded', { timeout: 120_000 });
  await expect(task.locator('.bar')).toHaveAttribute('style', /width: 100%/);

  // Running in the list, with live figures.
  const row = page.locator('tr[data-vps="shop-1"]');
  await expect(row.locator('[data-test=vps-state]')).toHaveText('running', { timeout: 60_000 });
  await expect(row.locator('[data-test=vps-processes]')).toHaveText(/^[1-9]\d*$/, { timeout: 30_000 });
  await expect(row.locator('[data-test=vps-cpu]')).toHaveText(/%$/);
  await expect(row.locator('[data-test=vps-memory]')).toContainText('/ 64.0 MB');
  await expect(row).toContainText(ip);

  // The same address again: a clear error at the address field, and nothing created.
  await form.locator('input[name=vps-name]').fill('shop-2');
  await form.locator('input[name=vps-ip]').fill(ip);
  await form.getByRole('button', { name: 'Create' }).click();
  await expect(form.locator('label', { hasText: 'IPv4 address' }).locator('.field-error')).toContainText(`${ip} is already the address of VPS shop-1`);
  await expect(page.locator('tr[data-vps="shop-2"]')).toHaveCount(0);

  // Its page shows the charts; the task is kept on the Tasks page.
  await row.getByRole('link', { name: 'shop-1' }).click();
  await expect(page.locator('[data-test=vps-state]')).toHaveText('running');
  await expect(page.locator('[data-test=vps-chart-cpu] polyline').first()).toHaveAttribute('points', /\d/);
  await expect(page.locator('[data-test=vps-isolation]')).toContainText('unprivileged: its ids are');

  // netDUPLO: its first cycle lands (a full one) and shows as a restore point; "Duplicate now"
  // brings a second; the restore form opens on a point.
  const duplo = page.locator('[data-test=duplo]');
  const last = duplo.locator('[data-test=duplo-last]');
  await expect(last).toHaveText(/^#\d+, read /, { timeout: 60_000 });
  await expect(duplo.locator('[data-test=duplo-cycles]')).toContainText('full');
  const cycle = async () => Number((await last.textContent()).match(/#(\d+)/)[1]);
  const before = await cycle();
  await duplo.locator('[data-test=duplo-now]').click();
  await expect.poll(cycle, { timeout: 60_000 }).toBeGreaterThan(before);
  await expect(duplo.locator('[data-test=restore-points] tbody tr').nth(1)).toBeVisible();
  await duplo.locator('[data-test=restore-button]').first().click();
  const restore = duplo.locator('[data-test=restore-form]');
  await expect(restore).toContainText('Restore point');
  await restore.locator('input[name=restore-as-new]').check();
  await restore.locator('input[name=restore-name]').fill('bad name!');
  await restore.getByRole('button', { name: 'Restore', exact: true }).click();
  await expect(restore.locator('label', { hasText: 'Name' }).locator('.field-error')).not.toBeEmpty();
  await restore.getByRole('button', { name: 'Cancel' }).click();
  // The Storage page counts its points.
  await page.getByRole('link', { name: 'Storage' }).click();
  await expect(page.locator('[data-test=storage-vpses]')).toContainText('shop-1');
  await page.getByRole('link', { name: 'Tasks' }).click();
  await expect(page.locator('[data-test=tasks]')).toContainText('vps.create');
});
