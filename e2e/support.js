// What the specs that start their own processes share: a free loopback port, waiting for a
// condition with a deadline (never a fixed sleep), a controller and simulated hosts of a spec's
// own.
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Asks `f` every `every` ms until it holds (errors count as not yet); throws after `ms`. */
async function until(what, f, ms = 60_000, every = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await f()) return;
    } catch (_) { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

const BIN = process.env.SERVERWARE_BIN;
const STATIC = process.env.SERVERWARE_STATIC_DIR;

/**
 * Simulated hosts (sw-fleetsim: real SSH, the real agent protocol) on loopback, their addresses
 * and keys written to `dir`/hosts.json when ready. `procs` collects the process, for the spec to
 * stop by its PID. Returns { sim, hosts }; `sim.stdin` takes `off I` / `on I`.
 */
async function startFleetsim(dir, count, password, procs) {
  const fleetsim = path.join(path.dirname(BIN || '.'), 'sw-fleetsim');
  const agent = path.join(path.dirname(BIN || '.'), 'serverware-agent');
  if (!fs.existsSync(fleetsim)) throw new Error(`${fleetsim} is missing (scripts/test.sh builds it)`);
  const simPort = await freePort();
  const sim = spawn(fleetsim, ['--hosts', String(count), '--port', String(simPort), '--agent', agent,
    '--out', path.join(dir, 'hosts.json')], {
    env: { ...process.env, SW_FLEETSIM_PASSWORD: password },
    stdio: ['pipe', 'pipe', fs.openSync(path.join(dir, 'fleetsim.log'), 'a')],
  });
  procs.push(sim);
  let said = '';
  sim.stdout.on('data', (d) => { said += d.toString(); });
  await until('sw-fleetsim is ready', () => said.includes(`ready ${count}`), 120_000);
  return { sim, hosts: JSON.parse(fs.readFileSync(path.join(dir, 'hosts.json'))) };
}

/**
 * A controller of the spec's own (its data in `dir`/data, `env` added to its environment),
 * signed in to as admin through the API. Returns { url, api }: `api(method, path, body)` answers { status, body }.
 */
async function startController(dir, adminPassword, procs, env = {}) {
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
      ...env,
    },
    stdio: ['ignore', out, out],
  }));
  await until('the controller answers', async () => (await fetch(`${url}/api/v1/health`)).ok, 120_000);
  const login = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: adminPassword }),
  });
  if (login.status !== 200) throw new Error(`cannot sign in to ${url}: ${login.status}`);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const api = async (method, p, body) => {
    const r = await fetch(`${url}/api/v1${p}`, {
      method, headers: { cookie, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  return { url, api };
}

/** Ends what a spec started (by its own handles), also when it failed. */
function stopAll(procs) {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

module.exports = { freePort, until, startFleetsim, startController, stopAll };
