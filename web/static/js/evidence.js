// Evidence items (clips and snapshots) as every page shows them: labels, sizes, hashes, times,
// read tickets for their files, and the compact list used by the console and the case page.
import { api, formatDateTime, formatDuration, h, label } from './util.js';

let stageLabels = null;

const VIDEO_SUFFIXES = ['.webm', '.mkv', '.mka', '.mp4', '.m4v', '.mov'];
const IMAGE_SUFFIXES = ['.jpg', '.jpeg', '.png', '.webp'];

/** An item with the documented field names (`id`, `case_id`, `kind`, `log_index`) filled in
 * from the archive's own names (`item_id`, `record.*`, `leaf_index`) where those are used. */
export function normalizeItem(item) {
  if (!item) return item;
  return {
    ...item,
    id: item.id ?? item.item_id,
    case_id: item.case_id ?? item.record?.case_id,
    kind: item.kind ?? item.record?.kind,
    log_index: item.log_index ?? item.leaf_index,
  };
}

/** The integrity report in the documented shape, whichever of the two shapes came. */
export function normalizeIntegrity(report) {
  if (!report) return report;
  const files = (report.files ?? []).map((f) => ({
    ...f,
    ok: f.ok ?? f.status === 'ok',
    expected: f.expected ?? f.expected_sha256,
    actual: f.actual ?? f.actual_sha256,
  }));
  const inclusion = report.inclusion ?? (report.inclusion_ok === undefined ? null : {
    ok: report.inclusion_ok, leaf_index: report.leaf_index, tree_size: report.tree_size,
  });
  return {
    ...report,
    files,
    inclusion,
    tree_head_signature_ok: report.tree_head_signature_ok ?? report.signature_ok,
  };
}

/**
 * "Return receipt" for a stage value ("—" when none). The words come from the page: the server
 * renders every stage into `<template id="logistics-stages">` (base.html), so no script keeps a
 * list of its own.
 */
export function stageLabel(stage) {
  if (stageLabels === null) {
    const options = document.getElementById('logistics-stages')?.content.querySelectorAll('option') ?? [];
    stageLabels = new Map([...options].map((option) => [option.value, option.textContent]));
  }
  return stageLabels.get(stage) ?? label(stage);
}

/** "Clip" or "Snapshot". */
export function kindLabel(kind) {
  return kind === 'clip' ? 'Clip' : kind === 'snapshot' ? 'Snapshot' : label(kind);
}

/** A small drawn icon for the kind (CSS shapes: no icon font or emoji needed). */
export function kindIcon(kind) {
  return h('span', { class: 'kind-icon', 'data-kind': kind, 'aria-hidden': 'true' });
}

/** Unix seconds for an ISO string or a number of unix seconds (NaN when neither). */
export function toSeconds(value) {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || !value) return Number.NaN;
  return Date.parse(value) / 1000;
}

/** "1.4 MB" for a byte count. */
export function formatBytes(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The first 12 hex digits of a SHA-256 (enough to compare by eye). */
export function shaPrefix(sha) {
  return sha ? String(sha).slice(0, 12) : '—';
}

/** Total size of an item's files. */
export function itemSize(item) {
  return (item.files ?? []).reduce((sum, f) => sum + Number(f.size ?? 0), 0);
}

/** When the item was captured (the record's start, else when it was archived). */
export function itemTime(item) {
  return item.record?.started_at ?? item.added_at;
}

/** A clip's length in seconds from its record, or NaN. */
export function itemDuration(item) {
  return toSeconds(item.record?.ended_at) - toSeconds(item.record?.started_at);
}

/**
 * Where a clip has gaps, from its record's `details.gaps` (seconds in each file's own timeline):
 * "2.1-4.3 s (no frames)", naming the file when the clip has several and the track when it is
 * the sound. "" for a clip recorded without gaps, null when the record does not say (not a clip,
 * or filed before gaps were recorded).
 */
export function gapSpans(item) {
  const gaps = item.record?.details?.gaps;
  if (!Array.isArray(gaps)) return null;
  const several = new Set(gaps.map((g) => g.file)).size > 1;
  return gaps.map((g) => [
    several && g.file ? `${g.file} ` : '',
    g.kind === 'audio' ? 'audio ' : '',
    `${Number(g.start_s).toFixed(1)}-${Number(g.end_s).toFixed(1)} s (${g.reason})`,
  ].join('')).join(', ');
}

/** "gaps: 2.1-4.3 s (no frames)" for a list line, or null for a clip without (known) gaps. */
export function gapsText(item) {
  const spans = gapSpans(item);
  return spans ? `gaps: ${spans}` : null;
}

/** The file to show in the page: the video of a clip, the image of a snapshot. */
export function mainFile(item) {
  const files = item.files ?? [];
  const suffixes = item.kind === 'clip' ? VIDEO_SUFFIXES : IMAGE_SUFFIXES;
  return files.find((f) => suffixes.some((s) => String(f.name).toLowerCase().endsWith(s))) ?? files[0] ?? null;
}

/** The grade that counts for an item: the agent's final grade, else the model's. */
export function itemGrade(item) {
  const grading = item.record?.grading;
  return grading?.final_grade ?? grading?.model?.grade ?? null;
}

/**
 * Open one file of an archived item: the read is logged with `reason` (a POST, so no link on
 * another site can write it), and the answer is the file's read ticket URL, which the player or
 * the download then GETs (with ranges) for a few minutes, for this reader only.
 */
export async function readTicket(file, reason) {
  const data = await api('POST', `${file.url}/read`, { reason });
  return data.url;
}

/** One line per item: kind, time, length or size, SHA-256 prefix (console and case page). */
export function evidenceListItem(item, { archiveLink = false } = {}) {
  const file = mainFile(item);
  const duration = itemDuration(item);
  const facts = [
    formatDateTime(itemTime(item)),
    item.kind === 'clip' && Number.isFinite(duration) ? formatDuration(duration) : null,
    gapsText(item),
    formatBytes(itemSize(item)),
    item.record?.logistics_stage ? stageLabel(item.record.logistics_stage) : null,
  ].filter(Boolean).join(' · ');
  return h('li', { class: 'evidence-item', 'data-testid': 'evidence-item', dataset: { kind: item.kind, itemId: item.id } },
    kindIcon(item.kind),
    h('div', { class: 'evidence-item-main' },
      h('div', { class: 'evidence-item-title' },
        h('strong', {}, kindLabel(item.kind)),
        item.legal_hold ? h('span', { class: 'hold-badge' }, 'Legal hold') : null),
      h('div', { class: 'muted small' }, facts),
      h('div', { class: 'small' }, 'SHA-256 ', h('code', { 'data-testid': 'evidence-sha', title: file?.sha256 ?? '' }, shaPrefix(file?.sha256)))),
    archiveLink
      ? h('a', {
        class: 'btn btn-secondary btn-small', 'data-testid': 'evidence-open',
        href: `/evidence?case_id=${encodeURIComponent(item.case_id)}&item=${encodeURIComponent(item.id)}`,
      }, 'Open in archive')
      : null);
}
