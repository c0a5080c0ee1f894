// Agent console: the live queue, accepting a case, the call (customer video and voice in, the
// agent's microphone out), chat, live grading, evidence capture, and the decision or outcome form.
import { CallPeer, tryPlay } from './call.js';
import { CaptionsPanel } from './captionspanel.js';
import { ReasonPanel } from './reasonpanel.js';
import { CapturePanel, CaptureTarget } from './capture.js';
import { ChatPanel } from './chat.js';
import { GradeForm } from './gradeform.js';
import { GradingPanel, channelText, percent } from './grading.js';
import { InspectionPanel } from './inspect.js';
import { SignalingErrorCode } from './protocol.js';
import { SignalClient, SocketState } from './signal.js';
import {
  api, byTestId, copyFrom, formatDuration, h, label, show, wireLogout,
} from './util.js';

const CASE_KEY = 'inspect.agent.case';

const ui = {
  lobbyState: byTestId('lobby-state'),
  queueList: byTestId('queue-list'),
  queueCount: byTestId('queue-count'),
  queueEmpty: byTestId('queue-empty'),
  queueNotice: byTestId('queue-notice'),
  idle: byTestId('call-idle'),
  console: byTestId('call-console'),
  title: byTestId('call-case-title'),
  details: byTestId('call-case-details'),
  state: byTestId('connection-state'),
  video: byTestId('remote-video'),
  placeholder: byTestId('video-placeholder'),
  audio: byTestId('remote-audio'),
  unmute: byTestId('unmute-audio'),
  toggleMic: byTestId('toggle-mic'),
  micState: byTestId('mic-state'),
  leave: byTestId('leave-call'),
  decisionForm: byTestId('decision-form'),
  decisionSelect: byTestId('decision-select'),
  amountField: byTestId('refund-amount-field'),
  amount: byTestId('refund-amount'),
  decisionError: byTestId('decision-error'),
  outcomeForm: byTestId('outcome-form'),
  outcomeError: byTestId('outcome-error'),
  result: byTestId('decision-result'),
};

const state = {
  signal: null,
  chat: null,
  queue: [],
  pendingAccept: null,
  currentCase: null, // case summary of the call we are in
  shownCase: null, // id of the case the console shows (chat, forms)
  joinedCall: false,
  mic: null, // MediaStream | null
  micTried: false,
  peer: null,
  peerState: 'new',
  customer: null,
  customerLeft: false,
  decided: false,
  grading: null, // GradingPanel
  gradeForm: null, // GradeForm
  capture: null, // CapturePanel
  inspect: null, // InspectionPanel
  captions: null, // CaptionsPanel
  reasons: null, // ReasonPanel
};

const caseIdOf = (c) => c?.case_id ?? c?.id;

/** Whether a failed accept means another agent has the case (rather than a fault). */
const isTaken = (message) => message.code === SignalingErrorCode.ALREADY_ACCEPTED
  || message.code === SignalingErrorCode.NOT_WAITING;

// -- queue -----------------------------------------------------------------------------------

function waitingSince(c) {
  if (typeof c.waiting_since === 'number') return c.waiting_since * 1000;
  const iso = c.waiting_at ?? c.created_at;
  return iso ? Date.parse(iso) : Date.now();
}

function renderQueue() {
  const cases = [...state.queue].sort((a, b) => waitingSince(a) - waitingSince(b));
  ui.queueCount.textContent = String(cases.length);
  show(ui.queueEmpty, cases.length === 0);
  ui.queueList.replaceChildren(...cases.map(renderQueueItem));
  tickTimers();
}

function renderQueueItem(c) {
  const id = caseIdOf(c);
  const meta = [c.order_id && `Order ${c.order_id}`, c.sku && `SKU ${c.sku}`].filter(Boolean).join(' · ');
  const busy = state.pendingAccept !== null || state.currentCase !== null;
  return h('li', { class: 'queue-item', 'data-testid': `queue-item-${id}`, dataset: { caseId: id } },
    h('div', { class: 'queue-main' },
      h('div', { class: 'queue-title' },
        h('span', { class: 'queue-name' }, c.customer_name || 'Customer'),
        h('span', { class: `kind-badge kind-${c.kind}` }, c.kind === 'support' ? 'Support' : 'Return')),
      meta ? h('div', { class: 'queue-meta muted' }, meta) : null,
      c.reason ? h('div', { class: 'queue-reason muted' }, c.reason) : null),
    h('div', { class: 'queue-side' },
      h('span', { class: 'wait-timer', 'data-testid': `wait-${id}`, dataset: { since: waitingSince(c) } }, '0:00'),
      h('button', {
        type: 'button', class: 'btn btn-primary btn-small', 'data-testid': `accept-${id}`,
        disabled: busy, onclick: () => accept(id),
      }, state.pendingAccept === id ? 'Accepting…' : 'Accept')));
}

function tickTimers() {
  const now = Date.now();
  for (const el of ui.queueList.querySelectorAll('.wait-timer')) {
    const seconds = (now - Number(el.dataset.since)) / 1000;
    el.textContent = formatDuration(seconds);
    el.classList.toggle('wait-long', seconds > 120);
  }
}

function notice(text) {
  ui.queueNotice.textContent = text;
  show(ui.queueNotice, Boolean(text));
}

async function accept(caseId) {
  notice('');
  state.pendingAccept = caseId;
  renderQueue();
  await ensureMic(); // the click is the user gesture browsers want for the permission prompt
  if (!state.signal.send({ type: 'accept', case_id: caseId })) {
    state.pendingAccept = null;
    notice('Not connected to the server — try again in a moment.');
    renderQueue();
  }
}

function onAcceptFailed(message) {
  const id = state.pendingAccept;
  state.pendingAccept = null;
  const taken = isTaken(message);
  notice(taken ? 'Another agent has already taken this case.' : message.message || 'Could not accept the case.');
  if (id && taken) state.queue = state.queue.filter((c) => caseIdOf(c) !== id);
  renderQueue();
}

// -- microphone ------------------------------------------------------------------------------

async function ensureMic() {
  if (state.micTried) return state.mic;
  state.micTried = true;
  try {
    state.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    ui.micState.textContent = 'Microphone on';
  } catch (err) {
    state.mic = null;
    ui.micState.textContent = 'Microphone unavailable — the customer cannot hear you (use chat).';
    show(ui.toggleMic, false);
  }
  return state.mic;
}

function toggleMic() {
  const track = state.mic?.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  ui.toggleMic.setAttribute('aria-pressed', String(!track.enabled));
  ui.toggleMic.textContent = track.enabled ? 'Mute microphone' : 'Unmute microphone';
  ui.micState.textContent = track.enabled ? 'Microphone on' : 'Microphone muted';
}

// -- call ------------------------------------------------------------------------------------

function setPill(key, text) {
  ui.state.dataset.state = key;
  ui.state.textContent = text;
}

function renderCallState() {
  if (!state.currentCase) return setPill('idle', 'Not in a call');
  if (state.signal.state === SocketState.RECONNECTING) return setPill('reconnecting', 'Reconnecting…');
  if (!state.joinedCall) return setPill('connecting', 'Connecting…');
  if (!state.customer) {
    return setPill('waiting', state.customerLeft ? 'Customer left the call' : 'Waiting for the customer');
  }
  const pc = state.peerState;
  if (pc === 'connected') return setPill('connected', `Connected with ${state.customer.name || 'customer'}`);
  if (pc === 'failed' || pc === 'disconnected') return setPill('reconnecting', 'Reconnecting…');
  return setPill('connecting', 'Connecting…');
}

function describeCase(c) {
  ui.title.textContent = `${c.kind === 'support' ? 'Support call' : 'Return'} · ${c.customer_name || 'Customer'}`;
  ui.details.textContent = [
    c.order_id && `Order ${c.order_id}`, c.sku && `SKU ${c.sku}`, c.reason && `Reason: ${c.reason}`,
  ].filter(Boolean).join(' · ') || `Case ${caseIdOf(c)}`;
}

function enterCall(message) {
  const summary = message.case;
  const id = caseIdOf(summary);
  state.currentCase = summary;
  state.joinedCall = true;
  sessionStorage.setItem(CASE_KEY, id);
  if (state.shownCase !== id) {
    // A different call than the one on screen (not a reconnect into the same one).
    state.shownCase = id;
    state.chat.reset();
    state.grading.reset();
    state.capture.reset();
    state.decided = false;
    resetDecisionForms(summary);
  }
  state.grading.start(id, message.grading !== false);
  state.inspect.attach({ signal: state.signal, caseId: id });
  state.captions.attach({ caseId: id, participantId: message.participant_id });
  state.reasons.attach(id, summary.kind);
  state.capture.setPreroll(message.preroll_s);
  // A returned item is filed as received back unless the agent picks another stage.
  state.capture.follow(CaptureTarget.case(id), { defaultStage: summary.kind === 'return' ? 'return_receipt' : '' });
  const customer = (message.participants ?? []).find((p) => p.role === 'customer');
  state.customer = customer ?? null;
  state.customerLeft = false;
  describeCase(summary);
  show(ui.idle, false);
  show(ui.console);
  state.chat.setEnabled(true);
  state.chat.joined(message);
  // The microphone is usually ready (asked on Accept); after a page reload it is asked here.
  ensureMic().then(() => {
    if (caseIdOf(state.currentCase) === id && state.joinedCall) startPeer(message.ice_servers);
  });
  renderQueue();
  renderCallState();
}

function startPeer(iceServers) {
  state.peer?.close();
  const peer = new CallPeer({ signal: state.signal, iceServers, localStream: state.mic, recvVideo: true });
  state.peer = peer;
  state.peerState = 'new';
  state.inspect.setPeer(peer);
  peer.on('track', ({ track, streams }) => onTrack(track, streams));
  peer.on('state', (pcState) => {
    if (peer !== state.peer) return;
    state.peerState = pcState;
    renderCallState();
    if (pcState === 'failed') state.signal.reconnectNow();
  });
  peer.on('error', (err) => console.warn('negotiation failed', err));
  peer.start();
}

async function onTrack(track, streams) {
  if (track.kind === 'video') {
    ui.video.srcObject = streams[0] ?? new MediaStream([track]);
    ui.video.addEventListener('playing', () => {
      show(ui.placeholder, false);
      state.grading.videoPlaying();
    }, { once: true });
    await tryPlay(ui.video);
  } else {
    ui.audio.srcObject = new MediaStream([track]);
    show(ui.unmute, !(await tryPlay(ui.audio)));
  }
}

function exitCall() {
  // A running recording is stopped, so the clip is kept (best effort, in the background).
  state.capture.end();
  state.peer?.close();
  state.peer = null;
  state.currentCase = null;
  state.joinedCall = false;
  state.customer = null;
  state.shownCase = null;
  sessionStorage.removeItem(CASE_KEY);
  ui.video.srcObject = null;
  ui.audio.srcObject = null;
  show(ui.placeholder);
  show(ui.console, false);
  show(ui.idle);
  state.chat.setEnabled(false);
  state.chat.reset();
  state.grading.reset();
  state.inspect.reset();
  state.captions.reset();
  state.reasons.reset();
  renderQueue();
  renderCallState();
}

async function leaveCall() {
  // Stop a running recording while the customer is still in the call.
  await state.capture.end();
  state.signal.send({ type: 'leave' });
  exitCall();
}

// -- decision --------------------------------------------------------------------------------

function resetDecisionForms(summary) {
  const isSupport = summary.kind === 'support';
  ui.decisionForm.reset();
  ui.outcomeForm.reset();
  show(ui.decisionError, false);
  show(ui.outcomeError, false);
  show(ui.decisionForm, !isSupport);
  show(ui.outcomeForm, isSupport);
  show(ui.result, false);
  ui.leave.textContent = 'Leave call';
  syncAmountField();
  if (!isSupport) state.gradeForm.reset();
}

function syncAmountField() {
  const partial = ui.decisionSelect.value === 'partial_refund';
  show(ui.amountField, partial);
  ui.amount.required = partial;
}

function decisionBody(form) {
  const data = new FormData(form);
  const body = {
    decision: data.get('decision'),
    facts: {
      cosmetic: data.get('cosmetic'),
      functional: data.get('functional'),
      packaging: data.get('packaging'),
      accessories_complete: data.get('accessories_complete') !== null,
    },
  };
  const note = String(data.get('note') ?? '').trim();
  if (note) body.note = note;
  const override = state.gradeForm.override();
  if (override) body.grade_override = override;
  if (body.decision === 'partial_refund') {
    const amount = Number(data.get('refund_amount'));
    if (!Number.isFinite(amount) || amount <= 0) throw new Error('Enter the refund amount (more than 0).');
    body.refund_amount = amount;
    body.currency = data.get('currency');
  }
  return body;
}

function outcomeBody(form) {
  const data = new FormData(form);
  const note = String(data.get('resolution_note') ?? '').trim();
  if (!note) throw new Error('Describe how the call was resolved.');
  return { outcome: data.get('outcome'), resolution_note: note };
}

async function submitDecision(event, form, errorEl, build) {
  event.preventDefault();
  show(errorEl, false);
  const id = caseIdOf(state.currentCase);
  let body;
  try {
    body = build(form);
  } catch (err) {
    errorEl.textContent = err.message;
    show(errorEl);
    return;
  }
  const submit = form.querySelector('[type="submit"]');
  submit.disabled = true;
  try {
    const response = await api('POST', `/api/cases/${encodeURIComponent(id)}/decision`, body);
    showResult(response.case);
  } catch (err) {
    errorEl.textContent = err.message;
    show(errorEl);
  } finally {
    submit.disabled = false;
  }
}

function resultRows(c) {
  if (c.kind === 'support') {
    return [['Outcome', label(c.outcome)], ['Resolution', c.resolution_note || '—']];
  }
  const facts = c.facts ?? {};
  const rows = [['Decision', label(c.decision)]];
  if (c.refund_amount !== null && c.refund_amount !== undefined) {
    rows.push(['Refund', `${Number(c.refund_amount).toFixed(2)} ${c.currency ?? ''}`.trim()]);
  }
  rows.push(
    ['Cosmetic', label(facts.cosmetic)],
    ['Functional', label(facts.functional)],
    ['Packaging', label(facts.packaging)],
    ['Accessories', facts.accessories_complete ? 'Complete' : 'Incomplete'],
  );
  const grading = c.grading;
  if (grading?.final_grade) {
    rows.push(['Final grade', grading.final_grade, 'result-final-grade']);
    rows.push(['Grade source', grading.source === 'override' ? 'Agent override' : 'Rule table', 'result-grade-source']);
    if (grading.override?.reason) rows.push(['Override reason', grading.override.reason]);
    rows.push(['Resale channel', channelText(grading.resale_channel), 'result-resale-channel']);
    if (grading.model?.grade) {
      rows.push(['Model saw', `${grading.model.grade} · ${percent(grading.model.confidence)}`]);
    }
  } else if (c.grade) {
    rows.push(['Grade', String(c.grade)]);
  }
  if (c.note) rows.push(['Note', c.note]);
  return rows;
}

function showResult(c) {
  state.decided = true;
  const id = caseIdOf(c);
  show(ui.decisionForm, false);
  show(ui.outcomeForm, false);
  ui.result.replaceChildren(
    h('h2', {}, 'Decision recorded'),
    h('p', { class: 'muted' }, `State: ${label(c.state)}`),
    h('dl', { class: 'details' }, resultRows(c).map(([k, v, testId]) => h('div', {}, h('dt', {}, k), h('dd', { 'data-testid': testId }, v)))),
    h('a', { href: `/agent/cases/${encodeURIComponent(id)}`, 'data-testid': 'case-link', class: 'btn btn-secondary btn-small' }, 'Open case page →'),
  );
  ui.result.dataset.decision = c.decision ?? c.outcome ?? '';
  ui.result.dataset.finalGrade = c.grading?.final_grade ?? '';
  ui.result.dataset.gradeSource = c.grading?.source ?? '';
  show(ui.result);
  ui.leave.textContent = 'End call · back to queue';
}

// -- signaling -------------------------------------------------------------------------------

function onJoined(message) {
  if (message.case) {
    enterCall(message);
    return;
  }
  // Lobby. If we were in a call the server no longer has us there.
  if (state.currentCase) exitCall();
  ui.lobbyState.dataset.state = 'connected';
  ui.lobbyState.textContent = 'Live';
}

function onError(message) {
  if (message.ref === 'accept') {
    onAcceptFailed(message);
  } else if (message.ref === 'join' && state.currentCase) {
    // The call we tried to resume is gone: back to the lobby.
    exitCall();
    state.signal.send({ type: 'join' });
  } else if (isTaken(message)) {
    onAcceptFailed(message);
  } else {
    console.warn('server error', message);
  }
}

function onParticipant(message) {
  const p = message.participant ?? {};
  if (p.role !== 'customer') return;
  state.customer = message.event === 'joined' ? p : null;
  state.customerLeft = message.event === 'left';
  renderCallState();
}

function onCaseChanged(summary) {
  if (!summary || caseIdOf(summary) !== caseIdOf(state.currentCase)) return;
  state.currentCase = { ...state.currentCase, ...summary };
}

function connect() {
  const savedCase = sessionStorage.getItem(CASE_KEY);
  if (savedCase) state.currentCase = { case_id: savedCase, kind: 'return' };
  const signal = new SignalClient({
    joinMessage: () => (state.currentCase
      ? { type: 'join', case_id: caseIdOf(state.currentCase), resume_from: state.chat.lastSeq }
      : { type: 'join' }),
  });
  state.signal = signal;
  state.chat = new ChatPanel({
    signal,
    form: byTestId('chat-form'),
    log: byTestId('chat-log'),
    input: byTestId('chat-input'),
    button: byTestId('chat-send'),
  });
  signal.on('state', (s) => {
    if (s !== SocketState.OPEN) state.joinedCall = false;
    ui.lobbyState.dataset.state = s === SocketState.OPEN ? 'connected' : s;
    ui.lobbyState.textContent = { open: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', closed: 'Offline' }[s];
    renderCallState();
  });
  signal.on('queue', (message) => {
    state.queue = message.cases ?? [];
    renderQueue();
  });
  signal.on('accepted', (message) => {
    state.pendingAccept = null;
    state.currentCase = message.case;
    // Ours now: it is no longer waiting, whatever the next queue update says.
    state.queue = state.queue.filter((c) => caseIdOf(c) !== caseIdOf(message.case));
    renderQueue();
  });
  signal.on('joined', onJoined);
  signal.on('participant', onParticipant);
  signal.on('case', (message) => onCaseChanged(message.case));
  signal.on('analysis', (message) => state.grading.onMessage(message));
  signal.on('caption', (message) => state.captions.caption(message));
  signal.on('captions', (message) => state.captions.switched(message));
  signal.on('error', onError);
  signal.on('fatal', () => window.location.assign('/login?next=/agent'));
  window.addEventListener('online', () => signal.reconnectNow());
  signal.connect();
}

// -- create case -----------------------------------------------------------------------------

function wireCreateCase() {
  const form = byTestId('create-case-form');
  const error = byTestId('create-error');
  const result = byTestId('create-result');
  const urlInput = byTestId('join-url');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    show(error, false);
    const data = new FormData(form);
    const body = { kind: data.get('kind'), customer_name: String(data.get('customer_name')).trim() };
    for (const key of ['order_id', 'sku', 'reason', 'claimed_reason', 'order_currency', 'customer_locale', 'country']) {
      const value = String(data.get(key) ?? '').trim();
      if (value) body[key] = key === 'order_currency' || key === 'country' ? value.toUpperCase() : value;
    }
    const value = String(data.get('order_value') ?? '').trim();
    if (value) body.order_value = Number(value);
    if (!body.customer_name) {
      error.textContent = 'Enter the customer name.';
      show(error);
      return;
    }
    try {
      const created = await api('POST', '/api/cases', body);
      urlInput.value = created.join_url;
      byTestId('create-invitation').value = created.invitation?.text ?? '';
      show(result);
      form.reset();
    } catch (err) {
      error.textContent = err.message;
      show(error);
    }
  });
  byTestId('copy-join-url').addEventListener('click', (event) => copyFrom(urlInput, event.currentTarget));
}

function main() {
  wireLogout();
  wireCreateCase();
  state.grading = new GradingPanel();
  state.capture = new CapturePanel();
  state.inspect = new InspectionPanel({ onFiled: () => state.capture.refresh() });
  state.captions = new CaptionsPanel({ onPhrase: (text, lang) => state.chat.sendText(text, lang) });
  state.reasons = new ReasonPanel();
  state.grading.setFrameAction((frame, button) => state.capture.saveFrame(frame, button));
  state.gradeForm = new GradeForm(ui.decisionForm);
  state.grading.onChange((view) => state.gradeForm.showModel(view));
  ui.decisionSelect.addEventListener('change', syncAmountField);
  ui.decisionForm.addEventListener('submit', (e) => submitDecision(e, ui.decisionForm, ui.decisionError, decisionBody));
  // A message about what was wrong goes away once the agent changes the form.
  ui.decisionForm.addEventListener('input', () => show(ui.decisionError, false));
  ui.outcomeForm.addEventListener('submit', (e) => submitDecision(e, ui.outcomeForm, ui.outcomeError, outcomeBody));
  ui.toggleMic.addEventListener('click', toggleMic);
  ui.leave.addEventListener('click', leaveCall);
  ui.unmute.addEventListener('click', async () => show(ui.unmute, !(await tryPlay(ui.audio))));
  connect();
  state.chat.setEnabled(false);
  setInterval(tickTimers, 1000);
  renderQueue();
}

main();
