// Live grading in the agent console: the model's view of the customer's video (`analysis`
// messages on the socket) and its sharpest frames (GET /api/cases/{id}/assessment, polled).
// The formatters are shared with the case page. The model's grade is evidence for the agent,
// never the verdict: the decision form derives the grade from the agent's facts.
import { api, byTestId, h, label, show } from './util.js';

export const GRADES = ['A', 'B', 'C', 'D'];
const POLL_MS = 5000;
// How long the video may play without any analysis before the panel says so.
const SILENT_MS = 15000;
const WAITING_TEXT = 'Waiting for video…';
const SILENT_TEXT = 'No analysis yet. The video is playing, but the model has sent nothing so far.';
const OFF_TEXT = 'Live grading is off on this server: decide from what you see.';

const NOT_SURE_REASONS = {
  too_few_frames: 'too few clear frames',
  low_confidence: 'low confidence',
  poor_quality: 'poor image quality',
};
const QUALITY_REASONS = {
  blurry: 'image blurry',
  too_dark: 'image too dark',
  overexposed: 'image overexposed',
};
const REF_NAMES = {
  unit_id: 'unit id',
  order_id: 'order',
  tracking_number: 'tracking number',
};

/** "93%" for a probability in [0, 1]. */
export function percent(p) {
  const value = Number(p);
  return Number.isFinite(value) ? `${Math.round(value * 100)}%` : '—';
}

/** Why the model is not sure, in words ("image too dark", "too few clear frames"). */
export function notSureText(view) {
  const reasons = view?.reasons ?? [];
  const quality = view?.quality ?? {};
  return reasons.map((reason) => {
    // "poor quality" says little: name what is wrong with the picture when the model knows.
    if (reason === 'poor_quality' && QUALITY_REASONS[quality.reason]) return QUALITY_REASONS[quality.reason];
    return NOT_SURE_REASONS[reason] ?? label(reason).toLowerCase();
  }).join(', ');
}

/** "Sure" or "Not sure: <reasons>". */
export function statusText(view) {
  if (view?.status !== 'not_sure') return 'Sure';
  const why = notSureText(view);
  return why ? `Not sure: ${why}` : 'Not sure';
}

/** A grade letter in a coloured square (`data-grade` drives the colour). */
export function gradeBadge(grade, attrs = {}) {
  const letter = GRADES.includes(grade) ? grade : '';
  return h('span', { class: 'grade-badge', ...attrs, 'data-grade': letter }, letter || '–');
}

/** Put a grade into an existing badge element. */
export function setBadge(el, grade) {
  const letter = GRADES.includes(grade) ? grade : '';
  el.dataset.grade = letter;
  el.textContent = letter || '–';
}

/** "discount channel · 70–85% of the new price" (or the description alone). */
export function channelText(channel) {
  if (!channel) return '';
  const range = channel.price_range;
  const share = Array.isArray(range) && range.length === 2
    ? ` · ${Math.round(range[0] * 100)}–${Math.round(range[1] * 100)}% of the new price`
    : '';
  return `${channel.description || label(channel.name)}${share}`;
}

/** "matches unit id" for a code that names one of the case's references. */
export function matchText(match) {
  const name = REF_NAMES[match.ref] ?? label(match.ref).toLowerCase();
  return match.exact ? `matches ${name}` : `close to ${name}`;
}

/** Chips for the damage the model saw, each with its highest probability. */
export function damageChips(damage) {
  return (damage ?? []).map((d) => h('li', {
    class: 'chip chip-damage', 'data-testid': `damage-${d.label}`, title: `now ${percent(d.prob)}`,
  }, label(d.label), h('span', { class: 'chip-value' }, percent(d.max_prob ?? d.prob))));
}

/** Rows for the codes read, with a badge per reference they match. */
export function codeRows(codes) {
  return (codes ?? []).map((code) => h('li', { class: 'code-row', 'data-testid': 'code-row' },
    h('span', { class: 'code-format' }, code.format || 'Code'),
    h('code', { class: 'code-text' }, code.text),
    (code.matches ?? []).map((m) => h('span', {
      class: `code-match ${m.exact ? 'code-match-exact' : 'code-match-near'}`,
      'data-testid': 'code-match',
      'data-ref': m.ref,
    }, matchText(m)))));
}

const LABEL_KINDS = Object.freeze({ serial: 'S/N', imei: 'IMEI', model: 'Model' });

/** Rows for the serials, IMEIs and model numbers read off labels, beside the codes. */
export function labelRows(labels) {
  return (labels ?? []).map((entry) => h('li', {
    class: 'code-row label-row', 'data-testid': 'label-row', 'data-kind': entry.kind,
  },
  h('span', { class: 'code-format' }, LABEL_KINDS[entry.kind] ?? label(entry.kind)),
  h('code', { class: 'code-text' }, entry.text),
  (entry.matches ?? []).map((m) => h('span', {
    class: 'code-match code-match-exact', 'data-testid': 'code-match', 'data-ref': m.ref,
  }, matchText(m)))));
}

/** "12 frames analysed · 1 skipped (blurry)". */
export function framesText(frames) {
  if (!frames) return '';
  const analysed = Number(frames.analysed ?? 0);
  const skipped = Number(frames.skipped ?? 0);
  const parts = [`${analysed} ${analysed === 1 ? 'frame' : 'frames'} analysed`];
  if (skipped) {
    const why = Object.entries(frames.skip_reasons ?? {})
      .map(([reason, n]) => `${n} ${(QUALITY_REASONS[reason] ?? label(reason)).replace(/^image /, '')}`)
      .join(', ');
    parts.push(`${skipped} skipped${why ? ` (${why})` : ''}`);
  }
  return parts.join(' · ');
}

/**
 * The console's live grading panel. `show(view)` renders an assessment; `start(caseId)` fetches
 * the stored view and the best frames now and every few seconds until `stop()`.
 */
export class GradingPanel {
  #el;
  #caseId = null;
  #timer = null;
  #view = null;
  #frameIds = '';
  #silentTimer = null;
  #listeners = new Set();
  #frameAction = null;

  constructor(root = byTestId('grading-panel')) {
    this.#el = {
      root,
      waiting: byTestId('grading-waiting', root),
      body: byTestId('grading-body', root),
      grade: byTestId('live-grade', root),
      confidence: byTestId('live-confidence', root),
      status: byTestId('live-status', root),
      quality: byTestId('live-quality', root),
      probs: byTestId('grade-probs', root),
      damage: byTestId('damage-list', root),
      codes: byTestId('code-list', root),
      frames: byTestId('frames-count', root),
      bestFrames: byTestId('best-frames', root),
      version: byTestId('model-version', root),
    };
  }

  /** The latest assessment shown (or null). */
  get view() {
    return this.#view;
  }

  /** Call `fn(view)` whenever the shown assessment changes. */
  onChange(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Put a "Save" button under each best frame that calls `fn(frame, button)`. */
  setFrameAction(fn) {
    this.#frameAction = fn;
    this.#frameIds = ''; // draw the frames again, with their buttons
  }

  /** Follow a case: clear the panel if it is another one, fetch now, then every few seconds.
   * `enabled` is the server's word (`joined.grading`): when false the panel says grading is off. */
  start(caseId, enabled = true) {
    if (caseId !== this.#caseId) this.reset();
    this.#caseId = caseId;
    if (!enabled) {
      this.stop();
      this.#el.waiting.textContent = OFF_TEXT;
      this.#el.root.dataset.state = 'off';
      return;
    }
    clearInterval(this.#timer);
    this.refresh();
    this.#timer = setInterval(() => this.refresh(), POLL_MS);
  }

  /** Stop polling (the call ended); what is shown stays until `reset()`. */
  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The customer's video plays: say so if no analysis follows within a few seconds. */
  videoPlaying() {
    clearTimeout(this.#silentTimer);
    this.#silentTimer = setTimeout(() => {
      if (!this.#view && this.#caseId) this.#el.waiting.textContent = SILENT_TEXT;
    }, SILENT_MS);
  }

  /** Back to "Waiting for video…". */
  reset() {
    this.stop();
    clearTimeout(this.#silentTimer);
    this.#el.waiting.textContent = WAITING_TEXT;
    this.#caseId = null;
    this.#view = null;
    this.#frameIds = '';
    const el = this.#el;
    el.root.dataset.state = 'waiting';
    show(el.waiting);
    show(el.body, false);
    el.frames.textContent = '';
    el.bestFrames.replaceChildren();
    el.version.textContent = '–';
    this.#emit();
  }

  /** Handle an `analysis` message from the socket. */
  onMessage(message) {
    if (!this.#caseId || message.case_id !== this.#caseId) return;
    this.show(message.assessment);
  }

  /** Fetch the stored view and the best frames of the followed case. */
  async refresh() {
    const caseId = this.#caseId;
    if (!caseId) return;
    let data;
    try {
      data = await api('GET', `/api/cases/${encodeURIComponent(caseId)}/assessment`);
    } catch (err) {
      if (err.status === 403 && caseId === this.#caseId) {
        // Not this user's call (an admin looking in): the server says why; asking again
        // every few seconds would not change its answer.
        this.stop();
        this.#el.waiting.textContent = err.message;
        this.#el.root.dataset.state = 'forbidden';
        return;
      }
      console.warn('assessment not available', err);
      return;
    }
    if (caseId !== this.#caseId) return;
    // The socket is usually ahead of the poll: never go back to an older view.
    const view = data.assessment;
    if (view && !(this.#view && (this.#view.updated_at ?? 0) > (view.updated_at ?? 0))) this.show(view);
    this.#renderFrames(data.frames ?? []);
  }

  /** Render one assessment (null: waiting). */
  show(view) {
    if (!view) return;
    this.#view = view;
    const el = this.#el;
    const notSure = view.status === 'not_sure';
    el.root.dataset.state = notSure ? 'not_sure' : 'sure';
    show(el.waiting, false);
    show(el.body);
    setBadge(el.grade, view.grade);
    el.grade.classList.toggle('grade-badge-unsure', notSure);
    // No grade before the first clear frame (every frame so far blurry or dark).
    el.confidence.textContent = view.grade ? `${percent(view.confidence)} confident` : 'No grade yet';
    el.status.textContent = statusText(view);
    el.status.dataset.status = view.status ?? '';
    const quality = view.quality;
    el.quality.textContent = quality && !quality.usable && QUALITY_REASONS[quality.reason]
      ? `Last frame: ${QUALITY_REASONS[quality.reason]}`
      : '';
    el.probs.replaceChildren(...GRADES.map((g) => this.#probRow(g, view.grade_probs?.[g] ?? 0, g === view.grade)));
    el.damage.replaceChildren(...damageChips(view.damage));
    el.codes.replaceChildren(...codeRows(view.codes), ...labelRows(view.labels));
    el.frames.textContent = framesText(view.frames);
    el.frames.dataset.analysed = String(view.frames?.analysed ?? 0);
    el.version.textContent = view.model_version ?? '–';
    this.#emit();
  }

  #probRow(grade, p, top) {
    const fill = h('span', { class: 'prob-fill', 'data-grade': grade });
    // Through the CSSOM: the page's CSP blocks inline style attributes.
    fill.style.width = `${Math.max(0, Math.min(100, Number(p) * 100)).toFixed(1)}%`;
    return h('li', { class: `prob-row${top ? ' prob-top' : ''}`, 'data-grade': grade, 'data-testid': `grade-prob-${grade}` },
      h('span', { class: 'prob-label' }, grade),
      h('span', { class: 'prob-track' }, fill),
      h('span', { class: 'prob-value' }, percent(p)));
  }

  #renderFrames(frames) {
    const ids = frames.map((f) => f.id).join(',');
    if (ids === this.#frameIds) return; // same frames: keep the images (no flicker)
    this.#frameIds = ids;
    // Newest first: the latest sharp view of the item is the most useful.
    const items = [...frames].sort((a, b) => b.ts - a.ts).map((f) => h('li', {},
      h('a', { href: f.url, target: '_blank', rel: 'noopener', title: 'Open full size in a new tab' },
        h('img', {
          src: f.url, alt: `Frame, sharpness ${Math.round(f.sharpness)}`, loading: 'lazy',
          width: f.width, height: f.height, 'data-testid': 'best-frame',
        })),
      this.#saveButton(f)));
    this.#el.bestFrames.replaceChildren(...items);
  }

  #saveButton(frame) {
    const action = this.#frameAction;
    if (!action) return null;
    return h('button', {
      type: 'button', class: 'btn btn-secondary btn-small frame-save', 'data-testid': 'save-frame',
      title: 'Save this frame as evidence (JPEG)',
      onclick: (event) => action(frame, event.currentTarget),
    }, 'Save');
  }

  #emit() {
    for (const fn of this.#listeners) fn(this.#view);
  }
}
