// The page a customer's or a camera's link opens first. The link carries its token in the
// fragment (`/join#t=...`), which the browser never sends: the token is taken out of the
// address at once (so it stays in neither the address bar nor the history), exchanged for a
// cookie that only the token-free page (`/join/c/<case>`) receives, and that page replaces
// this one. An old link with the token in its path arrives with the cookie already set and the
// page to go to in `data-next`.
import { t } from './i18n.js';
import { byTestId, show } from './util.js';

const { linkKind: kind, next } = document.body.dataset;
const errorPanel = byTestId(kind === 'join' ? 'join-error' : 'camera-error-page');

function fail({ code, message, help, retry } = {}) {
  show(byTestId('link-opening'), false);
  if (code) errorPanel.dataset.error = code;
  if (message) byTestId('error-message').textContent = message;
  if (help) byTestId('error-help').textContent = help;
  show(byTestId('link-retry'), Boolean(retry));
  show(errorPanel);
}

async function exchange(token) {
  let response;
  try {
    response = await fetch(`/${kind}/session`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token }),
    });
  } catch {
    fail({
      code: 'network',
      message: t('link.network_title'),
      help: t('link.network_text'),
      retry: true,
    });
    return;
  }
  const data = await response.json().catch(() => null);
  if (response.ok && data?.url) {
    window.location.replace(data.url);
    return;
  }
  const error = data?.error ?? {};
  fail({ code: error.code ?? 'invalid', message: error.message, help: error.help });
}

function main() {
  if (next) {
    window.location.replace(next);
    return;
  }
  const token = new URLSearchParams(window.location.hash.slice(1)).get('t');
  window.history.replaceState(null, '', window.location.pathname);
  if (!token) {
    fail();
    return;
  }
  byTestId('link-retry').addEventListener('click', () => {
    show(errorPanel, false);
    show(byTestId('link-opening'));
    exchange(token);
  });
  exchange(token);
}

main();
