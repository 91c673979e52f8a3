// The VPS console in the browser: xterm.js (loaded on first use from /vendor) over the console
// WebSocket (GET /api/v1/vpses/{id}/console). Binary frames carry the terminal's bytes both ways;
// a text frame {"cols": C, "rows": R} follows every resize. The dashboard (pages/console.rs)
// calls swConsole.open(element, path, onStatus) and closes the handle it gets.
(function () {
  'use strict';
  let loading = null;

  function script(src) {
    return new Promise((ok, fail) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = ok;
      s.onerror = () => fail(new Error('cannot load ' + src));
      document.head.appendChild(s);
    });
  }

  function load() {
    if (!loading) {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/vendor/xterm.css';
      document.head.appendChild(css);
      loading = script('/vendor/xterm.js').then(() => script('/vendor/addon-fit.js'));
      loading.catch(() => { loading = null; });
    }
    return loading;
  }

  window.swConsole = {
    open(el, path, onStatus) {
      let ws = null;
      let term = null;
      let fit = null;
      let closed = false;
      const onResize = () => { if (fit) fit.fit(); };
      const handle = {
        close() {
          closed = true;
          window.removeEventListener('resize', onResize);
          if (ws) ws.close(1000, 'closed by the user');
          if (term) term.dispose();
        },
      };
      load().then(() => {
        if (closed) return;
        term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
        const Fit = window.FitAddon.FitAddon || window.FitAddon;
        fit = new Fit();
        term.loadAddon(fit);
        term.open(el);
        fit.fit();
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        ws = new WebSocket(`${proto}//${location.host}${path}?cols=${term.cols}&rows=${term.rows}`);
        ws.binaryType = 'arraybuffer';
        const enc = new TextEncoder();
        ws.onopen = () => { onStatus('open', ''); term.focus(); };
        ws.onmessage = (e) => { if (typeof e.data !== 'string') term.write(new Uint8Array(e.data)); };
        ws.onclose = (e) => {
          const why = e.reason || (e.code === 1006
            ? 'it could not open: the VPS must be running on a host that is online, and you an operator'
            : 'the console closed');
          onStatus('closed', why);
          if (term) term.write('\r\n\x1b[2m[' + why + ']\x1b[0m\r\n');
        };
        term.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
        term.onResize(({ cols, rows }) => { if (ws.readyState === 1) ws.send(JSON.stringify({ cols, rows })); });
        window.addEventListener('resize', onResize);
      }).catch((e) => onStatus('closed', e.message));
      return handle;
    },
  };
})();
