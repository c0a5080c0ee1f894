// The list of sites: each opens its walkthrough (live camera grid).
import { api, byTestId, h, show, wireLogout } from './util.js';

async function main() {
  wireLogout();
  const list = byTestId('site-list');
  const error = byTestId('sites-error');
  try {
    const data = await api('GET', '/api/sites');
    list.replaceChildren(...(data.sites ?? []).map((site) => h('li', { class: 'site-item', 'data-testid': `site-${site.id}` },
      h('a', { href: `/walkthrough/${encodeURIComponent(site.id)}`, class: 'site-link', 'data-testid': `site-link-${site.id}` }, site.name),
      h('span', { class: 'muted small' }, [site.address, `${site.camera_count ?? 0} camera${site.camera_count === 1 ? '' : 's'}`].filter(Boolean).join(' · ')))));
  } catch (err) {
    error.textContent = err.message;
    show(error);
  }
}

main();
