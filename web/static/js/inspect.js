// The agent's inspection tools: freeze the customer's picture and draw on it, point at the live
// video, ask for full-resolution photos, drive the phone's camera (front/rear, torch, zoom,
// focus) and watch the link, switching to audio plus photos when the video cannot hold.
import { LinkJudge } from './lowband.js';
import { COLORS, MarkupLayer } from './markup.js';
import { api, byTestId, h, show } from './util.js';

let serial = 0;
const newId = (prefix) => `${prefix}-${Date.now().toString(36)}-${(serial++).toString(36)}`;

export class InspectionPanel {
  #signal = null;
  #peer = null;
  #caseId = null;
  #layer;
  #ui;
  #frame = null; // {frame_id, width, height}
  #tool = 'arrow';
  #color = COLORS[0];
  #drag = null;
  #mine = [];
  #marker = 1;
  #caps = null;
  #mode = 'video';
  #judge = new LinkJudge();
  #stats = null; // {bytes, t}
  #timer = 0;
  #onFiled = () => {};

  constructor({ onFiled } = {}) {
    const ui = {
      video: byTestId('remote-video'),
      image: byTestId('frozen-image'),
      canvas: byTestId('markup-canvas'),
      freeze: byTestId('inspect-freeze'),
      unfreeze: byTestId('inspect-unfreeze'),
      tools: byTestId('markup-tools'),
      text: byTestId('markup-text'),
      undo: byTestId('markup-undo'),
      clear: byTestId('markup-clear'),
      frozenState: byTestId('frozen-state'),
      error: byTestId('inspect-error'),
      request: byTestId('photo-request'),
      note: byTestId('photo-note'),
      photos: byTestId('photo-list'),
      facing: byTestId('cam-facing'),
      torch: byTestId('cam-torch'),
      zoom: byTestId('cam-zoom'),
      focus: byTestId('cam-focus'),
      caps: byTestId('camera-caps'),
      result: byTestId('camera-result'),
      stats: byTestId('video-stats'),
      auto: byTestId('lowband-auto'),
      modeButton: byTestId('video-mode'),
      modeState: byTestId('mode-state'),
    };
    this.#ui = ui;
    this.#onFiled = onFiled ?? (() => {});
    this.#layer = new MarkupLayer(ui.canvas, ui.video);
    this.#buildTools();
    ui.freeze.addEventListener('click', () => this.#freeze());
    ui.unfreeze.addEventListener('click', () => this.#release());
    ui.undo.addEventListener('click', () => this.#undo());
    ui.clear.addEventListener('click', () => this.#clear());
    ui.request.addEventListener('click', () => this.#requestPhoto());
    ui.facing.addEventListener('click', () => this.#control('facing', ui.facing.dataset.next || 'environment'));
    ui.torch.addEventListener('click', () => this.#control('torch', ui.torch.getAttribute('aria-pressed') !== 'true'));
    ui.zoom.addEventListener('change', () => this.#control('zoom', Number(ui.zoom.value)));
    ui.focus.addEventListener('change', () => this.#control('focus', ui.focus.value));
    ui.modeButton.addEventListener('click', () => this.#setMode(this.#mode === 'video' ? 'audio' : 'video', 'agent'));
    ui.canvas.addEventListener('pointerdown', (e) => this.#down(e));
    ui.canvas.addEventListener('pointermove', (e) => this.#move(e));
    ui.canvas.addEventListener('pointerup', (e) => this.#up(e));
    this.#render();
  }

  /** The call the tools act on (its socket and peer), or none. */
  attach({ signal, caseId }) {
    if (this.#signal !== signal) {
      this.#signal = signal;
      for (const type of ['frozen', 'unfrozen', 'markup', 'point', 'photo', 'camera_state', 'video_mode']) {
        signal.on(type, (m) => this.#on(type, m));
      }
      signal.on('error', (m) => {
        if (['markup', 'point', 'photo_request', 'camera_control', 'video_mode'].includes(m.ref)) this.#fail(m.message);
      });
    }
    if (this.#caseId !== caseId) this.reset();
    this.#caseId = caseId;
  }

  setPeer(peer) {
    this.#peer = peer;
    this.#stats = null;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#sample(), 1000);
  }

  reset() {
    this.#frame = null;
    this.#mine = [];
    this.#marker = 1;
    this.#caps = null;
    this.#mode = 'video';
    this.#judge = new LinkJudge();
    this.#layer.clear();
    this.#layer.picture = this.#ui.video;
    this.#ui.photos.replaceChildren();
    show(this.#ui.image, false);
    this.#say('');
    this.#render();
  }

  // -- freeze and markup -----------------------------------------------------------------------

  #buildTools() {
    const ui = this.#ui;
    const tools = [['arrow', '➚ Arrow'], ['circle', '◯ Circle'], ['freehand', '✎ Draw'], ['text', 'T Text'], ['marker', '① Marker']];
    ui.tools.replaceChildren(
      ...tools.map(([tool, text]) => h('button', {
        type: 'button', class: 'btn btn-secondary btn-small tool', 'data-testid': `tool-${tool}`,
        'aria-pressed': String(tool === this.#tool), onclick: () => { this.#tool = tool; this.#render(); },
      }, text)),
      ...COLORS.map((color, i) => {
        const swatch = h('button', {
          type: 'button', class: 'swatch', 'data-testid': `color-${i}`,
          'aria-label': `Colour ${color}`, 'aria-pressed': String(color === this.#color),
          onclick: () => { this.#color = color; this.#render(); },
        });
        // Through the CSSOM: the page's policy refuses style attributes.
        swatch.style.backgroundColor = color;
        return swatch;
      }),
    );
  }

  async #freeze() {
    this.#say('');
    this.#ui.freeze.disabled = true;
    try {
      const data = await api('POST', `/api/cases/${encodeURIComponent(this.#caseId)}/frozen`);
      this.#showFrozen(data.frame);
      this.#onFiled();
    } catch (err) {
      this.#fail(err.message);
    } finally {
      this.#render();
    }
  }

  #showFrozen(frame) {
    if (this.#frame?.frame_id === frame.frame_id) return;
    this.#frame = frame;
    this.#mine = [];
    this.#marker = 1;
    this.#layer.clear();
    const img = this.#ui.image;
    img.src = `/api/cases/${encodeURIComponent(this.#caseId)}/frozen/${encodeURIComponent(frame.frame_id)}`;
    img.dataset.frameId = frame.frame_id;
    show(img);
    this.#layer.picture = img;
    this.#render();
  }

  async #release() {
    const frame = this.#frame;
    if (!frame) return;
    this.#ui.unfreeze.disabled = true;
    try {
      const strokes = this.#layer.strokes.filter((s) => s.by !== 'customer');
      const data = await api('POST', `/api/cases/${encodeURIComponent(this.#caseId)}/frozen/${encodeURIComponent(frame.frame_id)}/release`, { strokes });
      this.#live();
      if (data.item) this.#say(`Marked-up frame saved as evidence (${data.item.item_id.slice(0, 8)}).`);
      this.#onFiled();
    } catch (err) {
      this.#fail(err.message);
      if (err.status === 404) this.#live();
    } finally {
      this.#render();
    }
  }

  #live() {
    this.#frame = null;
    this.#layer.clear();
    show(this.#ui.image, false);
    this.#ui.image.removeAttribute('src');
    this.#layer.picture = this.#ui.video;
    this.#render();
  }

  #down(event) {
    const at = this.#layer.toUnit(event);
    if (!at) return;
    if (!this.#frame) {
      // Live video: "show me here" without freezing.
      this.#signal?.send({ type: 'point', x: at[0], y: at[1] });
      this.#layer.pulse(at, '#0a84ff', 2500);
      return;
    }
    const base = { id: newId('s'), tool: this.#tool, color: this.#color };
    if (this.#tool === 'text') {
      const text = this.#ui.text.value.trim();
      if (!text) {
        this.#fail('Type the text first, then tap where it goes.');
        this.#ui.text.focus();
        return;
      }
      this.#send({ ...base, points: [at], text });
    } else if (this.#tool === 'marker') {
      this.#send({ ...base, points: [at], number: this.#marker++ });
    } else {
      this.#drag = { ...base, points: [at, at] };
      this.#ui.canvas.setPointerCapture(event.pointerId);
    }
  }

  #move(event) {
    if (!this.#drag) return;
    const at = this.#layer.toUnit(event);
    if (!at) return;
    if (this.#drag.tool === 'freehand') {
      if (this.#drag.points.length < 2000) this.#drag.points.push(at);
    } else {
      this.#drag.points[1] = at;
    }
    this.#layer.setDraft(this.#drag);
  }

  #up() {
    const stroke = this.#drag;
    this.#drag = null;
    this.#layer.setDraft(null);
    if (!stroke) return;
    if (stroke.tool === 'freehand' && stroke.points.length > 2 && stroke.points[0] === stroke.points[1]) {
      stroke.points.splice(1, 1);
    }
    this.#send(stroke);
  }

  #send(stroke) {
    const full = { ...stroke, by: 'agent' };
    this.#layer.add(full);
    this.#mine.push(full.id);
    this.#say('');
    const sent = this.#signal?.send({ type: 'markup', frame_id: this.#frame.frame_id, op: 'add', stroke: full });
    if (!sent) this.#fail('Not connected: the customer did not get that mark.');
    this.#render();
  }

  #undo() {
    const id = this.#mine.pop();
    if (!id || !this.#frame) return;
    this.#layer.remove(id);
    this.#signal?.send({ type: 'markup', frame_id: this.#frame.frame_id, op: 'undo', stroke_id: id });
    this.#render();
  }

  #clear() {
    if (!this.#frame) return;
    this.#mine = [];
    this.#marker = 1;
    this.#layer.clear();
    this.#signal?.send({ type: 'markup', frame_id: this.#frame.frame_id, op: 'clear' });
    this.#render();
  }

  // -- what the room says ----------------------------------------------------------------------

  #on(type, m) {
    if (type === 'frozen') this.#showFrozen(m);
    else if (type === 'unfrozen') { if (this.#frame?.frame_id === m.frame_id) this.#live(); }
    else if (type === 'markup') this.#onMarkup(m);
    else if (type === 'point') {
      if (m.by?.role === 'customer' && (m.frame_id ?? null) === (this.#frame?.frame_id ?? null)) {
        this.#layer.pulse([m.x, m.y], '#ff9500', 5000);
        this.#ui.canvas.dataset.customerPoint = `${m.x},${m.y}`;
        this.#say('The customer pointed at a spot (orange ring).');
      }
    } else if (type === 'photo') this.#onPhoto(m);
    else if (type === 'camera_state') this.#onCamera(m);
    else if (type === 'video_mode') { this.#mode = m.mode; this.#render(); }
  }

  #onMarkup(m) {
    if (m.frame_id !== this.#frame?.frame_id) return;
    if (m.op === 'add' && m.stroke) this.#layer.add(m.stroke);
    else if (m.op === 'undo') this.#layer.remove(m.stroke_id);
    else if (m.op === 'clear') this.#layer.clear();
  }

  // -- photos ----------------------------------------------------------------------------------

  #requestPhoto() {
    const note = this.#ui.note.value.trim();
    const sent = this.#signal?.send({ type: 'photo_request', request_id: newId('p'), note });
    this.#say(sent ? 'Photo asked for: the customer\'s phone shows the request.' : '');
    if (!sent) this.#fail('Not connected to the server.');
  }

  #onPhoto(m) {
    const a = m.assessment ?? {};
    const codes = [...(a.codes ?? []).map((c) => c.text), ...(a.labels ?? []).map((l) => `${l.kind} ${l.text}`)];
    const src = `/api/cases/${encodeURIComponent(this.#caseId)}/stills/${encodeURIComponent(m.item_id)}`;
    const item = h('li', {
      class: 'photo-item', 'data-testid': `photo-${m.item_id}`,
      dataset: { width: m.width, height: m.height, grade: a.grade ?? '', source: m.source, sha256: m.sha256 ?? '' },
    },
    h('a', { href: src, target: '_blank', rel: 'noopener' }, h('img', { src, alt: 'Photo from the customer', loading: 'lazy' })),
    h('div', { class: 'photo-meta' },
      h('strong', {}, a.grade ? `Grade ${a.grade}` : 'Not graded'),
      h('span', { class: 'muted small' }, `${m.width}×${m.height} · ${m.source === 'gallery' ? 'from the gallery' : 'camera'}${m.request_id ? '' : ' · unasked'}`),
      codes.length ? h('span', { class: 'small', 'data-testid': 'photo-codes' }, codes.join(', ')) : null,
      h('code', { class: 'muted small' }, (m.sha256 ?? '').slice(0, 16))));
    this.#ui.photos.prepend(item);
    this.#onFiled();
  }

  // -- the phone's camera ----------------------------------------------------------------------

  #control(control, value) {
    this.#signal?.send({ type: 'camera_control', control, value });
  }

  #onCamera(m) {
    this.#caps = m.capabilities ?? {};
    this.#camSettings = m.settings ?? {};
    const r = m.result;
    if (r) {
      const text = r.ok ? `${r.control}: done` : `${r.control}: ${r.message || 'not possible'}${r.prompt ? ` — the customer was asked: "${r.prompt}"` : ''}`;
      this.#ui.result.textContent = text;
      this.#ui.result.dataset.ok = String(Boolean(r.ok));
      this.#ui.result.dataset.control = r.control;
    }
    this.#render();
  }

  #camSettings = {};

  // -- the link --------------------------------------------------------------------------------

  async #sample() {
    const pc = this.#peer;
    if (!pc || !this.#caseId) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    let inbound = null;
    report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s; });
    if (!inbound) return;
    const now = performance.now();
    const prev = this.#stats;
    this.#stats = { bytes: inbound.bytesReceived, t: now };
    if (!prev) return;
    const kbps = Math.max(0, ((inbound.bytesReceived - prev.bytes) * 8) / (now - prev.t));
    const fps = inbound.framesPerSecond ?? 0;
    this.#ui.stats.textContent = `${Math.round(kbps)} kbit/s · ${Math.round(fps)} fps`;
    this.#ui.stats.dataset.kbps = String(Math.round(kbps));
    this.#ui.stats.dataset.fps = String(Math.round(fps));
    if (!this.#ui.auto.checked) return;
    const verdict = this.#judge.sample({ kbps, fps, t: now / 1000, mode: this.#mode });
    if (verdict && verdict !== this.#mode) this.#setMode(verdict, 'auto', kbps, fps);
  }

  #setMode(mode, reason, kbps = null, fps = null) {
    const message = { type: 'video_mode', mode, reason };
    if (kbps !== null) message.bitrate_kbps = Math.round(kbps * 10) / 10;
    if (fps !== null) message.fps = Math.round(fps * 10) / 10;
    if (this.#signal?.send(message)) {
      this.#mode = mode;
      if (reason === 'agent') this.#judge.agentChose(mode);
    }
    this.#render();
  }

  // -- rendering -------------------------------------------------------------------------------

  #render() {
    const ui = this.#ui;
    const frozen = Boolean(this.#frame);
    ui.freeze.disabled = frozen || !this.#caseId || this.#mode === 'audio';
    ui.unfreeze.disabled = !frozen;
    ui.undo.disabled = !frozen || this.#mine.length === 0;
    ui.clear.disabled = !frozen;
    ui.frozenState.textContent = frozen
      ? `Frozen at ${this.#frame.width}×${this.#frame.height}: draw on it; the customer sees every mark.`
      : 'Live: tap the video to point at a spot on the customer\'s screen.';
    ui.canvas.dataset.frozen = String(frozen);
    for (const button of ui.tools.querySelectorAll('.tool')) {
      button.setAttribute('aria-pressed', String(button.dataset.testid === `tool-${this.#tool}`));
    }
    for (const button of ui.tools.querySelectorAll('.swatch')) {
      button.setAttribute('aria-pressed', String(button.getAttribute('aria-label') === `Colour ${this.#color}`));
    }
    const caps = this.#caps;
    const settings = this.#camSettings;
    ui.facing.disabled = !caps?.facing;
    ui.facing.dataset.next = settings.facingMode === 'user' ? 'environment' : 'user';
    ui.facing.textContent = settings.facingMode === 'user' ? 'Use rear camera' : 'Use front camera';
    ui.torch.disabled = !caps;
    ui.torch.setAttribute('aria-pressed', String(Boolean(settings.torch)));
    ui.torch.textContent = caps?.torch ? (settings.torch ? 'Torch off' : 'Torch on') : 'Ask for light';
    const zoom = caps?.zoom;
    ui.zoom.disabled = !zoom;
    if (zoom) {
      ui.zoom.min = String(zoom.min); ui.zoom.max = String(zoom.max); ui.zoom.step = String(zoom.step || 0.1);
      if (typeof settings.zoom === 'number') ui.zoom.value = String(settings.zoom);
    }
    const focus = caps?.focusMode ?? [];
    ui.focus.disabled = focus.length === 0;
    ui.focus.replaceChildren(...(focus.length ? focus : ['—']).map((f) => h('option', { value: f, selected: f === settings.focusMode }, f)));
    ui.caps.textContent = caps ? describeCaps(caps) : 'The customer\'s camera has not reported its controls yet.';
    ui.caps.dataset.torch = String(Boolean(caps?.torch));
    ui.caps.dataset.zoom = String(Boolean(zoom));
    ui.modeState.textContent = this.#mode === 'audio'
      ? 'Audio plus photos: the phone sends no video (ask for photos).'
      : 'Video';
    ui.modeState.dataset.mode = this.#mode;
    ui.modeButton.textContent = this.#mode === 'audio' ? 'Back to video' : 'Audio plus photos';
  }

  #say(text) {
    show(this.#ui.error, false);
    this.#ui.result.hidden = false;
    if (text) this.#ui.result.textContent = text;
  }

  #fail(text) {
    this.#ui.error.textContent = text;
    show(this.#ui.error);
  }
}

function describeCaps(caps) {
  const has = [];
  const missing = [];
  (caps.facing ? has : missing).push('front/rear');
  (caps.torch ? has : missing).push('torch');
  (caps.zoom ? has : missing).push('zoom');
  (caps.focusMode?.length ? has : missing).push('focus');
  return `Phone camera: ${has.length ? has.join(', ') : 'no controls'}${missing.length ? ` · not available: ${missing.join(', ')}` : ''}`;
}
