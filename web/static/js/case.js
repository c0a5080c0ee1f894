// Case page: details, the stored decision and the timeline from GET /api/cases/{id}.
import {
  api, byTestId, copyFrom, formatDateTime, h, label, show, wireLogout,
} from './util.js';

const caseId = document.body.dataset.caseId;
const casePath = `/api/cases/${encodeURIComponent(caseId)}`;

const DETAIL_FIELDS = [
  ['kind', 'Kind'], ['customer_name', 'Customer'], ['customer_contact', 'Contact'],
  ['order_id', 'Order'], ['sku', 'SKU'], ['tracking_number', 'Tracking number'],
  ['reason', 'Reason'], ['agent_name', 'Agent'], ['created_at', 'Created'],
  ['waiting_at', 'Customer arrived'], ['in_call_at', 'Call started'],
  ['decided_at', 'Decided'], ['closed_at', 'Closed'],
];
const TIME_FIELDS = new Set(['created_at', 'waiting_at', 'in_call_at', 'decided_at', 'closed_at']);

function pair(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}

function detailValue(key, value) {
  if (TIME_FIELDS.has(key)) return formatDateTime(value);
  return key === 'kind' ? label(value) : String(value);
}

/** Enum-like values ("in_call") read as words; ids and free text stay as they are. */
function humanValue(value) {
  return typeof value === 'string' && /^[a-z]+(_[a-z]+)*$/.test(value) ? label(value) : String(value);
}

const HIDDEN_DATA_KEYS = new Set(['type', 'client_id', 'ts', 'seq']);

function renderDetails(c) {
  byTestId('case-state').textContent = label(c.state);
  byTestId('case-state').dataset.state = c.state;
  const rows = DETAIL_FIELDS
    .filter(([key]) => c[key] !== null && c[key] !== undefined && c[key] !== '')
    .map(([key, title]) => pair(title, detailValue(key, c[key])));
  byTestId('case-details').replaceChildren(...rows);
  show(byTestId('close-case'), c.state === 'decided');
}

function renderDecision(c) {
  const box = byTestId('case-decision');
  if (!c.decision && !c.outcome) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No decision yet.'));
    return;
  }
  const facts = c.facts ?? {};
  const rows = c.outcome
    ? [pair('Outcome', label(c.outcome)), pair('Resolution', c.resolution_note || '—')]
    : [
      pair('Decision', label(c.decision)),
      c.refund_amount != null ? pair('Refund', `${Number(c.refund_amount).toFixed(2)} ${c.currency ?? ''}`.trim()) : null,
      pair('Cosmetic', label(facts.cosmetic)),
      pair('Functional', label(facts.functional)),
      pair('Packaging', label(facts.packaging)),
      pair('Accessories', facts.accessories_complete ? 'Complete' : 'Incomplete'),
      c.grade ? pair('Grade', String(c.grade)) : null,
      c.note ? pair('Note', c.note) : null,
    ];
  box.replaceChildren(h('dl', { class: 'details', 'data-decision': c.decision ?? c.outcome }, rows));
}

function describeData(data) {
  if (!data || typeof data !== 'object') return '';
  return Object.entries(data)
    .filter(([k, v]) => v !== null && v !== undefined && typeof v !== 'object' && !HIDDEN_DATA_KEYS.has(k))
    .map(([k, v]) => `${label(k)}: ${humanValue(v)}`)
    .join(' · ');
}

function renderTimeline(events) {
  const items = (events ?? []).map((event) => h('li', { class: 'timeline-item', 'data-testid': 'timeline-event', 'data-type': event.type },
    h('time', {}, formatDateTime(event.at)),
    h('div', {},
      h('strong', {}, label(String(event.type).replace(/^case\./, '').replaceAll('.', ' '))),
      event.actor_name || event.actor
        ? h('span', { class: 'muted' }, ` · ${event.actor_name || event.actor}`)
        : null,
      describeData(event.data) ? h('div', { class: 'muted small' }, describeData(event.data)) : null)));
  byTestId('case-timeline').replaceChildren(
    ...(items.length ? items : [h('li', { class: 'muted' }, 'No events yet.')]),
  );
}

function showError(err) {
  const el = byTestId('error-message');
  el.textContent = err.status === 404 ? 'This case does not exist.' : err.message;
  show(el);
}

async function load() {
  try {
    const data = await api('GET', casePath);
    renderDetails(data.case);
    renderDecision(data.case);
    renderTimeline(data.events);
  } catch (err) {
    if (err.status === 401) {
      window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    showError(err);
  }
}

function wireActions() {
  const linkBox = byTestId('case-join-link');
  const input = linkBox.querySelector('[data-testid="join-url"]');
  byTestId('new-join-link').addEventListener('click', async () => {
    try {
      const data = await api('POST', `${casePath}/join-link`);
      input.value = data.join_url;
      show(linkBox);
      load();
    } catch (err) {
      showError(err);
    }
  });
  byTestId('copy-join-url').addEventListener('click', (event) => copyFrom(input, event.currentTarget));
  byTestId('close-case').addEventListener('click', async () => {
    try {
      await api('POST', `${casePath}/close`);
      load();
    } catch (err) {
      showError(err);
    }
  });
}

wireLogout();
wireActions();
load();
