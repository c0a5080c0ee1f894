// The customer's side of the inspection tools: the frozen frame with the agent's marks, taps
// that point back, the agent's photo requests and full-resolution photos, the camera controls
// the agent drives (with a clear prompt where the phone has no such control), and the switch to
// audio plus photos when the video cannot hold.
import { percent, t } from './i18n.js';
import { MarkupLayer } from './markup.js';
import { PhotoUpload, takePhoto } from './photo.js';
import { byTestId, show } from './util.js';

// What the customer is asked to do by hand when the phone lacks a control (catalogue keys).
const PROMPTS = {
  torch: 'prompt.torch',
  zoom: 'prompt.zoom',
  focus: 'prompt.focus',
  facing: 'prompt.facing',
};

// A refused photo's words, by the server's error code (or `network`).
const PHOTO_ERRORS = {
  too_large: 'photo.error_too_large',
  unsupported_media_type: 'photo.error_type',
  invalid_state: 'photo.error_not_in_call',
  conflict: 'photo.error_not_in_call',
  invalid_request: 'photo.error_damaged',
  not_found: 'photo.error_expired',
  network: 'photo.error_network',
  unauthorized: 'photo.error_session',
  forbidden: 'photo.error_session',
  rate_limited: 'photo.error_busy',
  unavailable: 'photo.error_busy',
};

export class CustomerTools {
  #call;
  #caseId;
  #ui;
  #layer;
  #frame = null;
  #request = null;
  #mode = 'video';
  #promptTimer = 0;
  #sending = false;

  /** `call`: {signal, peer, stream, facing, switchCamera(facing), preview()} as join.js keeps them. */
  constructor(call, caseId) {
    this.#call = call;
    this.#caseId = caseId;
    this.#ui = {
      video: byTestId('local-video'),
      image: byTestId('frozen-image'),
      canvas: byTestId('markup-canvas'),
      banner: byTestId('frozen-banner'),
      prompt: byTestId('camera-prompt'),
      audio: byTestId('audio-mode'),
      panel: byTestId('photo-panel'),
      requestNote: byTestId('photo-request-note'),
      take: byTestId('take-photo'),
      gallery: byTestId('gallery-input'),
      consentField: byTestId('location-consent-field'),
      consent: byTestId('location-consent'),
      preview: byTestId('photo-preview'),
      status: byTestId('photo-status'),
    };
    this.#layer = new MarkupLayer(this.#ui.canvas, this.#ui.video);
    show(this.#ui.consentField, document.body.dataset.photoLocation === 'true');
    this.#ui.canvas.addEventListener('pointerdown', (e) => this.#tap(e));
    this.#ui.take.addEventListener('click', () => this.#photoFromCamera());
    this.#ui.gallery.addEventListener('change', () => this.#photoFromGallery());
  }

  attach(signal) {
    const on = {
      frozen: (m) => this.#frozen(m),
      unfrozen: (m) => { if (m.frame_id === this.#frame?.frame_id) this.#live(); },
      markup: (m) => this.#markup(m),
      point: (m) => this.#point(m),
      photo_request: (m) => this.#requested(m),
      camera_control: (m) => this.#control(m),
      video_mode: (m) => this.#videoMode(m.mode),
    };
    for (const [type, handler] of Object.entries(on)) signal.on(type, handler);
    signal.on('joined', () => this.reportCamera());
    // The report goes to the room's staff: an agent who comes in later needs it too.
    signal.on('participant', (m) => {
      if (m.event === 'joined' && m.participant?.role !== 'customer') this.reportCamera();
    });
  }

  // -- frozen frame ----------------------------------------------------------------------------

  #frozen(m) {
    if (this.#frame?.frame_id === m.frame_id) return;
    this.#frame = m;
    this.#layer.clear();
    const img = this.#ui.image;
    img.src = `/join/c/${encodeURIComponent(this.#caseId)}/frozen/${encodeURIComponent(m.frame_id)}`;
    img.dataset.frameId = m.frame_id;
    show(img);
    this.#layer.picture = img;
    this.#ui.canvas.dataset.frozen = 'true';
    show(this.#ui.banner);
  }

  #live() {
    this.#frame = null;
    this.#layer.clear();
    show(this.#ui.image, false);
    this.#ui.image.removeAttribute('src');
    this.#layer.picture = this.#ui.video;
    this.#ui.canvas.dataset.frozen = 'false';
    show(this.#ui.banner, false);
  }

  #markup(m) {
    if (m.frame_id !== this.#frame?.frame_id) return;
    if (m.op === 'add' && m.stroke) {
      this.#layer.add(m.stroke);
      this.#ui.canvas.dataset.lastStroke = m.stroke.id;
      this.#ui.canvas.dataset.strokeAt = String(performance.now());
    } else if (m.op === 'undo') this.#layer.remove(m.stroke_id);
    else if (m.op === 'clear') this.#layer.clear();
    this.#ui.canvas.dataset.strokes = String(this.#layer.strokes.length);
  }

  /** The local preview of the front camera is mirrored; the agent's picture is not. */
  #mirrored() {
    return !this.#frame && this.#ui.video.classList.contains('mirrored');
  }

  #point(m) {
    if (!m.by || m.by.role === 'customer') return;
    if ((m.frame_id ?? null) !== (this.#frame?.frame_id ?? null)) return;
    const x = this.#mirrored() ? 1 - m.x : m.x;
    this.#layer.pulse([x, m.y], '#ffcc00', 5000);
    this.#ui.canvas.dataset.agentPoint = `${m.x},${m.y}`;
  }

  #tap(event) {
    const at = this.#layer.toUnit(event);
    if (!at) return;
    const x = this.#mirrored() ? 1 - at[0] : at[0];
    const message = { type: 'point', x: Math.round(x * 10000) / 10000, y: at[1] };
    if (this.#frame) message.frame_id = this.#frame.frame_id;
    this.#call.signal?.send(message);
    this.#layer.pulse(at, '#ff9500', 2500);
  }

  // -- photos ----------------------------------------------------------------------------------

  #requested(m) {
    this.#request = m.request_id;
    this.#ui.panel.dataset.requested = 'true';
    this.#ui.requestNote.textContent = m.note
      ? t('photo.requested', { note: m.note })
      : t('photo.requested_plain', { button: t('photo.take') });
    show(this.#ui.requestNote);
    this.#ui.panel.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  }

  async #photoFromCamera() {
    const track = this.#call.stream?.getVideoTracks()[0];
    if (!track) return this.#status(t('photo.camera_off'), 'error');
    this.#status(t('photo.taking'));
    let photo;
    try {
      photo = await takePhoto(track, this.#ui.video);
    } catch (err) {
      console.warn('photo failed', err);
      return this.#status(t('photo.take_failed'), 'error');
    }
    await this.#send(photo.blob, { source: 'camera', method: photo.method }, photo);
  }

  async #photoFromGallery() {
    const file = this.#ui.gallery.files?.[0];
    this.#ui.gallery.value = '';
    if (!file) return;
    await this.#send(file, { source: 'gallery', method: 'file' }, null);
  }

  async #send(blob, meta, size) {
    if (this.#sending) return;
    this.#sending = true;
    this.#ui.take.disabled = true;
    const preview = this.#ui.preview;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    show(preview);
    const body = { ...meta, taken_at_ms: Date.now() };
    if (this.#request) body.request_id = this.#request;
    if (this.#ui.consent.checked && document.body.dataset.photoLocation === 'true') {
      body.location_consent = true;
      const where = await here();
      if (where) body.location = where;
    }
    const upload = new PhotoUpload({
      base: `/join/c/${encodeURIComponent(this.#caseId)}`,
      blob,
      meta: body,
      onProgress: ({ sent, size: total, waiting }) => {
        if (waiting) return this.#status(t('photo.waiting'));
        const done = percent(sent / total);
        return this.#status(size
          ? t('photo.sending_size', { width: size.width, height: size.height, percent: done })
          : t('photo.sending', { percent: done }));
      },
    });
    try {
      const photo = await upload.send();
      preview.dataset.itemId = photo.item_id;
      preview.dataset.width = String(photo.width);
      preview.dataset.height = String(photo.height);
      this.#status(t('photo.sent', { width: photo.width, height: photo.height }), 'ok');
      this.#request = null;
      this.#ui.panel.dataset.requested = 'false';
      show(this.#ui.requestNote, false);
    } catch (err) {
      this.#ui.status.dataset.code = err.code ?? 'other';
      this.#status(t(PHOTO_ERRORS[err.code] ?? 'photo.error_other'), 'error');
    } finally {
      this.#sending = false;
      this.#ui.take.disabled = false;
    }
  }

  #status(text, kind = 'progress') {
    this.#ui.status.textContent = text;
    this.#ui.status.dataset.kind = kind;
  }

  // -- the camera, as the agent drives it ------------------------------------------------------

  /** Tell the agent what this phone's camera can do (and, with `result`, what a control did). */
  reportCamera(result = null) {
    const track = this.#call.stream?.getVideoTracks()[0];
    if (!track || !this.#call.signal) return;
    const caps = track.getCapabilities?.() ?? {};
    const settings = track.getSettings?.() ?? {};
    navigator.mediaDevices.enumerateDevices().catch(() => []).then((devices) => {
      const cameras = devices.filter((d) => d.kind === 'videoinput').length;
      const capabilities = {
        facing: cameras > 1 || (caps.facingMode?.length ?? 0) > 1,
        torch: caps.torch === true,
        zoom: caps.zoom ? { min: caps.zoom.min, max: caps.zoom.max, step: caps.zoom.step } : null,
        focusMode: caps.focusMode ?? [],
        width: caps.width?.max ?? null,
        height: caps.height?.max ?? null,
      };
      this.#call.signal.send({
        type: 'camera_state',
        capabilities,
        settings: {
          facingMode: settings.facingMode ?? this.#call.facing,
          torch: settings.torch ?? false,
          zoom: settings.zoom ?? null,
          focusMode: settings.focusMode ?? null,
          width: settings.width ?? null,
          height: settings.height ?? null,
        },
        result,
      });
    });
  }

  async #control({ control, value }) {
    const track = this.#call.stream?.getVideoTracks()[0];
    let result = { control, ok: true };
    try {
      if (!track) throw Object.assign(new Error('the camera is off'), { missing: false });
      const caps = track.getCapabilities?.() ?? {};
      if (control === 'facing') {
        await this.#call.switchCamera(value === 'user' ? 'user' : 'environment');
      } else if (control === 'torch') {
        if (caps.torch !== true) throw Object.assign(new Error('this phone\'s browser has no torch control'), { missing: true });
        await track.applyConstraints({ advanced: [{ torch: Boolean(value) }] });
      } else if (control === 'zoom') {
        if (!caps.zoom) throw Object.assign(new Error('this camera has no zoom control'), { missing: true });
        const zoom = Math.min(caps.zoom.max, Math.max(caps.zoom.min, Number(value)));
        await track.applyConstraints({ advanced: [{ zoom }] });
      } else if (control === 'focus') {
        if (!caps.focusMode?.includes(String(value))) throw Object.assign(new Error('this camera cannot focus that way'), { missing: true });
        await track.applyConstraints({ advanced: [{ focusMode: String(value) }] });
      }
    } catch (err) {
      // A control the phone lacks, or refuses (OverconstrainedError): the customer is asked
      // to do it by hand, and the agent sees why.
      const prompt = t(PROMPTS[control]);
      result = { control, ok: false, message: err.message || String(err), prompt };
      this.#prompt(prompt);
    }
    this.reportCamera(result);
  }

  #prompt(text) {
    const el = this.#ui.prompt;
    el.textContent = text;
    show(el);
    clearTimeout(this.#promptTimer);
    this.#promptTimer = setTimeout(() => show(el, false), 12000);
  }

  // -- audio plus photos -----------------------------------------------------------------------

  async #videoMode(mode) {
    if (mode === this.#mode) return;
    this.#mode = mode;
    const track = this.#call.stream?.getVideoTracks()[0] ?? null;
    try {
      await this.#call.peer?.replaceTrack('video', mode === 'audio' ? null : track);
    } catch (err) {
      console.warn('could not change what the phone sends', err);
    }
    show(this.#ui.audio, mode === 'audio');
    document.body.dataset.videoMode = mode;
  }

  /** The peer was made again (a reconnect): keep sending what the mode says. */
  peerStarted() {
    if (this.#mode === 'audio') {
      this.#call.peer?.replaceTrack('video', null).catch(() => {});
    }
  }
}

/** Where the phone is, if the customer allows it (asked only with their consent). */
function here() {
  if (!navigator.geolocation) return Promise.resolve(null);
  return new Promise((resolve) => {
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve({ latitude: pos.coords.latitude, longitude: pos.coords.longitude, accuracy_m: pos.coords.accuracy }),
      () => resolve(null),
      { timeout: 8000, maximumAge: 60000 },
    );
  });
}
