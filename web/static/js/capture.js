// Evidence capture, wherever a page shows live video: record (with the server's pre-roll), save
// the last seconds in one go, take snapshots (the newest frame or one of the best frames) and
// list what was saved. The agent console captures a case's call, the walkthrough one camera of
// a site; both go through the same capture API, under the case or under the camera. The server
// records the encoded frames, the page only says when.
import { api, byTestId, formatDuration, show } from './util.js';
import {
  evidenceListItem, formatBytes, gapsText, itemDuration, itemSize, kindLabel, normalizeItem, stageLabel,
} from './evidence.js';

// The server's default pre-roll (INSPECT_PREROLL_S) until it tells the page the real one.
const DEFAULT_PREROLL_S = 10;
const TICK_MS = 500;

/** What a capture is of: a case's call or one camera. Build with `CaptureTarget.case(id)`. */
export const CaptureTarget = Object.freeze({
  case: (id) => Object.freeze({ kind: 'case', id }),
  camera: (id) => Object.freeze({ kind: 'camera', id }),
});

const ROOTS = { case: '/api/cases', camera: '/api/cameras' };

/** The REST resource a target's captures live under. */
export function targetPath(target) {
  const root = ROOTS[target?.kind];
  if (!root) throw new Error(`not a capture target: ${JSON.stringify(target)}`);
  return `${root}/${encodeURIComponent(target.id)}`;
}

const sameTarget = (a, b) => a?.kind === b?.kind && a?.id === b?.id;

/**
 * The `data-testid`s of a panel's controls; the agent console's by default. `list` (the saved
 * items) is optional: only a case has an evidence list of its own.
 */
export const CONSOLE_CONTROLS = Object.freeze({
  root: 'capture-panel',
  start: 'capture-start',
  stop: 'capture-stop',
  state: 'capture-state',
  saveLast: 'capture-save-last',
  snapshot: 'capture-snapshot',
  stage: 'capture-stage',
  error: 'capture-error',
  message: 'capture-message',
  list: 'evidence-list',
});

/** Why a capture call failed, in words the agent can act on. */
function captureErrorText(err) {
  if (err.status === 409) return `Cannot capture now: ${err.message}`;
  if (err.status === 403) return 'Your role cannot capture evidence.';
  return err.message || 'The capture failed.';
}

/**
 * "Clip saved · 0:12 · 1.4 MB · Return receipt"; with `withId` (a panel with no list to find
 * the item in) "Clip saved as evidence <id> · ...".
 */
function savedText(item, { withId }) {
  const duration = itemDuration(item);
  const stage = item.record?.logistics_stage;
  return [
    withId ? `${kindLabel(item.kind)} saved as evidence ${item.id}` : `${kindLabel(item.kind)} saved`,
    item.kind === 'clip' && Number.isFinite(duration) ? formatDuration(duration) : null,
    gapsText(item),
    formatBytes(itemSize(item)),
    stage ? stageLabel(stage) : null,
  ].filter(Boolean).join(' · ');
}

/**
 * The capture controls of one page. `follow(target)` points them at a case or a camera (null:
 * nothing to capture), `end()` stops a running recording so the clip is kept, `reset()`
 * forgets everything. A recording belongs to its target: following another one leaves it
 * running on the server, and following it again offers Stop.
 *
 * `controls` names the elements (see `CONSOLE_CONTROLS`); `fields` maps request fields to text
 * inputs whose trimmed value goes with every capture (`{ note: 'focus-note' }`).
 */
export class CapturePanel {
  #el;
  #fields;
  #target = null;
  #capture = null; // {target, id, startedMs, prerollS} while recording
  #prerollS;
  #timer = null;
  #busy = false;

  constructor({ controls = CONSOLE_CONTROLS, fields = {} } = {}) {
    const root = byTestId(controls.root);
    const find = (name) => byTestId(controls[name], root);
    this.#el = {
      root,
      start: find('start'),
      stop: find('stop'),
      state: find('state'),
      saveLast: find('saveLast'),
      snapshot: find('snapshot'),
      stage: find('stage'),
      error: find('error'),
      message: find('message'),
      list: controls.list ? find('list') : null,
    };
    this.#fields = Object.entries(fields).map(([key, id]) => [key, byTestId(id, root)]);
    this.#prerollS = Number(this.#el.saveLast.dataset.seconds) || DEFAULT_PREROLL_S;
    const el = this.#el;
    el.start.addEventListener('click', () => this.#run(() => this.#startRecording()));
    el.stop.addEventListener('click', () => this.#run(() => this.#stopRecording()));
    el.saveLast.addEventListener('click', () => this.#run(() => this.#saveLast()));
    el.snapshot.addEventListener('click', () => this.#run(() => this.#snapshot({})));
    this.#render();
  }

  /** Whether a recording is running (of any target). */
  get recording() {
    return this.#capture !== null;
  }

  /**
   * Capture `target` from now on (null: nothing). A new target clears the messages and, when
   * `defaultStage` is given, selects it; following the same target again (a reconnect) keeps
   * what the user chose.
   */
  follow(target, { defaultStage } = {}) {
    if (!sameTarget(target, this.#target)) {
      this.#target = target;
      this.#say('');
      this.#fail(null);
      this.#el.list?.replaceChildren();
      if (target && defaultStage !== undefined) this.#el.stage.value = defaultStage;
    }
    this.#render();
    this.refresh();
  }

  /** How many seconds the server keeps before Start (its pre-roll): "Save last" saves that. */
  setPreroll(seconds) {
    if (!(Number(seconds) > 0)) return;
    this.#prerollS = Number(seconds);
    this.#el.saveLast.dataset.seconds = String(this.#prerollS);
    this.#el.saveLast.textContent = `Save last ${Math.round(this.#prerollS)} s`;
  }

  /** The call ended: stop a running recording so the clip is kept, then follow nothing. */
  async end() {
    const target = this.#target;
    if (this.#capture) {
      try {
        await this.#stopRecording();
      } catch (err) {
        console.warn('could not stop the recording', err);
        this.#capture = null;
        this.#stopTimer();
      }
    }
    if (sameTarget(target, this.#target)) this.#target = null;
    this.#render();
  }

  /** Forget everything: no target, no recording, empty list, no messages. */
  reset() {
    this.#stopTimer();
    this.#capture = null;
    this.#target = null;
    this.#el.list?.replaceChildren();
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

  /** Reload the evidence list (a case's; a camera has none of its own). */
  async refresh() {
    const target = this.#target;
    if (!this.#el.list || target?.kind !== 'case') return;
    let data;
    try {
      data = await api('GET', `${targetPath(target)}/evidence`);
    } catch (err) {
      console.warn('evidence list not available', err);
      return;
    }
    if (!sameTarget(target, this.#target)) return;
    this.#renderList((data.items ?? []).map(normalizeItem));
  }

  // -- actions ---------------------------------------------------------------------------------

  async #startRecording() {
    const target = this.#target;
    const data = await api('POST', `${targetPath(target)}/captures`, this.#body());
    const capture = data.capture;
    this.setPreroll(capture.preroll_s);
    this.#capture = { target, id: capture.id, startedMs: Date.now(), prerollS: this.#prerollS };
    this.#startTimer();
    this.#say(`Recording. The clip also holds the ${Math.round(this.#prerollS)} s before you pressed Start.`);
  }

  async #stopRecording() {
    const capture = this.#capture;
    if (!capture) return;
    const path = `${targetPath(capture.target)}/captures/${encodeURIComponent(capture.id)}/stop`;
    const data = await api('POST', path);
    this.#capture = null;
    this.#stopTimer();
    this.#saved(data.item);
  }

  async #saveLast() {
    const body = { seconds: this.#prerollS, ...this.#body() };
    this.#saved((await api('POST', `${targetPath(this.#target)}/captures/last`, body)).item);
  }

  async #snapshot(extra) {
    const body = { ...extra, ...this.#body() };
    this.#saved((await api('POST', `${targetPath(this.#target)}/snapshots`, body)).item);
  }

  /** Run one action at a time; failures show under the buttons. Resolves to success. */
  async #run(action) {
    if (this.#busy || !this.#target) return false;
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

  /** The stage and the optional fields that go with every capture. */
  #body() {
    const body = {};
    if (this.#el.stage.value) body.stage = this.#el.stage.value;
    for (const [key, input] of this.#fields) {
      const value = input.value.trim();
      if (value) body[key] = value;
    }
    return body;
  }

  // -- rendering -------------------------------------------------------------------------------

  #saved(saved) {
    const item = normalizeItem(saved);
    this.#say(savedText(item, { withId: !this.#el.list }), item.id);
    this.refresh();
  }

  #renderList(items) {
    const newest = [...items].sort((a, b) => String(b.added_at).localeCompare(String(a.added_at)));
    this.#el.list.replaceChildren(...newest.map((item) => evidenceListItem(item)));
    this.#el.list.dataset.count = String(items.length);
  }

  #render() {
    const el = this.#el;
    const active = this.#target !== null;
    const recordingHere = this.#recordingHere();
    // One recording at a time: while another target records, only that one can be stopped.
    const blocked = !active || this.#busy || (this.#capture !== null && !recordingHere);
    el.root.dataset.state = recordingHere ? 'recording' : active ? 'ready' : 'idle';
    show(el.start, !recordingHere);
    show(el.stop, recordingHere);
    el.start.disabled = blocked;
    el.stop.disabled = this.#busy;
    el.saveLast.disabled = blocked;
    el.snapshot.disabled = blocked;
    el.stage.disabled = !active;
    this.#renderState();
  }

  #recordingHere() {
    return this.#capture !== null && sameTarget(this.#capture.target, this.#target);
  }

  #renderState() {
    const el = this.#el.state;
    const capture = this.#recordingHere() ? this.#capture : null;
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

  #say(text, itemId = '') {
    this.#el.message.textContent = text;
    this.#el.message.dataset.itemId = itemId;
    show(this.#el.message, Boolean(text));
  }

  #fail(text) {
    this.#el.error.textContent = text ?? '';
    show(this.#el.error, Boolean(text));
  }
}
