/// The browser console's page and its RFB client: a canvas, RFB 3.8 with security None,
/// raw rectangles and DesktopSize, key events as X keysyms and pointer events. The
/// client exposes `window.hvConsole` (state, frames drawn) for tests and status.
enum WebConsolePage {
    static func html(title: String) -> String {
        """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>\(title) console</title>
        <style>body{margin:0;background:#222;color:#ccc;font:13px sans-serif}
        #status{padding:4px 8px}canvas{display:block;outline:none;cursor:default}</style></head>
        <body><div id="status">connecting…</div><canvas id="screen" tabindex="0" width="640" height="480"></canvas>
        <script src="/rfb.js"></script></body></html>

        """
    }

    static let script = #"""
    "use strict";
    (function () {
      const canvas = document.getElementById("screen");
      const status = document.getElementById("status");
      const ctx = canvas.getContext("2d");
      const vm = new URLSearchParams(location.search).get("vm") || "";
      const state = { phase: "connecting", frames: 0, width: 0, height: 0, name: "", error: "" };
      window.hvConsole = state;
      const ws = new WebSocket("ws://" + location.host + "/websocket?vm=" + encodeURIComponent(vm), ["binary"]);
      ws.binaryType = "arraybuffer";

      // Received bytes not yet consumed, and a parser step waiting for enough of them.
      let queue = new Uint8Array(0);
      let need = 12, step = version;
      function setStatus(text) { status.textContent = text; }
      function fail(why) { state.phase = "failed"; state.error = why; setStatus(why); ws.close(); }
      function send(bytes) { ws.send(new Uint8Array(bytes)); }
      function u16(v) { return [(v >> 8) & 255, v & 255]; }
      function u32(v) { return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]; }
      function r16(b, i) { return (b[i] << 8) | b[i + 1]; }
      function r32(b, i) { return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0; }

      ws.onmessage = function (e) {
        const data = new Uint8Array(e.data);
        const joined = new Uint8Array(queue.length + data.length);
        joined.set(queue); joined.set(data, queue.length);
        queue = joined;
        while (queue.length >= need && state.phase !== "failed") {
          const bytes = queue.subarray(0, need);
          queue = queue.subarray(need);
          step(bytes);
        }
      };
      ws.onclose = function () { if (state.phase !== "failed") { state.phase = "closed"; setStatus("disconnected"); } };

      function version(b) {
        if (String.fromCharCode.apply(null, b).slice(0, 4) !== "RFB ") return fail("not an RFB server");
        send(Array.from("RFB 003.008\n", c => c.charCodeAt(0)));
        need = 1; step = securityCount;
      }
      function securityCount(b) {
        if (b[0] === 0) return fail("server refused the connection");
        need = b[0]; step = securityTypes;
      }
      function securityTypes(b) {
        if (!Array.from(b).includes(1)) return fail("this VM asks for a VNC password: use a VNC client");
        send([1]);
        need = 4; step = securityResult;
      }
      function securityResult(b) {
        if (r32(b, 0) !== 0) return fail("authentication failed");
        send([1]);                                   // ClientInit: shared
        need = 24; step = serverInit;
      }
      function serverInit(b) {
        resize(r16(b, 0), r16(b, 2));
        need = r32(b, 20); step = serverName;
        if (need === 0) serverName(new Uint8Array(0));
      }
      function serverName(b) {
        state.name = new TextDecoder().decode(b);
        // 32 bpp, depth 24, little-endian, red in the lowest byte: RGBX, the canvas order.
        send([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]);
        send([2, 0].concat(u16(2), u32(0), u32(-223 >>> 0)));
        state.phase = "connected";
        setStatus(state.name + " — " + state.width + "×" + state.height);
        request(false);
        need = 1; step = message;
      }
      function request(incremental) {
        send([3, incremental ? 1 : 0].concat(u16(0), u16(0), u16(state.width), u16(state.height)));
      }
      function resize(w, h) {
        state.width = w; state.height = h;
        canvas.width = w; canvas.height = h;
      }
      let rects = 0;
      function message(b) {
        switch (b[0]) {
          case 0: need = 3; step = updateHeader; break;
          case 2: need = 1; step = message; break;        // Bell
          case 3: need = 7; step = cutHeader; break;
          default: fail("unexpected server message " + b[0]);
        }
      }
      function cutHeader(b) {
        need = r32(b, 3); step = function () { need = 1; step = message; };
        if (need === 0) { need = 1; step = message; }
      }
      function updateHeader(b) {
        rects = r16(b, 1);
        nextRect();
      }
      function nextRect() {
        if (rects === 0) { state.frames++; need = 1; step = message; request(true); return; }
        rects--;
        need = 12; step = rectHeader;
      }
      let rect = null;
      function rectHeader(b) {
        rect = { x: r16(b, 0), y: r16(b, 2), w: r16(b, 4), h: r16(b, 6), enc: r32(b, 8) | 0 };
        if (rect.enc === 0) {
          need = rect.w * rect.h * 4; step = rawPixels;
          if (need === 0) nextRect();
        } else if (rect.enc === -223) {
          resize(rect.w, rect.h);
          setStatus(state.name + " — " + state.width + "×" + state.height);
          nextRect();
        } else {
          fail("unexpected encoding " + rect.enc);
        }
      }
      function rawPixels(b) {
        const image = ctx.createImageData(rect.w, rect.h);
        image.data.set(b);
        for (let i = 3; i < image.data.length; i += 4) image.data[i] = 255;
        ctx.putImageData(image, rect.x, rect.y);
        nextRect();
      }

      // Input.
      const named = {
        Backspace: 0xff08, Tab: 0xff09, Enter: 0xff0d, Escape: 0xff1b, Delete: 0xffff,
        Home: 0xff50, ArrowLeft: 0xff51, ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54,
        PageUp: 0xff55, PageDown: 0xff56, End: 0xff57, Insert: 0xff63, Pause: 0xff13,
        CapsLock: 0xffe5, NumLock: 0xff7f, ScrollLock: 0xff14, ContextMenu: 0xff67,
      };
      const sided = { Shift: [0xffe1, 0xffe2], Control: [0xffe3, 0xffe4], Alt: [0xffe9, 0xffea], Meta: [0xffeb, 0xffec] };
      function keysym(e) {
        if (sided[e.key]) return sided[e.key][e.location === 2 ? 1 : 0];
        if (named[e.key]) return named[e.key];
        const f = /^F([1-9]|1[0-2])$/.exec(e.key);
        if (f) return 0xffbe + Number(f[1]) - 1;
        if (e.key.length === 1) {
          const c = e.key.charCodeAt(0);
          return c < 0x100 ? c : 0x01000000 + c;
        }
        return null;
      }
      function key(e, down) {
        if (state.phase !== "connected") return;
        const k = keysym(e);
        if (k === null) return;
        e.preventDefault();
        send([4, down ? 1 : 0, 0, 0].concat(u32(k)));
      }
      canvas.addEventListener("keydown", e => key(e, true));
      canvas.addEventListener("keyup", e => key(e, false));

      let buttons = 0;
      function pointer(e, mask) {
        if (state.phase !== "connected") return;
        const r = canvas.getBoundingClientRect();
        const x = Math.max(0, Math.min(state.width - 1, Math.floor((e.clientX - r.left) * state.width / r.width)));
        const y = Math.max(0, Math.min(state.height - 1, Math.floor((e.clientY - r.top) * state.height / r.height)));
        send([5, mask].concat(u16(x), u16(y)));
      }
      const bit = [1, 2, 4];
      canvas.addEventListener("mousemove", e => pointer(e, buttons));
      canvas.addEventListener("mousedown", e => { canvas.focus(); buttons |= bit[e.button] || 0; pointer(e, buttons); e.preventDefault(); });
      canvas.addEventListener("mouseup", e => { buttons &= ~(bit[e.button] || 0); pointer(e, buttons); e.preventDefault(); });
      canvas.addEventListener("contextmenu", e => e.preventDefault());
      canvas.addEventListener("wheel", e => {
        const b = e.deltaY < 0 ? 8 : 16;
        pointer(e, buttons | b); pointer(e, buttons);
        e.preventDefault();
      }, { passive: false });
      canvas.focus();
    })();
    """#
}
