// The page's words. The server renders the catalogue of the page's language (web/i18n/<code>.json,
// chosen from the switcher, the case or the browser) into <script type="application/json"
// id="i18n">; `t(key, values)` fills a message's {placeholders}, taking a plural message's form
// from `values.count` through Intl.PluralRules. Numbers, dates and money go through Intl in the
// page's language.

const block = document.getElementById('i18n');
const data = block ? JSON.parse(block.textContent) : { locale: 'en', dir: 'ltr', messages: {} };

/** The page's language (a catalogue code: "de", "zh-Hant"). */
export const locale = data.locale;
/** "rtl" for Arabic, else "ltr". */
export const direction = data.dir;

const plurals = new Intl.PluralRules(locale);
// No grouping, like the server: a picture's 1280×720 stays readable.
const numbers = new Intl.NumberFormat(locale, { useGrouping: false });
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

function text(value) {
  return typeof value === 'number' ? numbers.format(value) : String(value);
}

/** The message of `key` in the page's language; the key itself when no catalogue has it. */
export function t(key, values = {}) {
  let message = data.messages[key];
  if (message === undefined) return key;
  if (typeof message === 'object') {
    message = message[plurals.select(Number(values.count))] ?? message.other;
  }
  return message.replace(PLACEHOLDER, (whole, name) => (name in values ? text(values[name]) : whole));
}

/** Whether the catalogue has `key` (a server's error code with words of its own). */
export function has(key) {
  return key in data.messages;
}

/** A percentage (0..1) in the page's language ("42 %" in French). */
export function percent(fraction) {
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 0 }).format(fraction);
}

/** An amount of money in the page's language ("12,50 €"). */
export function money(amount, currency) {
  return new Intl.NumberFormat(locale, { style: 'currency', currency }).format(amount);
}

/** A time or date in the page's language, optionally in another time zone. */
export function dateTime(value, options = { dateStyle: 'medium', timeStyle: 'short' }) {
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  return new Intl.DateTimeFormat(locale, options).format(date);
}

// The language switcher (customer and camera pages): a pick reloads the page in that language.
for (const select of document.querySelectorAll('[data-testid="language-select"]')) {
  select.addEventListener('change', () => select.form.submit());
}
