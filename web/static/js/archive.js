// Evidence archive (/evidence, reviewers and admins): the viewing reason, the search form, the
// results list, and the detail pane of the selected item (evidencedetail.js).
import { api, byTestId, formatDateTime, h, show, wireLogout } from './util.js';
import { gradeBadge } from './grading.js';
import {
  itemGrade, itemTime, kindIcon, kindLabel, normalizeItem, stageLabel,
} from './evidence.js';
import { EvidenceDetail } from './evidencedetail.js';

const REASON_KEY = 'inspect.evidence.reason';
const SEARCH_FIELDS = ['order_id', 'tracking_number', 'case_id', 'unit_id', 'since', 'until', 'grade', 'stage', 'use'];

/** The "why are you opening evidence" field: remembered for the tab's session. */
function reasonField() {
  const input = byTestId('view-reason');
  const error = byTestId('view-reason-error');
  input.value = sessionStorage.getItem(REASON_KEY) ?? '';
  input.addEventListener('input', () => {
    sessionStorage.setItem(REASON_KEY, input.value.trim());
    if (input.value.trim()) show(error, false);
  });
  /** The reason, or null after asking for one. */
  return () => {
    const reason = input.value.trim();
    if (reason) return reason;
    show(error);
    input.focus();
    return null;
  };
}

/** A date input's day as an ISO instant: the start of that local day (or of the next one). */
function dayToIso(day, nextDay = false) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d + (nextDay ? 1 : 0)).toISOString();
}

/** The API query for the form (dates become instants; `until` includes the whole day). */
function searchQuery(form) {
  const data = new FormData(form);
  const query = new URLSearchParams();
  for (const key of SEARCH_FIELDS) {
    const value = String(data.get(key) ?? '').trim();
    if (!value) continue;
    if (key === 'since') query.set(key, dayToIso(value));
    else if (key === 'until') query.set(key, dayToIso(value, true));
    else query.set(key, value);
  }
  return query;
}

/** The form as it stands, for the page's own address (so a search can be linked to). */
function formParams(form) {
  const data = new FormData(form);
  const params = new URLSearchParams();
  for (const key of SEARCH_FIELDS) {
    const value = String(data.get(key) ?? '').trim();
    if (value) params.set(key, value);
  }
  return params;
}

function fillForm(form, params) {
  let any = false;
  for (const key of SEARCH_FIELDS) {
    const value = params.get(key);
    if (value === null || !form.elements[key]) continue;
    form.elements[key].value = value;
    any = true;
  }
  return any;
}

function rowFacts(item) {
  const record = item.record ?? {};
  return [
    `Case ${item.case_id}`,
    record.order_id && `Order ${record.order_id}`,
    record.tracking_number && `Tracking ${record.tracking_number}`,
  ].filter(Boolean).join(' · ');
}

function resultRow(item, { onOpen, selected }) {
  const record = item.record ?? {};
  const grade = itemGrade(item);
  return h('li', { class: 'evidence-row', 'data-testid': 'evidence-row', dataset: { itemId: item.id, kind: item.kind } },
    h('input', {
      type: 'checkbox', class: 'row-select', 'data-testid': 'evidence-select',
      'aria-label': 'Include in the export', checked: selected.has(item.id),
      onchange: (event) => (event.currentTarget.checked ? selected.add(item.id) : selected.delete(item.id)),
    }),
    h('button', { type: 'button', class: 'row-open', 'data-testid': 'evidence-row-open', onclick: () => onOpen(item.id) },
      kindIcon(item.kind),
      h('span', { class: 'row-main' },
        h('span', { class: 'row-title' },
          h('strong', {}, kindLabel(item.kind)),
          record.logistics_stage ? h('span', { class: 'stage-chip' }, stageLabel(record.logistics_stage)) : null,
          item.legal_hold ? h('span', { class: 'hold-badge', 'data-testid': 'row-hold' }, 'Legal hold') : null),
        h('span', { class: 'row-facts muted small' }, rowFacts(item)),
        h('span', { class: 'row-facts muted small' },
          formatDateTime(itemTime(item)),
          item.retain_until ? ` · keep until ${formatDateTime(item.retain_until)}` : '')),
      grade ? gradeBadge(grade, { title: 'Grade' }) : h('span', { class: 'grade-badge', title: 'Not graded' }, '–')));
}

class Archive {
  #form = byTestId('evidence-search');
  #results = byTestId('evidence-results');
  #count = byTestId('results-count');
  #note = byTestId('results-note');
  #error = byTestId('search-error');
  #items = [];
  #selected = new Set();
  #openId = null;
  #detail;

  constructor(reason) {
    this.#detail = new EvidenceDetail({
      reason,
      selection: () => [...new Set([...this.#selected, this.#openId].filter(Boolean))],
      onChanged: (item) => this.#replace(item),
      onDeleted: (id) => this.#remove(id),
    });
    this.#form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.search();
    });
    this.#form.addEventListener('reset', () => setTimeout(() => this.#remember(), 0));
  }

  /** Fill the form from the page address; search (and open `item=`) when it names anything. */
  async start() {
    const params = new URLSearchParams(window.location.search);
    if (!fillForm(this.#form, params)) return;
    await this.search();
    const itemId = params.get('item');
    if (itemId) this.open(itemId);
  }

  async search() {
    show(this.#error, false);
    this.#remember();
    const query = searchQuery(this.#form);
    const submit = byTestId('search-submit');
    submit.disabled = true;
    try {
      const data = await api('GET', `/api/evidence?${query}`);
      this.#items = (data.items ?? []).map(normalizeItem);
      this.#selected.clear();
      this.#render();
    } catch (err) {
      if (err.status === 401) {
        window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
        return;
      }
      this.#error.textContent = err.message;
      show(this.#error);
    } finally {
      submit.disabled = false;
    }
  }

  open(itemId) {
    this.#openId = itemId;
    this.#markOpen();
    this.#detail.open(itemId);
  }

  #remember() {
    const params = formParams(this.#form);
    const search = params.toString();
    window.history.replaceState(null, '', search ? `?${search}` : window.location.pathname);
  }

  #render() {
    const rows = this.#items.map((item) => resultRow(item, { onOpen: (id) => this.open(id), selected: this.#selected }));
    this.#results.replaceChildren(...rows);
    this.#results.dataset.empty = this.#items.length ? '' : 'No evidence matches this search.';
    this.#count.textContent = String(this.#items.length);
    const tracking = this.#form.elements.tracking_number.value.trim();
    this.#note.textContent = tracking && this.#items.length ? 'In logistics-stage order' : '';
    this.#markOpen();
  }

  #markOpen() {
    for (const row of this.#results.querySelectorAll('[data-testid="evidence-row"]')) {
      row.classList.toggle('is-open', row.dataset.itemId === this.#openId);
    }
  }

  #replace(item) {
    this.#items = this.#items.map((old) => (old.id === item.id ? item : old));
    this.#render();
  }

  #remove(id) {
    this.#items = this.#items.filter((item) => item.id !== id);
    this.#selected.delete(id);
    if (this.#openId === id) this.#openId = null;
    this.#render();
    this.#note.textContent = 'Item deleted (its log entries are kept).';
  }
}

function main() {
  wireLogout();
  new Archive(reasonField()).start();
}

main();
