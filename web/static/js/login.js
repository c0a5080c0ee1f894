// Staff login: post the credentials as JSON, then go to ?next= (a path on this site) or the console.
import { api, byTestId, safeNext, show } from './util.js';

function main() {
  const form = byTestId('login-form');
  const error = byTestId('error-message');
  const submit = byTestId('login-submit');
  const next = safeNext(new URLSearchParams(window.location.search).get('next') ?? form.dataset.next);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = byTestId('login-username').value.trim();
    const password = byTestId('login-password').value;
    if (!username || !password) {
      error.textContent = 'Enter your username and password.';
      show(error);
      return;
    }
    submit.disabled = true;
    show(error, false);
    try {
      await api('POST', '/api/login', { username, password });
      window.location.assign(next);
    } catch (err) {
      error.textContent = err.status === 401
        ? (err.message || 'Wrong username or password.')
        : err.message;
      show(error);
      submit.disabled = false;
    }
  });
}

main();
