// Walkthrough of a site: a live grid of its cameras (each tile labelled, with its status), a
// click enlarges one; talk to a phone camera (toggle, or hold the space bar); snapshot and record
// evidence from the enlarged camera. The page joins the site's room over /ws and keeps one peer
// connection per camera (offers carry `camera_id`), so every tile shows exactly its camera.
import { CallPeer, tryPlay } from './call.js';
import { CapturePanel, CaptureTarget } from './capture.js';
import { SignalClient, SocketState } from './signal.js';
import {
  api, byTestId, formatDateTime, h, show, wireLogout,
} from './util.js';

const POLL_MS = 5000;
const RESTART_MS = 1500;
// Staff who may capture evidence (the API refuses the others; the page hides the controls).
const CAPTURE_ROLES = new Set(['agent', 'admin']);

/** The enlarged camera's capture controls (the panel's own names, see capture.js). */
const FOCUS_CAPTURE_CONTROLS = Object.freeze({
  root: 'focus-capture',
  start: 'focus-record-start',
  stop: 'focus-record-stop',
  state: 'focus-record-state',
  saveLast: 'focus-save-last',
  snapshot: 'focus-snapshot',
  stage: 'focus-stage',
  error: 'focus-error',
  message: 'focus-message',
});

/** What a walkthrough capture may be filed with beside its stage (request field: input). */
const FOCUS_CAPTURE_FIELDS = Object.freeze({
  note: 'focus-note',
  case_id: 'focus-case-id',
  tracking_number: 'focus-tracking',
  order_id: 'focus-order',
});

const siteId = document.body.dataset.siteId;
const role = document.body.dataset.role;

const ui = {
  state: byTestId('walkthrough-state'),
  summary: byTestId('walkthrough-summary'),
  error: byTestId('walkthrough-error'),
  grid: byTestId('camera-grid'),
  empty: byTestId('grid-empty'),
  audio: byTestId('tile-audio'),
  focus: byTestId('focus-panel'),
  focusName: byTestId('focus-name'),
  focusStatus: byTestId('focus-status'),
  focusClose: byTestId('focus-close'),
  focusVideo: byTestId('focus-video'),
  focusPlaceholder: byTestId('focus-placeholder'),
  focusUnmute: byTestId('focus-unmute'),
  focusStats: byTestId('focus-stats'),
  talkControls: byTestId('talk-controls'),
  talk: byTestId('talk-toggle'),
  talkState: byTestId('talk-state'),
};

const state = {
  signal: null,
  joined: false,
  iceServers: [],
  cameras: new Map(), // id -> camera view (see addCamera)
  focus: null, // camera id
  mic: null, // MediaStreamTrack
  talking: false,
  capture: null, // CapturePanel of the enlarged camera
};

// -- status ----------------------------------------------------------------------------------

function statusText(status) {
  if (!status?.online) {
    // An RTSP camera the server keeps trying to reach: say why it is not there.
    if (status?.rtsp && status.rtsp.state !== 'stopped') {
      return { key: 'offline', text: status.rtsp.error ? `Reconnecting · ${status.rtsp.error}` : 'Connecting…' };
    }
    return { key: 'offline', text: status?.last_seen_at ? `Offline · seen ${formatDateTime(status.last_seen_at)}` : 'Offline' };
  }
  if (status.live === true) return { key: 'live', text: 'Live' };
  if (status.live === false) return { key: 'stalled', text: 'Connected · no video' };
  return { key: 'online', text: 'Connected' };
}

function statsText(status) {
  if (!status?.online) return '';
  const parts = [];
  if (status.codec) parts.push(String(status.codec).toUpperCase());
  if (status.width && status.height) parts.push(`${status.width}×${status.height}`);
  if (status.fps) parts.push(`${Math.round(status.fps)} fps`);
  if (status.bitrate_kbps) parts.push(`${Math.round(status.bitrate_kbps)} kbit/s`);
  if (status.transcoding) parts.push(`transcoding: ${status.transcoding}`);
  if (status.source) parts.push(`via ${status.source}`);
  // A station camera: the parcel it records now (a clip per scanned tracking number).
  if (status.station?.tracking_number) parts.unshift(`● recording parcel ${status.station.tracking_number}`);
  return parts.join(' · ');
}

function renderCamera(cam) {
  const { key, text } = statusText(cam.status);
  cam.el.root.dataset.state = key;
  cam.el.status.dataset.state = key;
  cam.el.status.textContent = text;
  cam.el.stats.textContent = statsText(cam.status);
  cam.el.name.textContent = cam.name;
  if (state.focus === cam.id) renderFocus();
}

function renderSummary() {
  const cams = [...state.cameras.values()];
  const live = cams.filter((c) => c.status?.online).length;
  ui.summary.textContent = cams.length === 0
    ? 'No cameras yet'
    : `${cams.length} camera${cams.length === 1 ? '' : 's'} · ${live} online`;
  show(ui.empty, cams.length === 0);
}

function renderSocket() {
  const socket = state.signal?.state ?? SocketState.CLOSED;
  if (socket === SocketState.RECONNECTING) return setPill('reconnecting', 'Reconnecting…');
  if (!state.joined) return setPill('connecting', 'Connecting…');
  return setPill('connected', 'Live');
}

function setPill(key, text) {
  ui.state.dataset.state = key;
  ui.state.textContent = text;
}

// -- tiles and peers -------------------------------------------------------------------------

function addCamera(camera) {
  const video = h('video', { autoplay: true, playsinline: true, muted: true, 'data-testid': `tile-video-${camera.id}` });
  video.muted = true;
  const status = h('span', { class: 'tile-status', 'data-testid': `tile-status-${camera.id}` });
  const name = h('span', { class: 'tile-name', 'data-testid': `tile-name-${camera.id}` });
  const stats = h('span', { class: 'tile-stats muted small', 'data-testid': `tile-stats-${camera.id}` });
  const root = h('button', {
    type: 'button', class: 'camera-tile', 'data-testid': `tile-${camera.id}`,
    dataset: { cameraId: camera.id, kind: camera.kind },
    onclick: () => setFocus(camera.id),
  },
  h('span', { class: 'tile-video' }, video, h('span', { class: 'tile-placeholder' }, 'No video')),
  h('span', { class: 'tile-caption' }, name, status, stats));
  const audio = h('audio', { autoplay: true, 'data-testid': `tile-audio-${camera.id}` });
  audio.muted = true;
  ui.audio.append(audio);
  const cam = {
    id: camera.id,
    name: camera.name,
    kind: camera.kind,
    status: camera.status,
    el: { root, video, status, name, stats, audio },
    video: new MediaStream(),
    sound: new MediaStream(),
    peer: null,
    restartTimer: null,
  };
  video.addEventListener('playing', () => { root.dataset.playing = 'true'; });
  state.cameras.set(camera.id, cam);
  ui.grid.append(root);
  renderCamera(cam);
  return cam;
}

function removeCamera(id) {
  const cam = state.cameras.get(id);
  if (!cam) return;
  if (state.focus === id) setFocus(null);
  stopPeer(cam);
  state.signal?.send({ type: 'unwatch', camera_id: id });
  cam.el.root.remove();
  cam.el.audio.remove();
  state.cameras.delete(id);
}

function syncCameras(cameras) {
  const seen = new Set();
  for (const camera of cameras ?? []) {
    seen.add(camera.id);
    const cam = state.cameras.get(camera.id) ?? addCamera(camera);
    cam.name = camera.name;
    cam.kind = camera.kind;
    cam.status = camera.status;
    renderCamera(cam);
  }
  for (const id of [...state.cameras.keys()]) if (!seen.has(id)) removeCamera(id);
  renderSummary();
}

function stopPeer(cam) {
  clearTimeout(cam.restartTimer);
  cam.peer?.close();
  cam.peer = null;
  cam.video = new MediaStream();
  cam.sound = new MediaStream();
  cam.el.video.srcObject = null;
  cam.el.audio.srcObject = null;
  delete cam.el.root.dataset.playing;
}

function startPeer(cam) {
  stopPeer(cam);
  const peer = new CallPeer({
    signal: state.signal, iceServers: state.iceServers, recvVideo: true, cameraId: cam.id,
  });
  cam.peer = peer;
  peer.on('track', ({ track }) => onTrack(cam, track));
  peer.on('state', (pcState) => {
    if (peer !== cam.peer) return;
    cam.el.root.dataset.peer = pcState;
    if (pcState === 'failed') {
      // Only this tile starts over: a fresh peer for this camera, the others keep playing.
      state.signal.send({ type: 'unwatch', camera_id: cam.id });
      cam.restartTimer = setTimeout(() => { if (state.joined) startPeer(cam); }, RESTART_MS);
    }
  });
  peer.on('error', (err) => console.warn(`negotiation for ${cam.id} failed`, err));
  peer.start();
  if (state.focus === cam.id && state.talking && state.mic) peer.setLocalAudio(state.mic).catch(() => {});
}

async function onTrack(cam, track) {
  if (track.kind === 'video') {
    cam.video.addTrack(track);
    cam.el.video.srcObject = cam.video;
    await tryPlay(cam.el.video);
    if (state.focus === cam.id) attachFocus(cam);
  } else {
    cam.sound.addTrack(track);
    cam.el.audio.srcObject = cam.sound;
    if (state.focus === cam.id) await playFocusAudio(cam);
  }
}

// -- focus -----------------------------------------------------------------------------------

function attachFocus(cam) {
  ui.focusVideo.srcObject = cam.video;
  ui.focusVideo.addEventListener('playing', () => show(ui.focusPlaceholder, false), { once: true });
  tryPlay(ui.focusVideo);
}

async function playFocusAudio(cam) {
  for (const other of state.cameras.values()) other.el.audio.muted = other !== cam;
  cam.el.audio.muted = false;
  const playing = await tryPlay(cam.el.audio);
  show(ui.focusUnmute, !playing);
}

function setFocus(id) {
  if (state.focus === id) return;
  if (state.talking) setTalking(false);
  state.focus = id;
  for (const cam of state.cameras.values()) {
    cam.el.root.classList.toggle('tile-focused', cam.id === id);
    cam.el.audio.muted = true;
  }
  const cam = id ? state.cameras.get(id) : null;
  show(ui.focus, Boolean(cam));
  state.capture.follow(cam ? CaptureTarget.camera(cam.id) : null);
  if (!cam) {
    ui.focusVideo.srcObject = null;
    return;
  }
  show(ui.focusPlaceholder, true);
  attachFocus(cam);
  playFocusAudio(cam);
  renderFocus();
  ui.focus.scrollIntoView({ block: 'nearest' });
}

function renderFocus() {
  const cam = state.cameras.get(state.focus);
  if (!cam) return;
  const { key, text } = statusText(cam.status);
  ui.focus.dataset.cameraId = cam.id;
  ui.focusName.textContent = cam.name;
  ui.focusStatus.dataset.state = key;
  ui.focusStatus.textContent = text;
  ui.focusStats.textContent = statsText(cam.status);
  show(ui.talkControls, cam.kind === 'phone');
}

// -- talk-back -------------------------------------------------------------------------------

async function ensureMic() {
  if (state.mic && state.mic.readyState === 'live') return state.mic;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  [state.mic] = stream.getAudioTracks();
  return state.mic;
}

async function setTalking(on) {
  const cam = state.cameras.get(state.focus);
  if (on === state.talking || !cam?.peer) {
    if (!on) state.talking = false;
    renderTalk();
    return;
  }
  try {
    if (on) {
      const mic = await ensureMic();
      mic.enabled = true;
      await cam.peer.setLocalAudio(mic);
    } else {
      await cam.peer.setLocalAudio(null);
    }
    state.talking = on;
  } catch (err) {
    state.talking = false;
    ui.talkState.textContent = `Microphone unavailable: ${err.message || err.name}`;
    return;
  }
  renderTalk();
}

function renderTalk() {
  const cam = state.cameras.get(state.focus);
  ui.talk.setAttribute('aria-pressed', String(state.talking));
  ui.talk.dataset.state = state.talking ? 'talking' : 'idle';
  ui.talk.textContent = state.talking ? 'Stop talking' : 'Talk to the camera';
  ui.talkState.textContent = state.talking
    ? `${cam?.name ?? 'The camera'} hears you now.`
    : 'Click to talk (or hold the space bar). The camera hears you while this is on.';
}

function typing(target) {
  return target instanceof HTMLElement && target.closest('input, textarea, select, [contenteditable]');
}

// -- signaling -------------------------------------------------------------------------------

function onJoined(message) {
  state.joined = true;
  state.iceServers = message.ice_servers ?? [];
  state.capture.setPreroll(message.preroll_s);
  syncCameras(message.site?.cameras ?? []);
  // A new socket means new server-side peers: every tile offers again.
  for (const cam of state.cameras.values()) startPeer(cam);
  renderSocket();
}

function onSite(message) {
  if (!message.site) {
    showError('This site was deleted.');
    return;
  }
  const before = new Set(state.cameras.keys());
  syncCameras(message.site.cameras);
  for (const cam of state.cameras.values()) if (!before.has(cam.id) && state.joined) startPeer(cam);
}

function onCamera(message) {
  const cam = state.cameras.get(message.camera_id);
  if (!cam) return;
  cam.status = message.status;
  renderCamera(cam);
  renderSummary();
}

function showError(text) {
  ui.error.textContent = text;
  show(ui.error, Boolean(text));
}

async function poll() {
  try {
    const data = await api('GET', `/api/sites/${encodeURIComponent(siteId)}`);
    for (const camera of data.cameras ?? []) {
      const cam = state.cameras.get(camera.id);
      if (cam) {
        cam.status = camera.status;
        renderCamera(cam);
      }
    }
    renderSummary();
  } catch (err) {
    if (err.status === 401) window.location.assign(`/login?next=/walkthrough/${encodeURIComponent(siteId)}`);
  }
}

function connect() {
  const signal = new SignalClient({ joinMessage: () => ({ type: 'join', site_id: siteId }) });
  state.signal = signal;
  signal.on('state', (s) => {
    if (s !== SocketState.OPEN) state.joined = false;
    renderSocket();
  });
  signal.on('joined', onJoined);
  signal.on('site', onSite);
  signal.on('camera', onCamera);
  signal.on('error', (message) => {
    if (message.ref === 'join') showError(message.message);
    else console.warn('server error', message);
  });
  signal.on('fatal', () => window.location.assign(`/login?next=/walkthrough/${encodeURIComponent(siteId)}`));
  window.addEventListener('online', () => signal.reconnectNow());
  signal.connect();
}

function main() {
  wireLogout();
  state.capture = new CapturePanel({ controls: FOCUS_CAPTURE_CONTROLS, fields: FOCUS_CAPTURE_FIELDS });
  show(byTestId(FOCUS_CAPTURE_CONTROLS.root), CAPTURE_ROLES.has(role));
  ui.focusClose.addEventListener('click', () => setFocus(null));
  ui.focusUnmute.addEventListener('click', () => {
    const cam = state.cameras.get(state.focus);
    if (cam) playFocusAudio(cam);
  });
  ui.talk.addEventListener('click', () => setTalking(!state.talking));
  document.addEventListener('keydown', (event) => {
    if (event.code !== 'Space' || event.repeat || typing(event.target) || !state.focus) return;
    const cam = state.cameras.get(state.focus);
    if (cam?.kind !== 'phone') return;
    event.preventDefault();
    setTalking(true);
  });
  document.addEventListener('keyup', (event) => {
    if (event.code !== 'Space' || typing(event.target) || !state.talking) return;
    event.preventDefault();
    setTalking(false);
  });
  window.addEventListener('pagehide', () => state.signal?.close());
  renderTalk();
  connect();
  setInterval(poll, POLL_MS);
}

main();
