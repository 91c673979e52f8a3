// The VPS list of a large site, measured in a real browser: the first paint of the list (from
// the page's navigation to its rows and count on screen), how many rows the page holds (only
// those on screen and a margin), each filter typed (from the keystroke to the rows that match),
// a scroll to the end and an order by name the other way. Used by the browser test
// (tests/scale.spec.js) and by the fleet bench (scale/bench.js); both give it the site's names.

/** Signs in as admin at the controller at `url` and waits for the dashboard. */
async function login(page, url, password) {
  await page.goto(`${url}/`);
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

/** Gives the page `__swUntil(cond, t0, limitMs)`: waits frame by frame until `cond` holds;
 * the ms since `t0` (performance.now). Injected, not evaluated from a string (the dashboard's
 * content policy allows no eval). */
async function addWaiter(page) {
  await page.addInitScript(() => {
    window.__swUntil = (cond, t0, limitMs) => new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try { ok = cond(); } catch (e) { ok = false; }
        if (ok) return resolve(performance.now() - t0);
        if (performance.now() - t0 > limitMs) return reject(new Error('not within ' + limitMs + ' ms'));
        requestAnimationFrame(check);
      };
      check();
    });
  });
}

/**
 * Measures the VPS list of the controller at `url`. `names` is every VPS's name, sorted;
 * `probes` are parts of names to filter by. Returns the figures and what was seen (for a test
 * to check).
 */
async function measureList(page, { url, names, probes, limitMs = 30000 }) {
  await addWaiter(page);
  const total = names.length;
  const countText = `${total} VPSes`;
  // First paint: a fresh load of the page at /vpses until its rows and count are there.
  await page.goto(`${url}/vpses`);
  const firstPaintMs = await page.evaluate(
    ([want, first, limit]) => {
      const until = window.__swUntil;
      return until(() =>
        document.querySelector('[data-test=vps-count]')?.textContent === want &&
        document.querySelector(`tr[data-vps="${first}"]`) !== null, 0, limit);
    },
    [countText, names[0], limitMs]);
  const rowsHeld = await page.locator('tr[data-vps]').count();

  // Each probe typed into the filter, then cleared: from the input to the rows that match.
  const filterMs = [];
  for (const probe of probes) {
    const want = names.filter((n) => n.includes(probe));
    const matchText = want.length === 0 ? 'No VPS matches.' : `${want.length} match`;
    for (const [text, wantCount, wantFirst] of [[probe, matchText, want[0] ?? null], ['', countText, names[0]]]) {
      filterMs.push(await page.evaluate(
        ([text, wantCount, wantFirst, limit]) => {
          const until = window.__swUntil;
          const input = document.querySelector('input[name=vps-filter]');
          const t0 = performance.now();
          input.value = text;
          input.dispatchEvent(new Event('input', { bubbles: true }));
          return until(() =>
            document.querySelector('[data-test=vps-count]')?.textContent === wantCount &&
            (document.querySelector('tr[data-vps]')?.getAttribute('data-vps') ?? null) === wantFirst, t0, limit);
        },
        [text, wantCount, wantFirst, limitMs]));
    }
  }

  // Scrolled to the end: the last VPS is drawn, and still only a window of rows is held.
  const last = names[names.length - 1];
  const scrollMs = await page.evaluate(
    ([last, limit]) => {
      const until = window.__swUntil;
      const box = document.querySelector('.vlist');
      const t0 = performance.now();
      box.scrollTop = box.scrollHeight;
      box.dispatchEvent(new Event('scroll'));
      return until(() => document.querySelector(`tr[data-vps="${last}"]`) !== null, t0, limit);
    },
    [last, limitMs]);
  const rowsAtEnd = await page.locator('tr[data-vps]').count();

  // Ordered by name the other way (on the controller): the last name comes first.
  const sortMs = await page.evaluate(
    ([last, limit]) => {
      const until = window.__swUntil;
      const head = [...document.querySelectorAll('.vlist th')].find((th) => th.textContent.startsWith('Name'));
      const t0 = performance.now();
      head.click();
      return until(() => document.querySelector('tr[data-vps]')?.getAttribute('data-vps') === last, t0, limit);
    },
    [last, limitMs]);

  return { total, firstPaintMs, rowsHeld, filterMs, scrollMs, rowsAtEnd, sortMs };
}

/** The p50 and the largest of a list of ms. */
function summary(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
}

/**
 * Measures the Hosts page of a site of `hosts` hosts: its first paint (navigation to the first
 * host's row), how many rows the page draws (only those on screen and a margin), and a scroll
 * to the end (until the last host's row is drawn). `first` and `last` are the names of the first
 * and the last host as the page lists them.
 */
async function measureHosts(page, { url, hosts, first, last, limitMs = 30000 }) {
  await addWaiter(page);
  await page.goto(`${url}/hosts`);
  const hostsFirstPaintMs = await page.evaluate(
    ([name, limit]) => window.__swUntil(() => document.querySelector(`tr[data-host="${name}"]`) !== null, 0, limit),
    [first, limitMs]);
  const hostsRowsDrawn = await page.locator('tr[data-host]').count();
  const hostsScrollMs = await page.evaluate(([name, limit]) => {
    const box = document.querySelector('[data-test=hosts]').closest('.vlist');
    const t0 = performance.now();
    box.scrollTop = box.scrollHeight;
    box.dispatchEvent(new Event('scroll'));
    return window.__swUntil(() => document.querySelector(`tr[data-host="${name}"]`) !== null, t0, limit);
  }, [last, limitMs]);
  return { hosts, hostsFirstPaintMs, hostsRowsDrawn, hostsScrollMs };
}

module.exports = { login, measureList, measureHosts, summary };
