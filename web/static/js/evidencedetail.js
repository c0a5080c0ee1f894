// The archive's detail pane for one evidence item: the clip or photo, the grade timeline, the
// record, the integrity check, the custody trail, and the actions (export a dispute bundle, legal
// hold / release, delete). Every read carries the reviewer's reason and is a POST that the
// archive logs; files are then fetched through the read ticket it answers. Every action asks for
// a reason too.
import { ApiError, api, byTestId, formatDateTime, h, label, show } from './util.js';
import {
  formatBytes, gapSpans, kindLabel, mainFile, normalizeIntegrity, normalizeItem, readTicket, shaPrefix,
  stageLabel,
} from './evidence.js';
import { GradeTimeline } from './gradetimeline.js';

const RECORD_FIELDS = [
  ['case_id', 'Case'], ['order_id', 'Order'], ['tracking_number', 'Tracking number'],
  ['unit_id', 'Unit code'], ['sku', 'SKU'], ['use', 'Use'], ['logistics_stage', 'Logistics stage'],
  ['operator', 'Operator'], ['started_at', 'Started'], ['ended_at', 'Ended'],
  ['retention_class', 'Retention class'], ['privacy_notice_version', 'Privacy notice'], ['note', 'Note'],
];
const TIME_FIELDS = new Set(['started_at', 'ended_at']);

const ACTIONS = {
  export: { label: 'Why export this bundle?', confirm: 'Export and download', keepReason: true },
  hold: { label: 'Why put this item on legal hold?', confirm: 'Put on legal hold', keepReason: true },
  release: { label: 'Why release the legal hold?', confirm: 'Release hold', keepReason: false },
  delete: { label: 'Why delete this item? (it cannot be undone)', confirm: 'Delete for good', keepReason: false },
};

function pair(term, value, testId) {
  return h('div', {}, h('dt', {}, term), h('dd', { 'data-testid': testId }, value));
}

function recordValue(key, value) {
  if (TIME_FIELDS.has(key)) return formatDateTime(value);
  if (key === 'logistics_stage') return stageLabel(value);
  if (key === 'use') return label(value);
  return String(value);
}

/** "ok" / "failed" chip for one integrity check. */
function check(ok) {
  return h('span', { class: `check-chip ${ok ? 'check-ok' : 'check-bad'}` }, ok ? 'OK' : 'FAILED');
}

function integrityRows(integrity) {
  const rows = (integrity.files ?? []).map((f) => h('li', { 'data-testid': 'integrity-file', 'data-ok': String(Boolean(f.ok)) },
    check(f.ok), ` File ${f.name}: `,
    f.ok
      ? ['SHA-256 matches ', h('code', { title: f.expected ?? '' }, shaPrefix(f.expected))]
      : f.status === 'missing' || !f.actual
        ? ['the file is missing']
        : ['SHA-256 expected ', h('code', { title: f.expected ?? '' }, shaPrefix(f.expected)),
          ', found ', h('code', { title: f.actual ?? '' }, shaPrefix(f.actual))]));
  if (integrity.record_ok !== undefined) {
    rows.push(h('li', { 'data-testid': 'integrity-record', 'data-ok': String(Boolean(integrity.record_ok)) },
      check(integrity.record_ok), ` Record: ${integrity.record_ok ? 'matches the logged record' : 'differs from the logged record'}`));
  }
  const inclusion = integrity.inclusion;
  if (inclusion) {
    rows.push(h('li', { 'data-testid': 'integrity-inclusion', 'data-ok': String(Boolean(inclusion.ok)) },
      check(inclusion.ok),
      ` Inclusion proof: entry ${inclusion.leaf_index} of a log of ${inclusion.tree_size} entries`));
  }
  if (integrity.tree_head_signature_ok !== undefined) {
    rows.push(h('li', { 'data-testid': 'integrity-signature', 'data-ok': String(Boolean(integrity.tree_head_signature_ok)) },
      check(integrity.tree_head_signature_ok),
      ` Signed tree head: ${integrity.tree_head_signature_ok ? 'signature valid' : 'signature does not verify'}`));
  }
  for (const problem of integrity.problems ?? []) {
    rows.push(h('li', { 'data-testid': 'integrity-problem' }, check(false), ` ${problem}`));
  }
  return rows;
}

const CUSTODY_ACTIONS = {
  'item.added': 'Added to the archive',
  'item.viewed': 'Viewed',
  'item.downloaded': 'Downloaded',
  'item.exported': 'Exported in a dispute bundle',
  'item.held': 'Put on legal hold',
  'item.released': 'Legal hold released',
  'item.deleted': 'Deleted',
  'item.expired': 'Expired and removed',
  'retention.changed': 'Retention changed',
};

/** A log timestamp as unix seconds (the log keeps milliseconds) or the ISO string. */
function logTime(value) {
  return typeof value === 'number' && value > 1e11 ? value / 1000 : value;
}

/** A custody-log entry's parts, whatever the server names them. */
function custodyParts(entry) {
  return {
    at: logTime(entry.at ?? entry.timestamp ?? entry.time ?? entry.ts),
    who: entry.actor_name ?? entry.actor ?? entry.who ?? entry.user ?? entry.operator,
    what: entry.action ?? entry.kind ?? entry.event ?? entry.type ?? entry.what,
    why: entry.reason ?? entry.why,
    index: entry.log_index ?? entry.index ?? entry.leaf_index,
  };
}

function custodyRow(entry) {
  const { at, who, what, why, index } = custodyParts(entry);
  return h('li', { class: 'timeline-item', 'data-testid': 'custody-entry', 'data-action': what ?? '' },
    h('time', {}, formatDateTime(at)),
    h('div', {},
      h('strong', {}, CUSTODY_ACTIONS[what] ?? label(what)),
      who ? h('span', { class: 'muted' }, ` · ${who}`) : null,
      index !== undefined && index !== null ? h('span', { class: 'muted small' }, ` · log #${index}`) : null,
      why ? h('div', { class: 'muted small' }, `Why: ${why}`) : null));
}

/** The refusal of a delete (or another action) in words. */
function refusalText(err, item) {
  if (err.code === 'on_legal_hold') return 'Refused: this item is on legal hold. Release the hold before deleting it.';
  if (err.code === 'retention_active') {
    const until = item?.retain_until ? ` until ${formatDateTime(item.retain_until)}` : '';
    return `Refused: the retention period is still running; this item must be kept${until}.`;
  }
  if (err.status === 403) return 'Your role cannot do this.';
  return err.message || 'The request failed.';
}

/** The file name the server gave the download, or a fallback. */
function downloadName(response, fallback) {
  const header = response.headers.get('Content-Disposition') ?? '';
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(header);
  return match ? decodeURIComponent(match[1]) : fallback;
}

/** POST the export and hand the zip to the browser as a download. */
async function downloadBundle(itemIds, reason) {
  let response;
  try {
    response = await fetch('/api/evidence/export', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/zip, application/json' },
      body: JSON.stringify({ item_ids: itemIds, reason }),
    });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data?.error?.code ?? `http_${response.status}`,
      data?.error?.message ?? `Export failed (${response.status})`);
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const name = downloadName(response, `evidence-${itemIds[0]}.zip`);
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
  return { size: blob.size, name };
}

/**
 * How to check a bundle offline against this archive's own key: the bundle carries its verifier
 * and a public key, so a forged bundle with a key of its own passes unless the key id is pinned.
 */
async function verifyCommand(bundleName) {
  try {
    const head = await api('GET', '/api/evidence/tree-head');
    return `python3 verify.py ${bundleName} --expect-key-id ${head.key_id}`;
  } catch {
    return null;
  }
}

/**
 * The detail pane. `reason()` gives the viewing reason (or null after asking), `selection()` the
 * ids to export; `onChanged(item)` and `onDeleted(id)` keep the results list in step.
 */
export class EvidenceDetail {
  #el;
  #item = null;
  #pending = null;
  #timeline;
  #hooks;

  constructor({ reason, selection, onChanged, onDeleted }, root = byTestId('evidence-detail')) {
    this.#hooks = { reason, selection, onChanged, onDeleted };
    this.#el = {
      root,
      title: byTestId('detail-title', root),
      hold: byTestId('detail-hold', root),
      error: byTestId('detail-error', root),
      video: byTestId('evidence-video', root),
      image: byTestId('evidence-image', root),
      integrity: byTestId('integrity-status', root),
      record: byTestId('evidence-record', root),
      files: byTestId('evidence-files', root),
      custody: byTestId('custody-log', root),
      exportButton: byTestId('export-bundle', root),
      holdButton: byTestId('hold-toggle', root),
      deleteButton: byTestId('delete-item', root),
      form: byTestId('action-form', root),
      formLabel: byTestId('action-label', root),
      reason: byTestId('action-reason', root),
      confirm: byTestId('action-confirm', root),
      actionError: byTestId('action-error', root),
      actionResult: byTestId('action-result', root),
    };
    this.#timeline = new GradeTimeline(byTestId('grade-timeline', root), this.#el.video);
    this.#wire();
  }

  /** Fetch and show one item (logged as a view with the reason). */
  async open(itemId) {
    const reason = this.#hooks.reason();
    if (!reason) return;
    show(this.#el.root);
    this.#closeForm();
    this.#message(null);
    try {
      const data = await api('POST', `/api/evidence/${encodeURIComponent(itemId)}/view`, { reason });
      this.#show(data, reason);
    } catch (err) {
      this.#el.error.textContent = err.status === 404 ? 'This item is no longer in the archive.' : err.message;
      show(this.#el.error);
    }
  }

  #show(data, reason) {
    const item = normalizeItem(data.item);
    const integrity = normalizeIntegrity(data.integrity);
    const custody = data.custody;
    const mediaChanged = item.id !== this.#item?.id;
    this.#item = item;
    const el = this.#el;
    show(el.error, false);
    el.root.dataset.itemId = item.id;
    el.title.textContent = `${kindLabel(item.kind)} · case ${item.case_id}`;
    show(el.hold, Boolean(item.legal_hold));
    if (mediaChanged) this.#showMedia(item, reason);
    this.#timeline.render(item);
    this.#renderRecord(item);
    this.#renderFiles(item, reason);
    this.#renderIntegrity(integrity);
    el.custody.replaceChildren(...(custody ?? []).map(custodyRow));
    el.holdButton.textContent = item.legal_hold ? 'Release hold' : 'Legal hold';
    el.holdButton.dataset.held = String(Boolean(item.legal_hold));
    // Any reviewer may put a hold; only an admin lifts one (so no one alone releases and deletes).
    const mayRelease = document.body.dataset.role === 'admin';
    el.holdButton.disabled = Boolean(item.legal_hold) && !mayRelease;
    el.holdButton.title = el.holdButton.disabled ? 'Only an administrator can release a legal hold' : '';
  }

  async #showMedia(item, reason) {
    const { video, image } = this.#el;
    const file = mainFile(item);
    video.pause();
    video.removeAttribute('src');
    image.removeAttribute('src');
    show(video, false);
    show(image, false);
    if (!file) return;
    let src;
    try {
      src = await readTicket(file, reason);
    } catch (err) {
      this.#el.error.textContent = `The ${item.kind === 'clip' ? 'clip' : 'photo'} cannot be opened: ${err.message}`;
      show(this.#el.error);
      return;
    }
    if (this.#item?.id !== item.id) return; // another item was opened meanwhile
    if (item.kind === 'clip') {
      show(video);
      video.src = src;
      video.load();
    } else {
      show(image);
      image.src = src;
      image.alt = `Snapshot of case ${item.case_id}`;
    }
  }

  #renderRecord(item) {
    const record = item.record ?? {};
    const rows = RECORD_FIELDS
      .filter(([key]) => record[key] !== null && record[key] !== undefined && record[key] !== '')
      .map(([key, title]) => pair(title, recordValue(key, record[key]), `record-${key}`));
    const gaps = gapSpans(item);
    if (gaps !== null) rows.push(pair('Gaps', gaps || 'None', 'record-gaps'));
    rows.push(
      pair('Archived', formatDateTime(item.added_at)),
      pair('Keep until', formatDateTime(item.retain_until), 'record-retain-until'),
      pair('Legal hold', item.legal_hold ? 'Yes' : 'No', 'record-legal-hold'),
      pair('Log entry', item.log_index ?? '—'),
    );
    this.#el.record.replaceChildren(...rows);
  }

  #renderFiles(item, reason) {
    this.#el.files.replaceChildren(...(item.files ?? []).map((f) => h('li', { 'data-testid': 'evidence-file' },
      h('a', {
        href: f.url, download: f.name, 'data-testid': 'evidence-file-download',
        onclick: (event) => {
          event.preventDefault();
          this.#download(f, reason);
        },
      }, f.name),
      h('span', { class: 'muted small' }, ` ${formatBytes(f.size)} · SHA-256 `),
      h('code', { class: 'sha-full' }, f.sha256))));
  }

  /** Log the download, then hand the file behind its read ticket to the browser. */
  async #download(file, reason) {
    try {
      const url = await readTicket(file, reason);
      const link = h('a', { href: url, download: file.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (err) {
      this.#message(refusalText(err, this.#item), err.code);
    }
  }

  #renderIntegrity(integrity) {
    const el = this.#el.integrity;
    if (!integrity) {
      el.dataset.ok = '';
      el.replaceChildren(h('strong', {}, 'Integrity not reported'));
      return;
    }
    const ok = Boolean(integrity.ok);
    el.dataset.ok = String(ok);
    el.replaceChildren(
      h('div', { class: 'integrity-head' },
        h('span', { class: 'integrity-mark', 'aria-hidden': 'true' }, ok ? 'OK' : '!'),
        h('strong', { 'data-testid': 'integrity-headline' },
          ok ? 'Integrity verified: unaltered since capture' : 'Integrity check FAILED: do not rely on this item')),
      h('ul', { class: 'integrity-list' }, integrityRows(integrity)));
  }

  // -- actions ---------------------------------------------------------------------------------

  #wire() {
    const el = this.#el;
    el.exportButton.addEventListener('click', () => this.#ask('export'));
    el.holdButton.addEventListener('click', () => this.#ask(this.#item?.legal_hold ? 'release' : 'hold'));
    el.deleteButton.addEventListener('click', () => this.#ask('delete'));
    byTestId('action-cancel', el.root).addEventListener('click', () => this.#closeForm());
    el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#confirm();
    });
    // The player may not know a live-written WebM's length: seek far once so it finds out.
    el.video.addEventListener('loadedmetadata', () => {
      if (el.video.duration === Infinity) {
        el.video.addEventListener('durationchange', () => { el.video.currentTime = 0; }, { once: true });
        el.video.currentTime = 1e101;
      }
    });
  }

  #ask(action) {
    if (!this.#item) return;
    const spec = ACTIONS[action];
    const el = this.#el;
    this.#pending = action;
    this.#message(null);
    const count = action === 'export' ? this.#hooks.selection().length : 1;
    el.formLabel.textContent = action === 'export' && count > 1 ? `${spec.label} (${count} items)` : spec.label;
    el.confirm.textContent = spec.confirm;
    el.confirm.classList.toggle('btn-danger', action === 'delete');
    el.confirm.classList.toggle('btn-primary', action !== 'delete');
    el.form.dataset.action = action;
    el.reason.value = spec.keepReason ? (this.#hooks.reason() ?? '') : '';
    show(el.form);
    el.reason.focus();
  }

  #closeForm() {
    this.#pending = null;
    show(this.#el.form, false);
  }

  async #confirm() {
    const action = this.#pending;
    const reason = this.#el.reason.value.trim();
    if (!action) return;
    if (!reason) {
      this.#message('Give a reason: it is written to the log with the action.', 'invalid');
      return;
    }
    const item = this.#item;
    this.#el.confirm.disabled = true;
    try {
      const done = await this.#perform(action, item, reason);
      this.#closeForm();
      this.#message(null);
      this.#success(done);
    } catch (err) {
      // A refusal (409) will not change by trying again: close the form, keep the message.
      if (err.status === 409) this.#closeForm();
      this.#message(refusalText(err, item), err.code);
    } finally {
      this.#el.confirm.disabled = false;
    }
  }

  async #perform(action, item, reason) {
    const path = `/api/evidence/${encodeURIComponent(item.id)}`;
    if (action === 'export') {
      const ids = this.#hooks.selection();
      const bundle = await downloadBundle(ids, reason);
      const command = await verifyCommand(bundle.name);
      await this.open(item.id); // the export is in the custody trail now
      const done = `Dispute bundle downloaded (${ids.length} ${ids.length === 1 ? 'item' : 'items'}, ${formatBytes(bundle.size)}).`;
      if (!command) return done;
      return [done, h('br'), 'Check it with this archive\'s key: ',
        h('code', { 'data-testid': 'verify-command' }, command)];
    }
    if (action === 'delete') {
      await api('DELETE', path, { reason });
      this.#item = null;
      show(this.#el.root, false);
      this.#hooks.onDeleted(item.id);
      return 'Deleted.';
    }
    const data = await api('POST', `${path}/${action}`, { reason });
    this.#hooks.onChanged(normalizeItem(data.item));
    await this.open(item.id); // show the hold in the record and the custody trail
    return action === 'hold' ? 'On legal hold: it cannot be deleted until released.' : 'Legal hold released.';
  }

  #message(text, code = '') {
    const el = this.#el.actionError;
    el.textContent = text ?? '';
    el.dataset.code = text ? code ?? '' : '';
    show(el, Boolean(text));
    if (text) show(this.#el.actionResult, false);
  }

  #success(content) {
    const el = this.#el.actionResult;
    el.replaceChildren(...[content].flat().map((part) => (part instanceof Node ? part : document.createTextNode(part))));
    show(el);
  }
}
