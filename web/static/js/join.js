// Customer page (phone browser): camera and microphone to the server, the agent's voice back,
// a checklist of what to show, and chat. Survives network drops: the socket reconnects, joins
// again with `resume_from`, and a fresh peer connection is offered.
import { CustomerTools } from './assist.js';
import { CallPeer, describeMediaError, openCamera, tryPlay } from './call.js';
import { CaptionsView } from './captions.js';
import { ChatPanel } from './chat.js';
import { locale, t } from './i18n.js';
import { IntakeForm } from './intake.js';
import { SignalingErrorCode } from './protocol.js';
import { SignalClient, SocketState } from './signal.js';
import { byTestId, show } from './util.js';

const STAFF_ROLES = new Set(['agent', 'admin', 'reviewer']);
const ENDED_STATES = new Set(['decided', 'closed']);

const body = document.body;
const token = body.dataset.token;
const caseId = body.dataset.caseId;

const ui = {
  state: byTestId('connection-state'),
  intro: byTestId('intro'),
  start: byTestId('start-camera'),
  cameraError: byTestId('camera-error'),
  cameraErrorTitle: byTestId('camera-error-title'),
  cameraErrorMessage: byTestId('camera-error-message'),
  cameraErrorHelp: byTestId('camera-error-help'),
  retry: byTestId('retry-camera'),
  call: byTestId('call'),
  localVideo: byTestId('local-video'),
  remoteAudio: byTestId('remote-audio'),
  unmute: byTestId('unmute-audio'),
  switchCamera: byTestId('switch-camera'),
  toggleMic: byTestId('toggle-mic'),
  agentName: byTestId('agent-name'),
  ended: byTestId('call-ended'),
  endedMessage: byTestId('call-ended-message'),
  languageSwitch: byTestId('language-switch'),
};

const call = {
  stream: null,
  facing: 'environment',
  signal: null,
  peer: null,
  chat: null,
  joined: false,
  agent: null, // {participant_id, name}
  peerState: 'new',
  ended: false,
  tools: null, // CustomerTools
  captions: null, // CaptionsView
  switchCamera: (facing) => switchCamera(facing),
};

// -- connection state ------------------------------------------------------------------------

function setPill(state, text) {
  ui.state.dataset.state = state;
  ui.state.textContent = text;
}

function renderState() {
  if (call.ended) return setPill('ended', t('state.ended'));
  const socket = call.signal?.state ?? SocketState.CLOSED;
  if (socket === SocketState.RECONNECTING) return setPill('reconnecting', t('state.reconnecting'));
  if (!call.joined) return setPill('connecting', t('state.connecting'));
  if (!call.agent) return setPill('waiting', t('state.waiting'));
  if (call.peerState === 'failed' || call.peerState === 'disconnected') {
    return setPill('reconnecting', t('state.reconnecting'));
  }
  return setPill('connected', call.agent.name
    ? t('state.connected_with', { name: call.agent.name })
    : t('state.connected'));
}

function setAgent(participant) {
  call.agent = participant;
  ui.agentName.textContent = participant
    ? t('call.agent_badge', { name: participant.name || t('call.agent') })
    : '';
  show(ui.agentName, Boolean(participant));
  renderState();
}

// -- camera ----------------------------------------------------------------------------------

function showCameraError(err) {
  const info = describeMediaError(err);
  ui.cameraErrorTitle.textContent = info.title;
  ui.cameraErrorMessage.textContent = info.message;
  ui.cameraError.dataset.reason = info.kind;
  show(ui.cameraErrorHelp, info.kind === 'denied');
  show(ui.intro, false);
  show(ui.cameraError);
}

async function startCamera() {
  ui.start.disabled = true;
  ui.retry.disabled = true;
  ui.start.textContent = t('join.waiting_permission');
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new TypeError('getUserMedia unavailable');
    call.stream = await openCamera(call.facing);
  } catch (err) {
    showCameraError(err);
    return;
  } finally {
    ui.start.disabled = false;
    ui.retry.disabled = false;
    ui.start.textContent = t('join.start_camera');
  }
  show(ui.intro, false);
  show(ui.cameraError, false);
  show(ui.call);
  show(ui.languageSwitch, false);
  const intake = document.querySelector('[data-testid="intake"]');
  if (intake) show(intake, false);
  // The call starts at the top of the page: the picture, then the controls.
  window.scrollTo(0, 0);
  attachLocalPreview();
  keepScreenOn();
  connect();
}

function attachLocalPreview() {
  ui.localVideo.srcObject = call.stream;
  ui.localVideo.classList.toggle('mirrored', call.facing === 'user');
  tryPlay(ui.localVideo);
}

async function switchCamera(to = null) {
  const next = to ?? (call.facing === 'environment' ? 'user' : 'environment');
  if (next === call.facing && call.stream?.getVideoTracks()[0]?.readyState === 'live') return;
  const old = call.stream.getVideoTracks()[0];
  ui.switchCamera.disabled = true;
  try {
    // Many phones cannot open two cameras at once: release the current one first.
    old?.stop();
    const fresh = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { exact: next } } })
      .catch(() => navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: next } } }));
    const track = fresh.getVideoTracks()[0];
    if (old) call.stream.removeTrack(old);
    call.stream.addTrack(track);
    call.facing = next;
    await call.peer?.replaceTrack('video', track);
    attachLocalPreview();
    ui.switchCamera.dataset.facing = next;
    call.tools?.reportCamera();
  } catch (err) {
    console.warn('camera switch failed', err);
    if (to) throw err;
  } finally {
    ui.switchCamera.disabled = false;
  }
}

function toggleMic() {
  const track = call.stream?.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.toggleMic.setAttribute('aria-pressed', String(!track.enabled));
  ui.toggleMic.textContent = track.enabled ? t('call.mute') : t('call.unmute');
}

async function keepScreenOn() {
  try {
    await navigator.wakeLock?.request('screen');
  } catch {
    // Not supported or not allowed: the call still works.
  }
}

// -- remote audio ----------------------------------------------------------------------------

async function playRemoteAudio(track, streams) {
  ui.remoteAudio.srcObject = streams[0] ?? new MediaStream([track]);
  const playing = await tryPlay(ui.remoteAudio);
  show(ui.unmute, !playing);
}

async function unmute() {
  const playing = await tryPlay(ui.remoteAudio);
  show(ui.unmute, !playing);
}

// -- signaling -------------------------------------------------------------------------------

function connect() {
  const signal = new SignalClient({
    joinMessage: () => ({ type: 'join', token, resume_from: call.chat?.lastSeq ?? 0 }),
  });
  call.signal = signal;
  call.chat = new ChatPanel({
    signal,
    form: byTestId('chat-form'),
    log: byTestId('chat-log'),
    input: byTestId('chat-input'),
    button: byTestId('chat-send'),
    lang: locale,
  });
  call.chat.setEnabled(true);
  call.tools = new CustomerTools(call, caseId);
  call.tools.attach(signal);
  wireCaptions(signal);
  signal.on('state', (state) => {
    if (state !== SocketState.OPEN) call.joined = false;
    renderState();
  });
  signal.on('joined', onJoined);
  signal.on('participant', onParticipant);
  signal.on('case', (message) => onCase(message.case));
  signal.on('error', onError);
  signal.on('fatal', () => endCall(t('ended.link_gone')));
  window.addEventListener('online', () => signal.reconnectNow());
  signal.connect();
}

function onJoined(message) {
  call.joined = true;
  call.chat.joined(message);
  const agent = (message.participants ?? []).find((p) => STAFF_ROLES.has(p.role));
  setAgent(agent ?? null);
  if (message.case && ENDED_STATES.has(message.case.state)) {
    endCall();
    return;
  }
  startPeer(message.ice_servers);
}

function startPeer(iceServers) {
  call.peer?.close();
  const peer = new CallPeer({ signal: call.signal, iceServers, localStream: call.stream });
  call.peer = peer;
  call.peerState = 'new';
  peer.on('track', ({ track, streams }) => {
    if (track.kind === 'audio') playRemoteAudio(track, streams);
  });
  peer.on('state', (state) => {
    if (peer !== call.peer) return;
    call.peerState = state;
    renderState();
    // A dead ICE path heals fastest with a fresh join and a fresh offer.
    if (state === 'failed') call.signal.reconnectNow();
  });
  peer.on('error', (err) => console.warn('negotiation failed', err));
  peer.start();
  call.tools.peerStarted();
}

function onParticipant(message) {
  const participant = message.participant ?? {};
  if (!STAFF_ROLES.has(participant.role)) return;
  if (message.event === 'joined') setAgent(participant);
  else if (message.event === 'left' && call.agent?.participant_id === participant.participant_id) {
    setAgent(null);
  }
}

function onCase(summary) {
  if (summary && ENDED_STATES.has(summary.state)) endCall();
}

function onError(message) {
  if (message.code === SignalingErrorCode.TOKEN_EXPIRED) {
    endCall(t('ended.link_expired'));
  } else if (message.code === SignalingErrorCode.UNAUTHORIZED) {
    endCall(t('ended.link_invalid'));
  } else {
    console.warn('server error', message);
  }
}

function endCall(text) {
  if (call.ended) return;
  call.ended = true;
  call.peer?.close();
  call.signal?.close();
  for (const track of call.stream?.getTracks() ?? []) track.stop();
  if (text) ui.endedMessage.textContent = text;
  show(ui.call, false);
  show(ui.intro, false);
  show(ui.cameraError, false);
  show(ui.ended);
  renderState();
}

// -- captions --------------------------------------------------------------------------------

// The customer sees the call's captions in the language spoken (no translation) and can hide
// them; when the agent switches transcription off or on, the page says so in its language.
function wireCaptions(signal) {
  const list = byTestId('captions');
  const toggle = byTestId('toggle-captions');
  const notice = byTestId('captions-call-notice');
  call.captions = new CaptionsView({
    list,
    status: notice,
    labels: {
      you: t('captions.you'),
      agent: t('captions.agent'),
      customer: t('chat.customer'),
      off: t('captions.off'),
    },
    locale,
  });
  let visible = true;
  const render = () => {
    show(list, visible && list.children.length > 0 && list.dataset.enabled !== 'false');
    toggle.textContent = visible ? t('captions.hide') : t('captions.show');
    toggle.setAttribute('aria-pressed', String(visible));
  };
  toggle.addEventListener('click', () => {
    visible = !visible;
    render();
  });
  signal.on('joined', (message) => call.captions.setSelf(message.participant_id));
  signal.on('caption', (message) => {
    call.captions.caption(message);
    show(toggle);
    render();
  });
  signal.on('captions', (message) => {
    call.captions.switched(message);
    if (message.enabled !== false) {
      // Switched back on: the customer is told again that speech is transcribed.
      notice.textContent = t('captions.notice');
      show(notice);
    }
    render();
  });
}

// -- checklist -------------------------------------------------------------------------------

function wireChecklist() {
  const boxes = [...document.querySelectorAll('[data-testid^="checklist-"][type="checkbox"]')];
  if (boxes.length === 0) return;
  const key = `inspect.checklist.${caseId}`;
  const saved = new Set(JSON.parse(sessionStorage.getItem(key) ?? '[]'));
  const update = () => {
    const ticked = boxes.filter((b) => b.checked).map((b) => b.dataset.testid);
    sessionStorage.setItem(key, JSON.stringify(ticked));
    show(byTestId('checklist-done'), ticked.length === boxes.length);
  };
  for (const box of boxes) {
    box.checked = saved.has(box.dataset.testid);
    box.addEventListener('change', update);
  }
  update();
}

function main() {
  new IntakeForm(caseId);
  ui.start.addEventListener('click', startCamera);
  // Enabled once the page's script runs: a tap before it would be lost.
  ui.start.disabled = false;
  ui.retry.addEventListener('click', startCamera);
  ui.switchCamera.addEventListener('click', () => switchCamera());
  ui.toggleMic.addEventListener('click', toggleMic);
  ui.unmute.addEventListener('click', unmute);
  wireChecklist();
  window.addEventListener('pagehide', () => call.signal?.close());
}

main();
