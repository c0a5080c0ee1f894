// Administration of sites and cameras: create sites; add phone, WHIP and RTSP cameras; mint
// tokens (shown once) and revoke them; switch cameras on and off; see their live status.
import {
  api, byTestId, copyFrom, formatDateTime, h, label, show, wireLogout,
} from './util.js';

const POLL_MS = 5000;

function fail(el, err) {
  el.textContent = err ? (err.message ?? String(err)) : '';
  show(el, Boolean(err));
}

function formBody(form, keys) {
  const data = new FormData(form);
  const body = {};
  for (const key of keys) {
    const value = String(data.get(key) ?? '').trim();
    if (value) body[key] = value;
  }
  return body;
}

// -- the list of sites -----------------------------------------------------------------------

async function sitesPage() {
  const list = byTestId('admin-site-list');
  const error = byTestId('admin-sites-error');
  const form = byTestId('site-create-form');
  const createError = byTestId('site-create-error');

  async function load() {
    try {
      const data = await api('GET', '/api/sites');
      list.replaceChildren(...(data.sites ?? []).map((site) => h('li', { class: 'site-item', 'data-testid': `admin-site-${site.id}` },
        h('a', { href: `/admin/sites/${encodeURIComponent(site.id)}`, class: 'site-link' }, site.name),
        h('span', { class: 'muted small' }, [site.address, `${site.camera_count} camera${site.camera_count === 1 ? '' : 's'}`].filter(Boolean).join(' · ')),
        h('a', { href: `/walkthrough/${encodeURIComponent(site.id)}`, class: 'btn btn-ghost btn-small' }, 'Walkthrough'))));
      fail(error, null);
    } catch (err) {
      fail(error, err);
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fail(createError, null);
    const body = formBody(form, ['name', 'address', 'note']);
    if (!body.name) {
      fail(createError, new Error('Give the site a name.'));
      return;
    }
    try {
      const created = await api('POST', '/api/sites', body);
      window.location.assign(`/admin/sites/${encodeURIComponent(created.site.id)}`);
    } catch (err) {
      fail(createError, err);
    }
  });
  await load();
}

// -- one site --------------------------------------------------------------------------------

function statusText(status) {
  if (!status?.online) {
    if (status?.rtsp && status.rtsp.state !== 'stopped') {
      const tries = status.rtsp.retries ? ` (${status.rtsp.retries} tries)` : '';
      return status.rtsp.error ? `Reconnecting${tries} · ${status.rtsp.error}` : 'Connecting…';
    }
    return 'Offline';
  }
  const parts = [status.live === false ? 'Connected, no video' : status.live ? 'Live' : 'Connected'];
  if (status.codec) parts.push(String(status.codec).toUpperCase());
  if (status.width && status.height) parts.push(`${status.width}×${status.height}`);
  if (status.fps) parts.push(`${Math.round(status.fps)} fps`);
  if (status.bitrate_kbps) parts.push(`${Math.round(status.bitrate_kbps)} kbit/s`);
  if (status.transcoding) parts.push(status.transcoding);
  if (status.source) parts.push(`via ${status.source}`);
  if (status.station?.tracking_number) parts.push(`recording parcel ${status.station.tracking_number}`);
  else if (status.station?.clips) parts.push(`${status.station.clips} station clips`);
  return parts.join(' · ');
}

const STATIONS = { receiving: 'Receiving', packing: 'Packing', returns_qc: 'Returns QC' };

function kindText(camera) {
  const kind = { phone: 'Staff phone', whip: 'WHIP encoder', rtsp: 'RTSP camera' }[camera.kind] ?? camera.kind;
  const station = camera.station ? ` · ${STATIONS[camera.station.stage] ?? label(camera.station.stage)} station` : '';
  const rtsp = camera.kind === 'rtsp' && camera.rtsp_url ? ` · ${camera.rtsp_url}${camera.rtsp_credentials ? ' (with credentials)' : ''}` : '';
  return `${kind}${station}${rtsp}`;
}

async function sitePage(siteId) {
  const details = byTestId('site-details');
  const error = byTestId('admin-site-error');
  const list = byTestId('camera-list');
  const empty = byTestId('camera-list-empty');
  const form = byTestId('camera-create-form');
  const createError = byTestId('camera-create-error');
  const kind = byTestId('camera-kind-select');
  const rtspFields = byTestId('rtsp-fields');
  const reveal = byTestId('token-reveal');
  const openTokens = new Set();

  function showToken(camera, issued) {
    byTestId('token-reveal-title').textContent = `Token for ${camera.name}`;
    byTestId('token-value').value = issued.token;
    const url = issued.camera_url ?? issued.whip_url ?? '';
    byTestId('token-url').value = url;
    byTestId('token-url-label').textContent = issued.camera_url ? 'Open this link on the phone' : 'WHIP endpoint (bearer token below)';
    const example = byTestId('token-example');
    if (issued.whip_url) {
      example.textContent = `ffmpeg -re -i input.mp4 -c:v libx264 -profile:v baseline -bf 0 -c:a libopus -ac 2 \\\n  -f whip -authorization ${issued.token} ${issued.whip_url}`;
      show(example);
    } else {
      show(example, false);
    }
    show(reveal);
    reveal.scrollIntoView({ block: 'nearest' });
  }

  async function mint(camera) {
    try {
      showToken(camera, await api('POST', `/api/cameras/${encodeURIComponent(camera.id)}/tokens`, {}));
      if (openTokens.has(camera.id)) await load();
    } catch (err) {
      fail(error, err);
    }
  }

  async function revoke(camera, token) {
    try {
      await api('DELETE', `/api/cameras/${encodeURIComponent(camera.id)}/tokens/${encodeURIComponent(token.id)}`);
      await load();
    } catch (err) {
      fail(error, err);
    }
  }

  async function toggle(camera) {
    try {
      await api('PATCH', `/api/cameras/${encodeURIComponent(camera.id)}`, { enabled: !camera.enabled });
      await load();
    } catch (err) {
      fail(error, err);
    }
  }

  async function remove(camera) {
    if (!window.confirm(`Delete the camera "${camera.name}"? Its tokens stop working.`)) return;
    try {
      await api('DELETE', `/api/cameras/${encodeURIComponent(camera.id)}`);
      await load();
    } catch (err) {
      fail(error, err);
    }
  }

  async function tokenRows(camera) {
    const data = await api('GET', `/api/cameras/${encodeURIComponent(camera.id)}/tokens`);
    const tokens = data.tokens ?? [];
    if (tokens.length === 0) return [h('li', { class: 'muted small' }, 'No tokens yet.')];
    return tokens.map((token) => h('li', { class: 'token-row', 'data-testid': `token-${token.id}`, dataset: { state: token.state } },
      h('span', {}, `${token.id} · ${label(token.state)} · created ${formatDateTime(token.created_at)}`
        + (token.expires_at ? ` · expires ${formatDateTime(token.expires_at)}` : '')
        + (token.last_used_at ? ` · last used ${formatDateTime(token.last_used_at)}` : '')),
      token.state === 'active'
        ? h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': `revoke-${token.id}`, onclick: () => revoke(camera, token) }, 'Revoke')
        : null));
  }

  async function row(camera) {
    const tokensCell = h('td', { colspan: '5' });
    const actions = [];
    if (camera.kind !== 'rtsp') {
      actions.push(
        h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'data-testid': `mint-token-${camera.id}`, onclick: () => mint(camera) }, 'New token'),
        h('button', {
          type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': `tokens-${camera.id}`,
          onclick: async () => {
            if (openTokens.has(camera.id)) openTokens.delete(camera.id);
            else openTokens.add(camera.id);
            await load();
          },
        }, openTokens.has(camera.id) ? 'Hide tokens' : 'Tokens'),
      );
    }
    actions.push(
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'data-testid': `camera-toggle-${camera.id}`, onclick: () => toggle(camera) }, camera.enabled ? 'Switch off' : 'Switch on'),
      h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': `camera-delete-${camera.id}`, onclick: () => remove(camera) }, 'Delete'),
    );
    const rows = [h('tr', { 'data-testid': `camera-row-${camera.id}`, dataset: { online: String(Boolean(camera.status?.online)), enabled: String(camera.enabled) } },
      h('td', {}, h('strong', {}, camera.name), h('div', { class: 'muted small' }, camera.id)),
      h('td', {}, kindText(camera)),
      h('td', { 'data-testid': `camera-status-${camera.id}` }, camera.enabled ? statusText(camera.status) : 'Switched off'),
      h('td', { class: 'small' }, camera.status?.online ? 'now' : formatDateTime(camera.last_seen_at)),
      h('td', { class: 'camera-actions' }, actions))];
    if (openTokens.has(camera.id)) {
      tokensCell.append(h('ul', { class: 'token-list', 'data-testid': `token-list-${camera.id}` }, await tokenRows(camera)));
      rows.push(h('tr', { class: 'token-tr' }, tokensCell));
    }
    return rows;
  }

  async function load() {
    try {
      const data = await api('GET', `/api/sites/${encodeURIComponent(siteId)}`);
      details.textContent = [data.site.address, data.site.note].filter(Boolean).join(' · ');
      const rows = await Promise.all((data.cameras ?? []).map(row));
      list.replaceChildren(...rows.flat());
      show(empty, (data.cameras ?? []).length === 0);
      fail(error, null);
    } catch (err) {
      fail(error, err);
    }
  }

  kind.addEventListener('change', () => show(rtspFields, kind.value === 'rtsp'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fail(createError, null);
    const body = formBody(form, ['name', 'kind', 'rtsp_url', 'rtsp_username', 'rtsp_password', 'station_stage']);
    const idle = String(new FormData(form).get('station_idle_timeout_s') ?? '').trim();
    if (idle) body.station_idle_timeout_s = Number(idle);
    if (body.kind !== 'rtsp') {
      delete body.rtsp_url;
      delete body.rtsp_username;
      delete body.rtsp_password;
    }
    try {
      await api('POST', `/api/sites/${encodeURIComponent(siteId)}/cameras`, body);
      form.reset();
      show(rtspFields, false);
      await load();
    } catch (err) {
      fail(createError, err);
    }
  });
  byTestId('copy-token-url').addEventListener('click', (event) => copyFrom(byTestId('token-url'), event.currentTarget));
  byTestId('copy-token-value').addEventListener('click', (event) => copyFrom(byTestId('token-value'), event.currentTarget));
  byTestId('token-reveal-close').addEventListener('click', () => {
    byTestId('token-value').value = '';
    byTestId('token-url').value = '';
    show(reveal, false);
  });
  await load();
  setInterval(load, POLL_MS);
}

wireLogout();
const { siteId } = document.body.dataset;
if (siteId) sitePage(siteId);
else sitesPage();
