// Returns analytics page: the filters (kept in the address, so a view can be shared) drive
// GET /api/analytics/{summary,returns,alerts} and the server-drawn charts
// (/api/analytics/chart.svg, put inline so their tooltips work); the CSV link follows them.
import { ApiError, api, byTestId, formatDateTime, h, show, wireLogout } from './util.js';

wireLogout();

const form = byTestId('analytics-filters');
const errorBox = byTestId('analytics-error');
const DIMENSION_NAMES = {
  sku: 'SKU', category: 'category', claimed_reason: 'claimed reason',
  verified_reason: 'verified reason', grade: 'grade', country: 'country', carrier: 'carrier',
  week: 'week', month: 'month',
};
const SLICE_FIELDS = ['since', 'until', 'sku', 'category', 'country', 'carrier',
  'claimed_reason', 'verified_reason', 'grade'];

/** The filled-in filters as query parameters (``dimension`` too when asked). */
function filters(withDimension = false) {
  const query = new URLSearchParams();
  const data = new FormData(form);
  for (const name of SLICE_FIELDS) {
    const value = String(data.get(name) ?? '').trim();
    if (value) query.set(name, value);
  }
  if (withDimension) query.set('dimension', String(data.get('dimension') || 'sku'));
  return query;
}

function fromAddress() {
  const query = new URLSearchParams(window.location.search);
  for (const element of form.elements) {
    if (element.name && query.has(element.name)) element.value = query.get(element.name);
  }
}

function percent(value) {
  return value === null || value === undefined ? '–' : `${(value * 100).toFixed(1)} %`;
}

function count(value) {
  return value === null || value === undefined ? '–' : Number(value).toLocaleString('en');
}

function hours(value) {
  return value === null || value === undefined ? '–' : `${value.toFixed(1)} h`;
}

function money(amounts) {
  const entries = Object.entries(amounts ?? {});
  if (!entries.length) return '–';
  return entries.map(([currency, amount]) => {
    try {
      return Number(amount).toLocaleString('en', { style: 'currency', currency, maximumFractionDigits: 0 });
    } catch {
      return `${amount} ${currency}`;
    }
  }).join(' + ');
}

function showError(err) {
  errorBox.textContent = err instanceof ApiError ? err.message : `Could not load: ${err}`;
  show(errorBox, true);
}

function tile(name, value, testid, note) {
  return h('div', { class: 'tile', 'data-testid': testid },
    h('span', { class: 'tile-name' }, name),
    h('strong', { class: value.length > 12 ? 'tile-value tile-value-small' : 'tile-value' }, value),
    note ? h('span', { class: 'tile-note muted small' }, note) : null);
}

function renderSummary(summary) {
  const total = summary.total;
  const slice = `${summary.since} to ${summary.until}`;
  const applied = Object.entries(summary.filters).map(([k, v]) => `${k.replace('_', ' ')} ${v}`);
  byTestId('analytics-slice').textContent = applied.length ? `${slice} · ${applied.join(', ')}` : slice;
  if (!form.elements.since.value) form.elements.since.value = summary.since;
  if (!form.elements.until.value) form.elements.until.value = summary.until;
  byTestId('analytics-summary').replaceChildren(
    tile('Returns', count(total.returns), 'tile-returns', `${count(total.decided)} decided`),
    tile('Units sold', count(total.units), 'tile-units'),
    tile('Return rate', percent(total.rate), 'tile-rate'),
    tile('Mismatched reasons', percent(total.mismatched_share), 'tile-mismatched',
      `${count(total.mismatched)} of ${count(total.compared)} verified`),
    tile('Damaged in transit', percent(total.damaged_share), 'tile-damaged'),
    tile('Median to decision', hours(total.median_hours_to_decision), 'tile-decision-time'),
    tile('Value recovered', money(total.value_recovered), 'tile-value',
      'order value × resale share by grade'),
  );
}

function renderTable(breakdown) {
  byTestId('table-dimension').textContent = DIMENSION_NAMES[breakdown.dimension] ?? breakdown.dimension;
  const body = byTestId('analytics-table').querySelector('tbody');
  const rows = breakdown.rows.map((row) => h('tr', { 'data-testid': 'analytics-row', 'data-key': row.key },
    h('th', { scope: 'row' }, row.label),
    h('td', {}, count(row.returns)),
    h('td', {}, count(row.units)),
    h('td', {}, percent(row.rate)),
    h('td', {}, percent(row.mismatched_share)),
    h('td', {}, percent(row.damaged_share)),
    h('td', {}, hours(row.median_hours_to_decision)),
    h('td', {}, money(row.value_recovered))));
  const total = breakdown.total;
  rows.push(h('tr', { class: 'total-row' },
    h('th', { scope: 'row' }, 'All'),
    h('td', {}, count(total.returns)), h('td', {}, count(total.units)),
    h('td', {}, percent(total.rate)), h('td', {}, percent(total.mismatched_share)),
    h('td', {}, percent(total.damaged_share)), h('td', {}, hours(total.median_hours_to_decision)),
    h('td', {}, money(total.value_recovered))));
  body.replaceChildren(...rows);
}

function renderAlerts(alerts) {
  const list = byTestId('alert-list');
  if (!alerts.length) {
    list.replaceChildren(h('li', { class: 'muted' }, list.dataset.empty));
    return;
  }
  list.replaceChildren(...alerts.map((alert) => h('li', { 'data-testid': 'alert', 'data-rule': alert.rule_id },
    h('span', { class: 'alert-rule' }, alert.rule_id),
    h('span', { class: 'alert-message' }, alert.message),
    h('span', { class: 'muted small' }, formatDateTime(alert.raised_at)))));
}

async function loadChart(figure, query) {
  const params = new URLSearchParams(query);
  params.set('chart', figure.dataset.chart);
  if (figure.dataset.metric) params.set('metric', figure.dataset.metric);
  if (figure.dataset.width) params.set('width', figure.dataset.width);
  const dimension = figure.dataset.dimension === '' ? query.get('dimension') : figure.dataset.dimension;
  params.delete('dimension');
  if (dimension) params.set('dimension', dimension);
  figure.setAttribute('aria-busy', 'true');
  try {
    const response = await fetch(`/api/analytics/chart.svg?${params}`, { credentials: 'same-origin' });
    const text = await response.text();
    if (!response.ok) {
      let message = `Chart failed (${response.status})`;
      try {
        message = JSON.parse(text).error.message;
      } catch {
        // not JSON: keep the status
      }
      figure.replaceChildren(h('p', { class: 'muted' }, message));
      return;
    }
    const parsed = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = parsed.documentElement;
    if (svg.nodeName !== 'svg') throw new Error('not an SVG document');
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    figure.replaceChildren(document.importNode(svg, true));
  } catch (err) {
    figure.replaceChildren(h('p', { class: 'muted' }, `Chart failed: ${err.message ?? err}`));
  } finally {
    figure.removeAttribute('aria-busy');
  }
}

async function load() {
  show(errorBox, false);
  const slice = filters();
  const withDimension = filters(true);
  window.history.replaceState(null, '', `${window.location.pathname}?${withDimension}`);
  byTestId('analytics-csv').href = `/api/analytics/returns.csv?${withDimension}`;
  document.body.dataset.loading = 'true';
  const charts = [...document.querySelectorAll('figure.chart')].map((figure) => loadChart(figure, withDimension));
  try {
    const [summary, breakdown, alerts] = await Promise.all([
      api('GET', `/api/analytics/summary?${slice}`),
      api('GET', `/api/analytics/returns?${withDimension}`),
      api('GET', '/api/analytics/alerts?limit=20'),
    ]);
    renderSummary(summary);
    renderTable(breakdown);
    renderAlerts(alerts.alerts);
  } catch (err) {
    showError(err);
  }
  await Promise.all(charts);
  document.body.dataset.loading = 'false';
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  load();
});
form.addEventListener('reset', () => {
  // After the browser cleared the fields.
  setTimeout(load, 0);
});
form.elements.dimension.addEventListener('change', load);

fromAddress();
load();
