// Evidence capture in the agent console: record the customer's video (with the server's pre-roll),
// save the last seconds in one go, take snapshots (the newest frame or one of the best frames),
// and list what the case has saved. Everything goes through the capture API; the server records
// the encoded frames, the page only says when.
import { api, byTestId, formatDuration, show } from './util.js';
import {
  evidenceListItem, formatBytes, itemDuration, kindLabel, normalizeItem,
} from './evidence.js';

// The server's default pre-roll (INSPECT_PREROLL_S) until a capture tells us the real one.
const DEFAULT_PREROLL_S = 10;
const TICK_MS = 500;

/** Why a capture call failed, in words the agent can act on. */
function captureErrorText(err) {
  if (err.status === 409) return `Cannot capture now: ${err.message}`;
  if (err.status === 403) return 'Your role cannot capture evidence.';
  return err.message || 'The capture failed.';
}

/**
 * The capture controls under the customer's video and the case's evidence list.
 * `start(caseId, kind)` when a call is shown, `end()` when it ends (a running recording is
 * stopped so the clip is kept), `reset()` for another case.
 */
export class CapturePanel {
  #el;
  #caseId = null;
  #kind = null;
  #capture = null; // {id, startedMs, prerollS} while recording
  #prerollS = null;
  #timer = null;
  #busy = false;

  constructor(root = byTestId('capture-panel')) {
    this.#el = {
      root,
      start: byTestId('capture-start', root),
      stop: byTestId('capture-stop', root),
      state: byTestId('capture-state', root),
      saveLast: byTestId('capture-save-last', root),
      snapshot: byTestId('capture-snapshot', root),
      stage: byTestId('capture-stage', root),
      note: byTestId('capture-note', root),
      error: byTestId('capture-error', root),
      message: byTestId('capture-message', root),
      list: byTestId('evidence-list', root),
    };
    const el = this.#el;
    el.start.addEventListener('click', () => this.#run(() => this.#startRecording()));
    el.stop.addEventListener('click', () => this.#run(() => this.#stopRecording()));
    el.saveLast.addEventListener('click', () => this.#run(() => this.#saveLast()));
    el.snapshot.addEventListener('click', () => this.#run(() => this.#snapshot({})));
    this.#render();
  }

  /** Whether a recording is running. */
  get recording() {
    return this.#capture !== null;
  }

  /** Follow a case in a call: enable the controls, pick the default stage, load the list. */
  start(caseId, kind, prerollS = null) {
    if (caseId !== this.#caseId) this.reset();
    this.#caseId = caseId;
    // The server says how much it keeps (joined.preroll_s): "Save last" saves exactly that.
    if (Number(prerollS) > 0) {
      this.#prerollS = Number(prerollS);
      this.#el.saveLast.dataset.seconds = String(this.#prerollS);
      this.#el.saveLast.textContent = `Save last ${Math.round(this.#prerollS)} s`;
    }
    if (kind !== this.#kind) {
      this.#kind = kind;
      this.#el.stage.value = kind === 'return' ? 'return_receipt' : '';
    }
    this.#render();
    this.refresh();
  }

  /** The call ended: stop a running recording so the clip is kept, then disable the controls. */
  async end() {
    const caseId = this.#caseId;
    if (this.#capture) {
      try {
        await this.#stopRecording();
      } catch (err) {
        console.warn('could not stop the recording', err);
        this.#capture = null;
        this.#stopTimer();
      }
    }
    if (caseId === this.#caseId) this.#caseId = null;
    this.#render();
  }

  /** Forget the case: no recording, empty list, no messages. */
  reset() {
    this.#stopTimer();
    this.#capture = null;
    this.#caseId = null;
    this.#kind = null;
    this.#el.list.replaceChildren();
    this.#say('');
    this.#fail(null);
    this.#render();
  }

  /** Save one of the grading panel's best frames as a snapshot. */
  async saveFrame(frame, button) {
    button.disabled = true;
    const ok = await this.#run(() => this.#snapshot({ frame_id: frame.id }));
    button.textContent = ok ? 'Saved' : 'Save';
    button.disabled = ok;
  }

  /** Reload the case's evidence list. */
  async refresh() {
    const caseId = this.#caseId;
    if (!caseId) return;
    let data;
    try {
      data = await api('GET', `${this.#casePath(caseId)}/evidence`);
    } catch (err) {
      console.warn('evidence list not available', err);
      return;
    }
    if (caseId !== this.#caseId) return;
    this.#renderList((data.items ?? []).map(normalizeItem));
  }

  // -- actions ---------------------------------------------------------------------------------

  async #startRecording() {
    const data = await api('POST', `${this.#casePath()}/captures`, this.#stageBody());
    const capture = data.capture;
    this.#prerollS = Number(capture.preroll_s ?? this.#prerollS ?? DEFAULT_PREROLL_S);
    this.#capture = { id: capture.id, startedMs: Date.now(), prerollS: this.#prerollS };
    this.#startTimer();
    this.#say(`Recording. The clip also holds the ${Math.round(this.#prerollS)} s before you pressed Start.`);
  }

  async #stopRecording() {
    const capture = this.#capture;
    if (!capture) return;
    const caseId = this.#caseId;
    const data = await api('POST', `${this.#casePath(caseId)}/captures/${encodeURIComponent(capture.id)}/stop`);
    this.#capture = null;
    this.#stopTimer();
    this.#saved(data.item);
  }

  async #saveLast() {
    const seconds = Number(this.#el.saveLast.dataset.seconds) || this.#prerollS || DEFAULT_PREROLL_S;
    this.#saved((await this.#postLast(seconds)).item);
  }

  #postLast(seconds) {
    return api('POST', `${this.#casePath()}/captures/last`, { seconds, ...this.#stageBody() });
  }

  async #snapshot(extra) {
    const data = await api('POST', `${this.#casePath()}/snapshots`, { ...extra, ...this.#stageBody() });
    this.#saved(data.item);
  }

  /** Run one action at a time; failures show under the buttons. Resolves to success. */
  async #run(action) {
    if (this.#busy || !this.#caseId) return false;
    this.#busy = true;
    this.#fail(null);
    this.#render();
    try {
      await action();
      return true;
    } catch (err) {
      this.#fail(captureErrorText(err));
      return false;
    } finally {
      this.#busy = false;
      this.#render();
    }
  }

  // -- rendering -------------------------------------------------------------------------------

  #saved(saved, extra = '') {
    const item = normalizeItem(saved);
    const duration = itemDuration(item);
    const size = (item.files ?? []).reduce((sum, f) => sum + Number(f.size ?? 0), 0);
    const parts = [
      `${kindLabel(item.kind)} saved`,
      item.kind === 'clip' && Number.isFinite(duration) ? formatDuration(duration) : null,
      formatBytes(size),
      extra,
    ];
    this.#say(parts.filter(Boolean).join(' · '));
    this.refresh();
  }

  #renderList(items) {
    const newest = [...items].sort((a, b) => String(b.added_at).localeCompare(String(a.added_at)));
    this.#el.list.replaceChildren(...newest.map((item) => evidenceListItem(item)));
    this.#el.list.dataset.count = String(items.length);
  }

  #render() {
    const el = this.#el;
    const active = this.#caseId !== null;
    const recording = this.#capture !== null;
    el.root.dataset.state = recording ? 'recording' : active ? 'ready' : 'idle';
    show(el.start, !recording);
    show(el.stop, recording);
    el.start.disabled = !active || this.#busy;
    el.stop.disabled = this.#busy;
    el.saveLast.disabled = !active || this.#busy;
    el.snapshot.disabled = !active || this.#busy;
    el.stage.disabled = !active;
    this.#renderState();
  }

  #renderState() {
    const el = this.#el.state;
    const capture = this.#capture;
    el.dataset.state = capture ? 'recording' : 'idle';
    el.textContent = capture
      ? `REC ${formatDuration((Date.now() - capture.startedMs) / 1000)}`
      : 'Not recording';
    el.title = capture ? `Plus ${Math.round(capture.prerollS)} s of pre-roll` : '';
  }

  #startTimer() {
    this.#stopTimer();
    this.#timer = setInterval(() => this.#renderState(), TICK_MS);
  }

  #stopTimer() {
    clearInterval(this.#timer);
    this.#timer = null;
  }

  #say(text) {
    this.#el.message.textContent = text;
    show(this.#el.message, Boolean(text));
  }

  #fail(text) {
    this.#el.error.textContent = text ?? '';
    show(this.#el.error, Boolean(text));
  }

  #stageBody() {
    const stage = this.#el.stage.value;
    return stage ? { stage } : {};
  }

  #casePath(caseId = this.#caseId) {
    return `/api/cases/${encodeURIComponent(caseId)}`;
  }
}
