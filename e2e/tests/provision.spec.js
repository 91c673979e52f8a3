// The Provisioning page: network boot turned on in the browser (a pool outside the network
// refused next to its field first), the boot service's state told as it is, a machine that asked
// for its boot script listed as waiting with *Approve*, a static address inside the site's DHCP
// pool refused on the page, then approved outside it. A controller of its own (started here,
// stopped by its PID also on failure) with the host image scripts/test.sh builds, linked into a
// directory of its own. The boot service is pointed at an interface that does not exist, so
// nothing answers DHCP on this machine: the page says it is not running, and why.
const { test, expect } = require('@playwright/test');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startController, stopAll } = require('../support');
const { login } = require('../scale/list');

const FILES = ['vmlinuz', 'initrd.img', 'root.squashfs'];
const MAC = '52:54:00:77:fa:10';

let dir;
const procs = [];

test.afterAll(() => {
  stopAll(procs);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  // The boot service's run directory of the controller stopped above (killed, it could not
  // remove its own).
  for (const p of procs) {
    for (const d of fs.readdirSync(os.tmpdir())) {
      if (d.startsWith(`serverware-boot-${p.pid}-`)) fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
    }
  }
});

/** The newest built image of `from` linked into `to` (its manifest copied). */
function linkImage(from, to) {
  const ids = fs.readdirSync(from)
    .filter((id) => fs.existsSync(path.join(from, id, 'manifest.json')))
    .map((id) => ({ id, m: JSON.parse(fs.readFileSync(path.join(from, id, 'manifest.json'))) }))
    .sort((a, b) => b.m.built_at - a.m.built_at);
  if (ids.length === 0) throw new Error(`no host image in ${from}: scripts/test.sh builds it`);
  const { id } = ids[0];
  fs.mkdirSync(path.join(to, id), { recursive: true });
  for (const f of FILES) {
    try {
      fs.linkSync(path.join(from, id, f), path.join(to, id, f));
    } catch {
      fs.copyFileSync(path.join(from, id, f), path.join(to, id, f));
    }
  }
  fs.copyFileSync(path.join(from, id, 'manifest.json'), path.join(to, id, 'manifest.json'));
  return id;
}

test('network boot set up on the Provisioning page; a waiting machine approved outside the site\'s DHCP pool', async ({ page }) => {
  test.setTimeout(180_000);
  const built = process.env.SERVERWARE_TEST_IMAGES_DIR;
  if (!built) throw new Error('SERVERWARE_TEST_IMAGES_DIR must name the built host images (scripts/test.sh sets it)');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serverware-e2e-provision-'));
  const images = path.join(dir, 'images');
  const image = linkImage(built, images);
  const adminPassword = `admin-${process.pid}-${Date.now()}`;
  const { url, api } = await startController(dir, adminPassword, procs, { SERVERWARE_IMAGES_DIR: images });

  await login(page, url, adminPassword);
  await page.getByRole('link', { name: 'Provisioning' }).click();
  await expect(page.getByRole('heading', { name: 'Provisioning' })).toBeVisible();
  await expect(page.locator('[data-test=boot-status]')).toHaveText('off');
  await expect(page.locator(`[data-image="${image}"]`)).toContainText('served to new machines');

  const form = page.locator('[data-test=boot-settings]');
  await form.locator('input[name=boot-enabled]').check();
  await form.locator('input[name=boot-interface]').fill('swnone0');
  await form.locator('input[name=boot-network]').fill('10.77.250.0/24');
  await form.locator('input[name=boot-url]').fill('http://10.77.250.1:8080');
  await form.locator('input[name=boot-dhcp-pool]').fill('10.77.250.100-10.77.251.5');
  await form.getByRole('button', { name: 'Save' }).click();
  await expect(form).toContainText("not in the hosts' network");
  expect((await api('GET', '/provision')).body.settings.enabled).toBe(false);
  await form.locator('input[name=boot-dhcp-pool]').fill('10.77.250.100-10.77.250.150');
  await form.getByRole('button', { name: 'Save' }).click();
  // Saved; dnsmasq refuses an interface that does not exist, and the page says so.
  await expect(page.locator('[data-test=boot-status]')).toContainText('not running');
  const s = (await api('GET', '/provision')).body.settings;
  expect(s.enabled).toBe(true);
  expect(s.dhcp_pool).toBe('10.77.250.100-10.77.250.150');

  // A machine's iPXE asks for its script (what a boot does over HTTP): it is told to wait.
  const script = await (await fetch(`${url}/boot/mac/${MAC.replaceAll(':', '-')}`)).text();
  expect(script).toContain('waits for approval');
  await page.reload();
  const row = page.locator(`[data-machine="${MAC}"]`);
  await expect(row).toContainText('waiting');

  // Approve with an address the site's DHCP server could give away: refused on the page.
  await row.locator('input[name=machine-name]').fill('pxe-e2e');
  await row.locator('input[name=machine-address]').fill('10.77.250.120/24');
  await row.getByRole('button', { name: 'Approve' }).click();
  await expect(page.getByText("in the site's DHCP pool 10.77.250.100-10.77.250.150")).toBeVisible();
  const refused = (await api('GET', '/events?action=provision.approve_refused')).body.events;
  expect(refused.length).toBe(1);
  expect((await api('GET', '/provision')).body.machines[0].state).toBe('waiting');

  await row.locator('input[name=machine-address]').fill('10.77.250.70/24');
  await row.getByRole('button', { name: 'Approve' }).click();
  await expect(row).toContainText('approved');
  await expect(row).toContainText('10.77.250.70/24');
  const m = (await api('GET', '/provision')).body.machines[0];
  expect([m.name, m.state, m.address]).toEqual(['pxe-e2e', 'approved', '10.77.250.70/24']);
  // Its next ask boots the image with a one-time join token.
  const next = await (await fetch(`${url}/boot/mac/${MAC.replaceAll(':', '-')}`)).text();
  expect(next).toContain(`booting ${MAC} with host image ${image}`);
  expect(next).toMatch(/sw\.token=[0-9a-f]{64}/);
  expect(next).toContain('sw.address=10.77.250.70/24');

  // A machine added by its MAC before it boots: a malformed MAC refused next to its field, then
  // listed approved with its static address.
  const add = page.locator('[data-test=add-machine]');
  await add.locator('input[name=add-mac]').fill('52:54:00:77:fa');
  await add.getByRole('button', { name: 'Add' }).click();
  await expect(add).toContainText('six pairs of hex digits');
  await add.locator('input[name=add-mac]').fill('52:54:00:77:fa:20');
  await add.locator('input[name=add-name]').fill('pxe-e2e-2');
  await add.locator('input[name=add-address]').fill('10.77.250.71/24');
  await add.getByRole('button', { name: 'Add' }).click();
  const added = page.locator('[data-machine="52:54:00:77:fa:20"]');
  await expect(added).toContainText('approved');
  await expect(added).toContainText('10.77.250.71/24');
  await expect(added).toContainText('pxe-e2e-2');
});
