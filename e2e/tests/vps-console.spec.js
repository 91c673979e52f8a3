// The console of a VPS in the browser: an operator opens it on the VPS page, runs `hostname` in
// the VPS and sees its name; closing it ends the session, and both ends are in the audit trail.
// A viewer gets no console: no button, and the controller refuses the socket.
// Runs after the other specs (file order): the test hosts are added by then.
const { test, expect, request } = require('@playwright/test');

const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD;
const HOST = process.env.E2E_HOST_URL;

async function api(baseURL, username, password) {
  const ctx = await request.newContext({ baseURL });
  const r = await ctx.post('/api/v1/auth/login', { data: { username, password } });
  expect(r.status(), await r.text()).toBe(200);
  return ctx;
}

async function json(ctx, url) {
  const r = await ctx.get(url);
  expect(r.status(), `${url}: ${await r.text()}`).toBe(200);
  return r.json();
}

async function login(page, username, password) {
  await page.goto('/');
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('[data-test=link]')).toHaveText('Live');
}

test('an operator runs hostname in a VPS console; a viewer gets no console', async ({ browser, baseURL }) => {
  test.setTimeout(300_000);
  const admin = await api(baseURL, 'admin', ADMIN_PASSWORD);
  // The first test host, added by the earlier specs (or here), online.
  let host = (await json(admin, '/api/v1/hosts')).find((h) => h.address === HOST);
  if (!host) {
    const probe = await (await admin.post('/api/v1/hosts/probe', { data: { address: HOST } })).json();
    const r = await admin.post('/api/v1/hosts', { data: { name: 'e2e-host', address: HOST, host_key: probe.host_key, password: process.env.E2E_HOST_PASSWORD } });
    expect(r.status(), await r.text()).toBe(201);
    host = await r.json();
  }
  await expect.poll(async () => (await json(admin, `/api/v1/hosts/${host.id}`)).status, { timeout: 120_000 }).toBe('online');
  const prefix = HOST.match(/@(\d+\.\d+\.\d+)\.\d+/)[1];
  const tpl = (await json(admin, '/api/v1/templates'))[0].id;
  const r = await admin.post('/api/v1/vpses', { data: { name: 'con-1', template_id: tpl, host_id: host.id, ipv4: `${prefix}.90`, memory_limit_bytes: 64 << 20, start: true } });
  expect(r.status(), await r.text()).toBe(202);
  const task = await r.json();
  await expect.poll(async () => (await json(admin, `/api/v1/tasks/${task.id}`)).status, { timeout: 180_000 }).toBe('succeeded');
  const id = Number((await json(admin, `/api/v1/tasks/${task.id}`)).target_id);
  await expect.poll(async () => (await json(admin, `/api/v1/vpses/${id}`)).state, { timeout: 60_000 }).toBe('running');

  // The operator's console.
  const ops = await browser.newContext();
  const page = await ops.newPage();
  await login(page, 'admin', ADMIN_PASSWORD);
  await page.goto(`/vpses/${id}`);
  await expect(page.locator('[data-test=vps-state]')).toHaveText('running');
  await page.locator('[data-test=open-console]').click();
  const term = page.locator('[data-test=console]');
  await expect(page.locator('[data-test=console-status]')).toHaveText('connected', { timeout: 30_000 });
  // Typed once the shell's prompt shows, as a person does.
  await expect(term.locator('.xterm-rows')).toContainText('#');
  await term.click();
  await page.keyboard.type('hostname; echo "one more line: $((6*7))"');
  await page.keyboard.press('Enter');
  await expect(term.locator('.xterm-rows')).toContainText('con-1');
  await expect(term.locator('.xterm-rows')).toContainText('one more line: 42');
  // Closed: the session ends and says how long it lasted.
  await page.getByRole('button', { name: 'Close' }).click();
  await expect(term).toHaveCount(0);
  await expect.poll(async () => (await json(admin, `/api/v1/events?target_type=vps&target_id=${id}&limit=50`)).events.map((e) => e.action), { timeout: 30_000 })
    .toEqual(expect.arrayContaining(['vps.console.opened', 'vps.console.closed']));
  const opened = (await json(admin, `/api/v1/events?action=vps.console.opened&target_type=vps&target_id=${id}`)).events[0];
  expect(opened.actor).toBe('admin');
  await ops.close();

  // A viewer: no button, and the socket is refused.
  const v = await admin.post('/api/v1/users', { data: { username: 'con-viewer', password: 'con-viewer-password-1', role: 'viewer' } });
  expect(v.status(), await v.text()).toBe(201);
  const views = await browser.newContext();
  const vpage = await views.newPage();
  await login(vpage, 'con-viewer', 'con-viewer-password-1');
  await vpage.goto(`/vpses/${id}`);
  await expect(vpage.locator('[data-test=vps-state]')).toHaveText('running');
  await expect(vpage.locator('[data-test=open-console]')).toHaveCount(0);
  const refused = await vpage.evaluate((path) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}${path}`);
    ws.onopen = () => resolve('opened');
    ws.onerror = () => resolve('refused');
  }), `/api/v1/vpses/${id}/console`);
  expect(refused).toBe('refused');
  await views.close();

  const del = await admin.delete(`/api/v1/vpses/${id}`);
  expect(del.status(), await del.text()).toBe(202);
});
