// The return rules page (admins): the table in force as JSON, checked and tried on past cases
// (POST /api/returns/rules/dry-run) before it is saved as a new version (PUT /api/returns/rules);
// the versions with who saved them and why; what conditions may test and actions do.
import { api, byTestId, formatDateTime, h, show, wireLogout } from './util.js';

const ui = {
  version: byTestId('rules-version'),
  form: byTestId('rules-form'),
  editor: byTestId('rules-editor'),
  error: byTestId('rules-error'),
  days: byTestId('dry-run-days'),
  note: byTestId('rules-note'),
  tryButton: byTestId('rules-dry-run'),
  result: byTestId('dry-run-result'),
  summary: byTestId('dry-run-summary'),
  rows: byTestId('dry-run-rows'),
  versions: byTestId('rules-versions'),
  fields: byTestId('rules-fields'),
  actions: byTestId('rules-actions'),
};

function fail(message) {
  ui.error.textContent = message;
  show(ui.error);
}

function parsed() {
  try {
    const body = JSON.parse(ui.editor.value);
    return { rules: body.rules ?? [], alerts: body.alerts ?? [] };
  } catch (err) {
    fail(`Not valid JSON: ${err.message}`);
    return null;
  }
}

function editable(table) {
  // The table as it was saved: conditions and actions exactly as written.
  return JSON.stringify({ rules: table.rules, alerts: table.alerts }, null, 2);
}

async function load() {
  const table = await api('GET', '/api/returns/rules');
  ui.version.textContent = table.version;
  ui.version.dataset.version = String(table.number);
  ui.editor.value = editable(table);
  ui.fields.replaceChildren(...Object.entries(table.fields).flatMap(([name, info]) => [
    h('dt', {}, h('code', {}, name), ` (${info.type})`), h('dd', {}, info.meaning)]));
  ui.actions.replaceChildren(...Object.entries(table.actions).flatMap(([name, info]) => [
    h('dt', {}, h('code', {}, name), Object.keys(info.params).length ? ` {${Object.keys(info.params).join(', ')}}` : ''),
    h('dd', {}, info.meaning + (info.only_on ? ` (only on ${info.only_on.join(', ')})` : ''))]));
  const { versions } = await api('GET', '/api/returns/rules/versions');
  ui.versions.replaceChildren(...versions.map((v) => h('tr', { 'data-testid': 'rules-version-row' },
    h('td', {}, v.version), h('td', {}, formatDateTime(v.created_at)), h('td', {}, v.author),
    h('td', {}, v.note ?? '—'), h('td', {}, String(v.rules)), h('td', {}, String(v.alerts)))));
}

async function dryRun() {
  show(ui.error, false);
  const body = parsed();
  if (!body) return;
  const days = Number(ui.days.value);
  const since = new Date(Date.now() - days * 86_400_000).toISOString();
  ui.tryButton.disabled = true;
  try {
    const result = await api('POST', '/api/returns/rules/dry-run', { ...body, since });
    const n = result.cases;
    ui.summary.textContent = `${n} return case${n === 1 ? '' : 's'} created since ${formatDateTime(result.since)}.`;
    ui.rows.replaceChildren(...result.rules.map((rule) => h('tr', { 'data-testid': 'dry-run-row', 'data-rule': rule.id, 'data-cases': String(rule.cases) },
      h('td', {}, rule.name === rule.id ? rule.id : `${rule.name} (${rule.id})`),
      h('td', {}, `would have matched ${rule.cases}`),
      h('td', {}, Object.entries(rule.moments).map(([moment, n]) => `${moment} ×${n}`).join(', ') || '—'),
      h('td', {}, ...rule.examples.map((id) => h('a', { href: `/agent/cases/${encodeURIComponent(id)}`, class: 'example-case' }, id))))));
    show(ui.result);
  } catch (err) {
    fail(err.message);
  } finally {
    ui.tryButton.disabled = false;
  }
}

async function save(event) {
  event.preventDefault();
  show(ui.error, false);
  const body = parsed();
  if (!body) return;
  const note = ui.note.value.trim();
  if (note) body.note = note;
  try {
    await api('PUT', '/api/returns/rules', body);
    ui.note.value = '';
    await load();
  } catch (err) {
    fail(err.message);
  }
}

wireLogout();
ui.tryButton.addEventListener('click', dryRun);
ui.form.addEventListener('submit', save);
ui.editor.addEventListener('input', () => show(ui.error, false));
load().catch((err) => fail(err.message));
