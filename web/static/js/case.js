// Case page: details, the stored decision, the grading record and the timeline from
// GET /api/cases/{id}, and the case's evidence from GET /api/cases/{id}/evidence.
import {
  api, byTestId, copyFrom, formatDateTime, h, label, show, wireLogout,
} from './util.js';
import {
  channelText, codeRows, damageChips, framesText, gradeBadge, percent, statusText,
} from './grading.js';
import { evidenceListItem, normalizeItem } from './evidence.js';

const caseId = document.body.dataset.caseId;
const casePath = `/api/cases/${encodeURIComponent(caseId)}`;

const DETAIL_FIELDS = [
  ['kind', 'Kind'], ['customer_name', 'Customer'], ['customer_contact', 'Contact'],
  ['customer_locale', 'Language'], ['customer_time_zone', 'Time zone'],
  ['order_id', 'Order'], ['sku', 'SKU'], ['tracking_number', 'Tracking number'],
  ['unit_id', 'Unit code'], ['carrier', 'Carrier / marketplace'], ['shipped_at', 'Shipped'],
  ['delivered_at', 'Delivered'],
  ['reason', 'Reason'], ['agent_name', 'Agent'], ['created_at', 'Created'],
  ['waiting_at', 'Customer arrived'], ['in_call_at', 'Call started'],
  ['decided_at', 'Decided'], ['closed_at', 'Closed'],
];
const TIME_FIELDS = new Set([
  'created_at', 'waiting_at', 'in_call_at', 'decided_at', 'closed_at', 'shipped_at', 'delivered_at',
]);

function pair(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}

function languageName(code) {
  try {
    return new Intl.DisplayNames(['en'], { type: 'language' }).of(code) ?? code;
  } catch {
    return code;
  }
}

function detailValue(key, value) {
  if (TIME_FIELDS.has(key)) return formatDateTime(value);
  if (key === 'customer_locale') return `${languageName(value)} (${value})`;
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
  renderClaims(c.claim_deadlines ?? []);
}

/** Claim deadlines of the case's carriers and marketplaces, soonest first. */
function renderClaims(deadlines) {
  const list = byTestId('claim-deadlines');
  show(list.closest('section'), deadlines.length > 0);
  list.replaceChildren(...deadlines.map((d) => {
    const left = d.days_left < 0 ? `passed ${-d.days_left} days ago` : `${d.days_left} days left`;
    return h('li', { 'data-testid': 'claim-deadline', 'data-days-left': String(d.days_left),
      class: d.days_left < 0 ? 'claim-passed' : d.days_left <= 7 ? 'claim-soon' : '' },
    h('strong', {}, d.name), ` · ${formatDateTime(d.deadline)} (${left})`,
    h('div', { class: 'muted small' }, `${d.claim} · counted from ${label(d.basis)} · ${d.source}`));
  }));
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
      c.grading?.final_grade ? pair('Final grade', c.grading.final_grade)
        : (c.grade ? pair('Grade', String(c.grade)) : null),
      c.note ? pair('Note', c.note) : null,
    ];
  box.replaceChildren(h('dl', { class: 'details', 'data-decision': c.decision ?? c.outcome }, rows));
}

function gradingItem(title, testId, ...children) {
  return h('section', { class: 'grading-record-item', 'data-testid': testId }, h('h3', {}, title), children);
}

function modelItem(model) {
  if (!model) {
    return gradingItem('Model view', 'grading-model', h('p', { class: 'muted small' }, 'The model did not see the video.'));
  }
  return gradingItem('Model view', 'grading-model',
    h('div', { class: 'grading-record-head' },
      gradeBadge(model.grade),
      h('div', {},
        h('div', {}, h('strong', {}, `${percent(model.confidence)} confident`)),
        h('div', { class: 'muted small' }, statusText(model)))),
    model.damage?.length ? h('ul', { class: 'chip-list' }, damageChips(model.damage)) : h('div', { class: 'muted small' }, 'No damage seen'),
    model.codes?.length ? h('ul', { class: 'code-list' }, codeRows(model.codes)) : null,
    h('div', { class: 'muted small' }, [framesText(model.frames), model.model_version && `model ${model.model_version}`]
      .filter(Boolean).join(' · ')),
    h('div', { class: 'muted small' }, 'Evidence for the agent, not the verdict.'));
}

function renderGrading(c) {
  const box = byTestId('case-grading');
  const grading = c.grading;
  if (!grading || (!grading.final_grade && !grading.model)) {
    box.replaceChildren(h('p', { class: 'muted' }, c.kind === 'support' ? 'Support calls are not graded.' : 'No grading recorded yet.'));
    return;
  }
  const items = [modelItem(grading.model)];
  const derived = grading.derived;
  if (derived) {
    items.push(gradingItem('From the facts', 'grading-derived',
      h('div', { class: 'grading-record-head' },
        gradeBadge(derived.grade),
        h('div', {}, h('div', {}, derived.explanation), h('div', { class: 'muted small' }, `${derived.rules_version} · rule ${derived.rule}`)))));
  }
  if (grading.override) {
    items.push(gradingItem('Agent override', 'grading-override',
      h('div', { class: 'grading-record-head' },
        gradeBadge(grading.override.grade),
        h('div', {}, h('div', { class: 'muted small' }, 'Reason'), h('div', {}, grading.override.reason)))));
  }
  if (grading.final_grade) {
    items.push(h('section', { class: 'grading-record-item grading-record-final', 'data-testid': 'grading-final', 'data-grade': grading.final_grade, 'data-source': grading.source },
      h('h3', {}, 'Final grade'),
      h('div', { class: 'grading-record-head' },
        gradeBadge(grading.final_grade),
        h('div', {},
          h('div', {}, h('strong', {}, grading.source === 'override' ? 'Set by the agent (override)' : 'Derived by the rule table')),
          h('div', { class: 'muted small', 'data-testid': 'grading-resale-channel' }, `Resale: ${channelText(grading.resale_channel)}`)))));
  }
  box.replaceChildren(h('div', { class: 'grading-record' }, items));
}

/** What a timeline event's data says, in words; some event types get their own wording. */
function describeEvent(event) {
  const data = event.data;
  if (event.type === 'grading.model_view' && data) {
    const parts = [
      data.grade && `Grade ${data.grade}`,
      data.confidence != null && `${percent(data.confidence)} confident`,
      data.status && statusText(data),
      data.damage?.length ? `damage: ${data.damage.map((d) => label(d).toLowerCase()).join(', ')}` : 'no damage seen',
      data.model_version && `model ${data.model_version}`,
    ];
    return parts.filter(Boolean).join(' · ');
  }
  if (event.type === 'transcript.segment' && data) {
    const said = `(${String(data.language ?? '').toUpperCase()}) “${data.text ?? ''}”`;
    return data.translation ? `${said} · English: “${data.translation}”` : said;
  }
  if (event.type === 'captions.changed' && data) return data.enabled ? 'on' : 'off';
  return describeData(data);
}

const EVENT_TITLES = {
  'grading.model_view': "Model's view of the video",
  'transcript.segment': 'Said',
  'captions.changed': 'Captions switched',
};

function eventTitle(type) {
  return EVENT_TITLES[type] ?? label(String(type).replace(/^case\./, '').replaceAll('.', ' '));
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
      h('strong', {}, eventTitle(event.type)),
      event.actor_name || event.actor
        ? h('span', { class: 'muted' }, ` · ${event.actor_name || event.actor}`)
        : null,
      describeEvent(event) ? h('div', { class: 'muted small' }, describeEvent(event)) : null)));
  byTestId('case-timeline').replaceChildren(
    ...(items.length ? items : [h('li', { class: 'muted' }, 'No events yet.')]),
  );
}

/** The case's clips and snapshots; reviewers and admins get links into the archive. */
async function loadEvidence() {
  const list = byTestId('evidence-list');
  const archiveLink = ['reviewer', 'admin'].includes(document.body.dataset.role);
  try {
    const data = await api('GET', `${casePath}/evidence`);
    const items = (data.items ?? []).map(normalizeItem).sort((a, b) => String(b.added_at).localeCompare(String(a.added_at)));
    list.replaceChildren(...items.map((item) => evidenceListItem(item, { archiveLink })));
    list.dataset.count = String(items.length);
  } catch (err) {
    list.dataset.empty = err.status === 404 ? 'No clips or snapshots saved for this case.' : `Evidence not available: ${err.message}`;
  }
}

/** The case's transcript: who said what, when, in which language, with the English. */
async function loadTranscript() {
  const list = byTestId('transcript');
  try {
    const data = await api('GET', `${casePath}/transcript`);
    byTestId('transcript-state').textContent = !data.available
      ? 'Captions are switched off on this service'
      : (data.enabled ? 'Captions on' : 'Captions off for this case');
    list.replaceChildren(...(data.segments ?? []).map((s) => h('li', {
      class: 'transcript-line', 'data-testid': 'transcript-line', 'data-role': s.role ?? '', 'data-language': s.language ?? '',
    },
    h('div', { class: 'transcript-meta' },
      h('time', {}, formatDateTime(s.started_at)),
      h('strong', {}, s.name || label(s.role)),
      h('span', { class: 'caption-lang', title: languageName(s.language ?? '') }, String(s.language ?? '').toUpperCase())),
    h('p', { class: 'transcript-text', lang: s.language || undefined, 'data-testid': 'transcript-text' }, s.text),
    s.translation ? h('p', { class: 'transcript-translation', lang: 'en', 'data-testid': 'transcript-translation' }, s.translation) : null)));
    list.dataset.count = String(data.segments?.length ?? 0);
  } catch (err) {
    list.dataset.empty = `Transcript not available: ${err.message}`;
  }
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
    renderGrading(data.case);
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
      byTestId('invitation-text').value = data.invitation?.text ?? '';
      show(byTestId('case-invitation'), Boolean(data.invitation?.text));
      load();
    } catch (err) {
      showError(err);
    }
  });
  byTestId('copy-join-url').addEventListener('click', (event) => copyFrom(input, event.currentTarget));
  byTestId('copy-invitation').addEventListener('click', (event) => copyFrom(byTestId('invitation-text'), event.currentTarget));
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
loadEvidence();
loadTranscript();
