// What the specs that start their own processes share: a free loopback port, and waiting for a
// condition with a deadline (never a fixed sleep).
const net = require('net');

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

module.exports = { freePort, until };
