// A controller pair in the browser: a real etcd (Debian etcd-server) and two real controllers on
// one SQLite database, started here (and stopped by their PIDs, also on failure). The standby's
// dashboard says what it is, names the leader and links to it; when the leader is killed, the
// standby's open page follows the takeover by itself and offers the sign-in.
const { test, expect } = require('@playwright/test');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { freePort, until } = require('../support');

const BIN = process.env.SERVERWARE_BIN;
const STATIC = process.env.SERVERWARE_STATIC_DIR;
const PASSWORD = process.env.E2E_ADMIN_PASSWORD;

async function health(url) {
  const r = await fetch(`${url}/api/v1/health`, { signal: AbortSignal.timeout(2000) });
  return r.json();
}

test.describe.configure({ mode: 'serial' });

let dir;
const procs = [];

function start(cmd, args, env, log) {
  const out = fs.openSync(path.join(dir, log), 'a');
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  procs.push(p);
  return p;
}

test.afterAll(() => {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the standby names the leader, links to it and follows a takeover', async ({ page }) => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serverware-e2e-pair-'));
  const [client, peer] = [await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${client}`;
  start('etcd', ['--name', 'e2e', '--data-dir', path.join(dir, 'etcd'),
    '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
    '--listen-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-cluster', `e2e=http://127.0.0.1:${peer}`], {}, 'etcd.log');
  await until('etcd answers', async () => (await fetch(`${etcdUrl}/health`)).ok);

  const controller = async (name) => {
    const port = await freePort();
    const data = path.join(dir, name);
    fs.mkdirSync(data, { mode: 0o700 });
    const url = `http://127.0.0.1:${port}`;
    const env = {
      SERVERWARE_CONFIG: '/dev/null',
      SERVERWARE_LISTEN: `127.0.0.1:${port}`,
      SERVERWARE_SSH_LISTEN: 'off',
      SERVERWARE_DATA_DIR: data,
      SERVERWARE_DATABASE_URL: `sqlite://${path.join(dir, 'site.db')}`,
      SERVERWARE_STORAGE_DIR: path.join(dir, 'storage'),
      SERVERWARE_STATIC_DIR: STATIC,
      SERVERWARE_ADMIN_PASSWORD: PASSWORD,
      SERVERWARE_LOG: 'warn',
      SERVERWARE_PAIR_ETCD: etcdUrl,
      SERVERWARE_PAIR_NAME: name,
    };
    return { name, url, data, env };
  };
  const a = await controller('ctl-a');
  const b = await controller('ctl-b');
  // ctl-a starts first and leads; ctl-b holds the same controller keys, as a pair does.
  a.proc = start(BIN, [], a.env, 'ctl-a.log');
  await until('ctl-a leads', async () => (await health(a.url)).status === 'ok');
  fs.copyFileSync(path.join(a.data, 'controller_ed25519'), path.join(b.data, 'controller_ed25519'));
  fs.chmodSync(path.join(b.data, 'controller_ed25519'), 0o600);
  b.proc = start(BIN, [], b.env, 'ctl-b.log');
  await until('ctl-b is the standby', async () => {
    const h = await health(b.url);
    return h.status === 'standby' && h.pair.leader && h.pair.leader.name === 'ctl-a';
  });

  await page.goto(b.url);
  const card = page.locator('[data-test=standby]');
  await expect(card).toContainText('Standby controller');
  await expect(card).toContainText('ctl-b');
  await expect(card.locator('[data-test=leader]')).toContainText('ctl-a');
  await expect(card.getByRole('link', { name: /ctl-a/ })).toHaveAttribute('href', a.url);

  // The leader dies: the page follows the takeover and offers the sign-in.
  a.proc.kill('SIGKILL');
  await expect(page.locator('input[name=username]')).toBeVisible({ timeout: 60_000 });
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await expect(page.locator('.sidebar')).toBeVisible();

  // Settings → Controllers: ctl-b leads alone, etcd answers, and a switch-over says why not.
  await page.goto(`${b.url}/settings`);
  const ctl = page.locator('[data-test=controllers]');
  await expect(ctl).toContainText('ctl-b');
  await expect(ctl.locator('tr', { hasText: 'ctl-b' })).toContainText('leader');
  await expect(ctl.locator('tr', { hasText: 'e2e' })).toContainText('yes');
  page.once('dialog', (d) => d.accept());
  await ctl.getByRole('button', { name: 'Switch over to the partner' }).click();
  await expect(ctl.locator('[data-test=controllers-note]')).toContainText('no standby controller');
});
