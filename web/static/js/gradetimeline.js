// The grade timeline under an archived clip: what the model and the agent said about the item,
// and, where the stored grading has times, markers on a bar aligned with the clip (time since
// record.started_at). Only times the record holds are drawn; nothing is interpolated.
import { formatDuration, h, label } from './util.js';
import { gradeBadge, percent, statusText } from './grading.js';
import { toSeconds } from './evidence.js';

/** Timed points in the stored grading: {t (unix s), kind, text, grade?}. */
export function timelinePoints(grading) {
  const model = modelView(grading);
  const points = [];
  const add = (t, kind, text, grade) => {
    const at = toSeconds(t);
    if (Number.isFinite(at)) points.push({ t: at, kind, text, grade });
  };
  // Earlier views kept with the record, if the server stores them.
  for (const view of grading?.views ?? grading?.timeline ?? []) {
    add(view.updated_at ?? view.at, 'view', `Model: ${view.grade ?? 'no grade'} · ${percent(view.confidence)}`, view.grade);
  }
  if (model) {
    add(model.started_at, 'start', 'Model started analysing the video');
    for (const d of model.damage ?? []) add(d.first_seen, 'damage', `${label(d.label)} first seen`);
    for (const c of model.codes ?? []) add(c.first_seen, 'code', `Code ${c.text} read`);
    add(model.updated_at, 'view', `Model view: ${model.grade ?? 'no grade'} · ${percent(model.confidence)}`, model.grade);
  }
  return points.sort((a, b) => a.t - b.t);
}

/** The model's view in a record's grading (`grading.model`, or the grading itself). */
function modelView(grading) {
  if (!grading) return null;
  if (grading.model) return grading.model;
  return grading.grade && grading.confidence !== undefined ? grading : null;
}

function summaryRow(title, testId, badge, ...text) {
  return h('div', { class: 'timeline-summary-row', 'data-testid': testId },
    h('span', { class: 'timeline-summary-title' }, title), badge, h('span', {}, ...text));
}

function summary(grading) {
  const model = modelView(grading);
  const rows = [];
  if (model) {
    const damage = (model.damage ?? []).map((d) => label(d.label ?? d).toLowerCase());
    rows.push(summaryRow('Model', 'timeline-model', gradeBadge(model.grade),
      model.grade ? `${percent(model.confidence)} confident · ${statusText(model)}` : 'No grade',
      ` · ${damage.length ? `damage: ${damage.join(', ')}` : 'no damage seen'}`));
  } else {
    rows.push(summaryRow('Model', 'timeline-model', null, h('span', { class: 'muted' }, 'The model did not grade this capture.')));
  }
  if (grading?.final_grade) {
    const source = grading.source === 'override' ? 'agent override' : 'from the agent\'s facts';
    rows.push(summaryRow('Agent', 'timeline-agent', gradeBadge(grading.final_grade), `final grade (${source})`));
  } else {
    rows.push(summaryRow('Agent', 'timeline-agent', null, h('span', { class: 'muted' }, 'No grade decided when this was captured.')));
  }
  return rows;
}

/** Draws into `root` (the `grade-timeline` element) for one item; follows `video` if a clip. */
export class GradeTimeline {
  #root;
  #video;
  #bar = null;
  #playhead = null;
  #start = Number.NaN;
  #recordLength = Number.NaN;
  #points = [];

  constructor(root, video) {
    this.#root = root;
    this.#video = video;
    video.addEventListener('timeupdate', () => this.#movePlayhead());
    video.addEventListener('durationchange', () => this.#layout());
  }

  /** Show the timeline of `item` (clips get the bar; snapshots only the summary). */
  render(item) {
    const record = item.record ?? {};
    const grading = record.grading;
    this.#start = toSeconds(record.started_at);
    this.#recordLength = toSeconds(record.ended_at) - this.#start;
    this.#points = item.kind === 'clip' ? timelinePoints(grading) : [];
    const parts = [h('h3', { class: 'detail-heading' }, 'Grade timeline'), ...summary(grading)];
    this.#bar = null;
    this.#playhead = null;
    if (item.kind === 'clip' && Number.isFinite(this.#start)) {
      this.#playhead = h('span', { class: 'timeline-playhead', 'aria-hidden': 'true' });
      this.#bar = h('div', { class: 'timeline-bar', 'data-testid': 'timeline-bar' }, this.#playhead);
      parts.push(this.#bar, h('ol', { class: 'timeline-points small', 'data-testid': 'timeline-points' }));
    }
    this.#root.replaceChildren(...parts);
    this.#layout();
  }

  clear() {
    this.#root.replaceChildren();
    this.#bar = null;
  }

  /** The clip's length: the player's once it knows it, else the record's. */
  #length() {
    const d = this.#video.duration;
    return Number.isFinite(d) && d > 0 ? d : this.#recordLength;
  }

  #layout() {
    if (!this.#bar) return;
    const length = this.#length();
    const list = this.#root.querySelector('[data-testid="timeline-points"]');
    const markers = [];
    const rows = [];
    for (const point of this.#points) {
      const offset = point.t - this.#start;
      const inside = Number.isFinite(length) && offset >= 0 && offset <= length;
      const where = offset < 0 ? 'before the clip' : inside ? formatDuration(offset) : 'after the clip';
      if (inside) markers.push(this.#marker(point, offset, length));
      rows.push(h('li', { 'data-kind': point.kind },
        inside
          ? h('button', { type: 'button', class: 'link-button', onclick: () => this.#seek(offset) }, where)
          : h('span', { class: 'muted' }, where),
        ` ${point.text}`));
    }
    this.#bar.replaceChildren(this.#playhead, ...markers);
    list.replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'The grading kept no times within this clip.')]));
    this.#movePlayhead();
  }

  #marker(point, offset, length) {
    const marker = h('button', {
      type: 'button', class: 'timeline-marker', 'data-testid': 'timeline-marker',
      'data-kind': point.kind, 'data-grade': point.grade ?? '',
      title: `${formatDuration(offset)} ${point.text}`, 'aria-label': `${formatDuration(offset)} ${point.text}`,
      onclick: () => this.#seek(offset),
    }, point.grade ?? '');
    // Through the CSSOM: the page's CSP blocks inline style attributes.
    marker.style.left = `${((offset / length) * 100).toFixed(2)}%`;
    return marker;
  }

  #seek(offset) {
    this.#video.currentTime = offset;
  }

  #movePlayhead() {
    const length = this.#length();
    if (!this.#playhead || !Number.isFinite(length) || length <= 0) return;
    const share = Math.min(1, Math.max(0, this.#video.currentTime / length));
    this.#playhead.style.left = `${(share * 100).toFixed(2)}%`;
  }
}
