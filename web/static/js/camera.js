// A site's staff phone as a camera: publishes the rear camera and the microphone into the site's
// room for as long as the page is open, plays what the viewers say (talk-back), keeps the screen
// on (Wake Lock, taken again whenever the page becomes visible), and heals itself after a network
// loss: the socket reconnects with backoff, joins again and a fresh peer offers.
import { CallPeer, describeMediaError, openCamera, tryPlay } from './call.js';
import { CloseCode, SignalingErrorCode } from './protocol.js';
import { SignalClient, SocketState } from './signal.js';
import { t } from './i18n.js';
import { byTestId, h, show } from './util.js';

const STAFF_ROLES = new Set(['agent', 'reviewer', 'admin']);
// A peer stuck in "disconnected" this long is replaced (a fresh join and offer).
const DISCONNECTED_GRACE_MS = 5000;

const token = document.body.dataset.token;

const ui = {
  state: byTestId('camera-state'),
  intro: byTestId('camera-intro'),
  start: byTestId('camera-start'),
  error: byTestId('camera-error'),
  errorTitle: byTestId('camera-error-title'),
  errorMessage: byTestId('camera-error-message'),
  retry: byTestId('camera-retry'),
  live: byTestId('camera-live'),
  preview: byTestId('camera-preview'),
  viewers: byTestId('viewer-count'),
  talkState: byTestId('talkback-state'),
  talkback: byTestId('talkback'),
  unmute: byTestId('talkback-unmute'),
  mic: byTestId('camera-mic'),
  wake: byTestId('wake-state'),
  ended: byTestId('camera-ended'),
  endedTitle: byTestId('camera-ended-title'),
  endedMessage: byTestId('camera-ended-message'),
};

const cam = {
  stream: null,
  signal: null,
  peer: null,
  peerState: 'new',
  joined: false,
  viewers: new Map(), // participant_id -> participant
  wakeLock: null,
  disconnectedTimer: null,
  ended: false,
  starting: false,
};

// -- state -----------------------------------------------------------------------------------

function setPill(state, text) {
  ui.state.dataset.state = state;
  ui.state.textContent = text;
}

function renderState() {
  if (cam.ended) return setPill('ended', t('cam.stopped'));
  if (!cam.stream) return setPill('idle', t('cam.off'));
  const socket = cam.signal?.state ?? SocketState.CLOSED;
  if (socket === SocketState.RECONNECTING) return setPill('reconnecting', t('state.reconnecting'));
  if (!cam.joined) return setPill('connecting', t('state.connecting'));
  if (cam.peerState === 'connected') return setPill('connected', t('cam.live'));
  if (cam.peerState === 'failed' || cam.peerState === 'disconnected') {
    return setPill('reconnecting', t('state.reconnecting'));
  }
  return setPill('connecting', t('state.connecting'));
}

function renderViewers() {
  const n = cam.viewers.size;
  ui.viewers.textContent = n === 0 ? t('cam.nobody') : t('cam.watching', { count: n });
  ui.viewers.dataset.count = String(n);
}

// -- camera and screen -----------------------------------------------------------------------

function showError(err) {
  const info = describeMediaError(err);
  ui.errorTitle.textContent = info.title;
  ui.errorMessage.textContent = info.message;
  ui.error.dataset.reason = info.kind;
  show(ui.intro, false);
  show(ui.error);
}

async function start() {
  if (cam.starting || cam.stream) return;
  cam.starting = true;
  ui.start.disabled = true;
  ui.retry.disabled = true;
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new TypeError('getUserMedia unavailable');
    cam.stream = await openCamera('environment');
  } catch (err) {
    showError(err);
    return;
  } finally {
    cam.starting = false;
    ui.start.disabled = false;
    ui.retry.disabled = false;
  }
  show(ui.intro, false);
  show(ui.error, false);
  show(ui.live);
  ui.preview.srcObject = cam.stream;
  tryPlay(ui.preview);
  for (const track of cam.stream.getVideoTracks()) {
    // The camera itself went away (unplugged, taken by another app): start it again.
    track.addEventListener('ended', () => restartCamera());
  }
  keepScreenOn();
  connect();
  renderState();
}

async function restartCamera() {
  if (cam.ended) return;
  for (const track of cam.stream?.getTracks() ?? []) track.stop();
  cam.stream = null;
  cam.peer?.close();
  cam.peer = null;
  try {
    cam.stream = await openCamera('environment');
    ui.preview.srcObject = cam.stream;
    tryPlay(ui.preview);
    cam.signal?.reconnectNow();
  } catch (err) {
    showError(err);
  }
  renderState();
}

async function keepScreenOn() {
  if (!('wakeLock' in navigator) || document.visibilityState !== 'visible' || cam.ended) {
    ui.wake.textContent = 'wakeLock' in navigator ? t('cam.wake_off') : t('cam.wake_unsupported');
    return;
  }
  if (cam.wakeLock && !cam.wakeLock.released) return;
  try {
    cam.wakeLock = await navigator.wakeLock.request('screen');
    ui.wake.textContent = t('cam.wake_on');
    ui.wake.dataset.state = 'on';
    cam.wakeLock.addEventListener('release', () => {
      ui.wake.textContent = t('cam.wake_off');
      ui.wake.dataset.state = 'off';
    });
  } catch {
    ui.wake.textContent = t('cam.wake_off');
    ui.wake.dataset.state = 'off';
  }
}

function toggleMic() {
  const track = cam.stream?.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.mic.setAttribute('aria-pressed', String(!track.enabled));
  ui.mic.textContent = track.enabled ? t('call.mute') : t('call.unmute');
}

// -- talk-back -------------------------------------------------------------------------------

async function playTalkback(track) {
  const audio = h('audio', { autoplay: true, 'data-testid': 'talkback-audio' });
  audio.srcObject = new MediaStream([track]);
  ui.talkback.append(audio);
  track.addEventListener('ended', () => audio.remove());
  const playing = await tryPlay(audio);
  show(ui.unmute, !playing);
  watchLevel(track);
}

async function unmute() {
  let playing = true;
  for (const audio of ui.talkback.querySelectorAll('audio')) playing = (await tryPlay(audio)) && playing;
  show(ui.unmute, !playing);
}

// Shows "Viewer talking" while a viewer's audio is above silence.
function watchLevel(track) {
  const AudioContextClass = window.AudioContext ?? window.webkitAudioContext;
  if (!AudioContextClass) return;
  const context = new AudioContextClass();
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Uint8Array(analyser.fftSize);
  const timer = setInterval(() => {
    if (track.readyState === 'ended') {
      clearInterval(timer);
      context.close();
      return;
    }
    analyser.getByteTimeDomainData(samples);
    let peak = 0;
    for (const value of samples) peak = Math.max(peak, Math.abs(value - 128));
    show(ui.talkState, peak > 6);
  }, 250);
}

// -- signaling -------------------------------------------------------------------------------

function connect() {
  if (cam.signal) return;
  const signal = new SignalClient({ joinMessage: () => ({ type: 'join', camera_token: token }) });
  cam.signal = signal;
  signal.on('state', (state) => {
    if (state !== SocketState.OPEN) cam.joined = false;
    renderState();
  });
  signal.on('joined', onJoined);
  signal.on('participant', onParticipant);
  signal.on('error', onError);
  signal.on('fatal', (event) => {
    if (event.code === CloseCode.REPLACED) stop(t('cam.replaced_title'), t('cam.replaced_text'));
    else stop(t('cam.invalid_title'), t('cam.invalid_text'));
  });
  window.addEventListener('online', () => signal.reconnectNow());
  signal.connect();
}

function onJoined(message) {
  cam.joined = true;
  cam.viewers.clear();
  for (const p of message.participants ?? []) {
    if (STAFF_ROLES.has(p.role)) cam.viewers.set(p.participant_id, p);
  }
  renderViewers();
  startPeer(message.ice_servers);
  renderState();
}

function startPeer(iceServers) {
  cam.peer?.close();
  clearTimeout(cam.disconnectedTimer);
  ui.talkback.replaceChildren();
  const peer = new CallPeer({ signal: cam.signal, iceServers, localStream: cam.stream });
  cam.peer = peer;
  cam.peerState = 'new';
  peer.on('track', ({ track }) => {
    if (track.kind === 'audio') playTalkback(track);
  });
  peer.on('state', (state) => {
    if (peer !== cam.peer) return;
    cam.peerState = state;
    clearTimeout(cam.disconnectedTimer);
    if (state === 'failed') cam.signal.reconnectNow();
    if (state === 'disconnected') {
      cam.disconnectedTimer = setTimeout(() => {
        if (peer === cam.peer && cam.peerState === 'disconnected') cam.signal.reconnectNow();
      }, DISCONNECTED_GRACE_MS);
    }
    renderState();
  });
  peer.on('error', (err) => console.warn('negotiation failed', err));
  peer.start();
}

function onParticipant(message) {
  const p = message.participant ?? {};
  if (!STAFF_ROLES.has(p.role)) return;
  if (message.event === 'joined') cam.viewers.set(p.participant_id, p);
  else cam.viewers.delete(p.participant_id);
  renderViewers();
}

function onError(message) {
  if (message.ref === 'join' && (message.code === SignalingErrorCode.UNAUTHORIZED || message.code === SignalingErrorCode.TOKEN_EXPIRED)) {
    stop(t('cam.invalid_title'), t('cam.invalid_text'));
  } else if (message.code === SignalingErrorCode.REPLACED) {
    stop(t('cam.replaced_title'), t('cam.replaced_text'));
  } else if (message.code === SignalingErrorCode.UNAUTHORIZED) {
    stop(t('cam.stopped_title'), t('cam.invalid_text'));
  } else {
    console.warn('server error', message);
  }
}

function stop(title, text) {
  if (cam.ended) return;
  cam.ended = true;
  cam.peer?.close();
  cam.signal?.close();
  for (const track of cam.stream?.getTracks() ?? []) track.stop();
  cam.wakeLock?.release().catch(() => {});
  ui.endedTitle.textContent = title;
  ui.endedMessage.textContent = text;
  show(ui.live, false);
  show(ui.intro, false);
  show(ui.error, false);
  show(ui.ended);
  renderState();
}

function main() {
  ui.start.addEventListener('click', start);
  ui.retry.addEventListener('click', start);
  ui.mic.addEventListener('click', toggleMic);
  ui.unmute.addEventListener('click', unmute);
  document.addEventListener('visibilitychange', () => {
    // The browser drops the wake lock whenever the page is hidden: take it again on return.
    if (document.visibilityState === 'visible') keepScreenOn();
  });
  window.addEventListener('pagehide', () => cam.signal?.close());
  renderState();
  // A camera phone restarts by itself (reboot, reload): start without waiting for a tap when
  // the camera permission is already granted; otherwise the Start button asks for it.
  start();
}

main();
