// Small DOM and HTTP helpers shared by every page.
import { t } from './i18n.js';

/** The element with `data-testid="<id>"` inside `root` (throws when a template lost it). */
export function byTestId(id, root = document) {
  const el = root.querySelector(`[data-testid="${id}"]`);
  if (!el) throw new Error(`missing element data-testid=${id}`);
  return el;
}

/** Show or hide an element through the `hidden` attribute. */
export function show(el, visible = true) {
  el.hidden = !visible;
}

/** Create an element with attributes and children (strings become text nodes, never HTML). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An error from the REST API: `code` and `message` from `{"error": {...}}`, plus the status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the REST API with a JSON body; resolves to the parsed JSON (or null for 204). */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.'); // staff pages only
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? 'http_' + response.status,
      error.message ?? `Request failed (${response.status})`); // staff pages only
  }
  return data;
}

/**
 * A path on this site to go to after login (`fallback` for anything else). The value is parsed
 * as the browser will navigate to it: browsers drop tabs and newlines and read a backslash as `/`,
 * so a string test lets `/<TAB>/evil.example` through as `//evil.example`.
 */
export function safeNext(value, fallback = '/agent') {
  if (!value) return fallback;
  let url;
  try {
    url = new URL(value, window.location.origin);
  } catch {
    return fallback;
  }
  if (url.origin !== window.location.origin) return fallback;
  return `${url.pathname}${url.search}${url.hash}`;
}

/** "m:ss" or "h:mm:ss" for a duration in seconds. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Local time of day for a unix-seconds or ISO timestamp. */
export function formatTime(value) {
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString(pageLocale(), { hour: '2-digit', minute: '2-digit' });
}

/** The page's language (`<html lang>`): dates and times are written in it. */
function pageLocale() {
  return document.documentElement.lang || undefined;
}

/** Local date and time for an ISO or unix-seconds timestamp. */
export function formatDateTime(value) {
  if (value === null || value === undefined || value === '') return '—';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(pageLocale(), { dateStyle: 'medium', timeStyle: 'medium' });
}

/** Human label for a snake_case value ("partial_refund" -> "Partial refund"). */
export function label(value) {
  if (value === null || value === undefined || value === '') return '—';
  const text = String(value).replaceAll('_', ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Wire the header's sign-out button on staff pages. */
export function wireLogout() {
  const button = document.querySelector('[data-testid="logout"]');
  if (!button) return;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api('POST', '/api/logout');
    } catch {
      // Signing out locally still makes sense when the session is already gone.
    }
    window.location.assign('/login');
  });
}

/** Copy text to the clipboard, falling back to selecting the input. */
export async function copyFrom(input, button) {
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = t('common.copied');
  } catch {
    input.select();
    document.execCommand?.('copy');
    button.textContent = t('common.copied');
  }
  setTimeout(() => { button.textContent = t('common.copy'); }, 1500);
}
