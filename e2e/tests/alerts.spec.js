// The Alerts page: a webhook target added in the browser (its bad URL refused next to the field
// first), *Send test* delivered to a receiver on loopback with a valid signature, then removed.
const { test, expect } = require('@playwright/test');
const http = require('http');
const crypto = require('crypto');

const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD;
const SECRET = 'e2e-secret-of-enough-length';

async function login(page) {
  await page.goto('/');
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
}

test('add a webhook target, send a test message, see it delivered and signed', async ({ page }) => {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  try {
    await login(page);
    await page.getByRole('link', { name: 'Alerts' }).click();
    await expect(page.getByRole('heading', { name: 'Alerts', exact: true })).toBeVisible();

    const form = page.locator('[data-test=alert-target-form]');
    await form.locator('input[name=target-name]').fill('e2e hook');
    await form.locator('input[name=target-url]').fill('ftp://nowhere');
    await form.locator('input[name=target-secret]').fill(SECRET);
    await form.getByRole('button', { name: 'Add target' }).click();
    await expect(form).toContainText('an http:// or https:// URL');

    await form.locator('input[name=target-url]').fill(url);
    await form.getByRole('button', { name: 'Add target' }).click();
    const row = page.locator('[data-test=alert-targets] tr[data-target="e2e hook"]');
    await expect(row).toContainText(url);
    await expect(row).toContainText('Host offline');

    await row.getByRole('button', { name: 'Send test' }).click();
    await expect(row.locator('[data-test=test-result]')).toContainText('Delivered: HTTP 200');
    expect(got.length).toBe(1);
    const want = 'sha256=' + crypto.createHmac('sha256', SECRET).update(got[0].body).digest('hex');
    expect(got[0].headers['x-serverware-signature']).toBe(want);
    expect(JSON.parse(got[0].body.toString()).state).toBe('test');

    await row.getByRole('button', { name: 'Remove' }).click();
    await expect(row).toHaveCount(0);
  } finally {
    server.close();
  }
});
