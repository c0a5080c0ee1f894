// The customer's answers before the call (return cases): the reason, what is wrong, photos, and
// the offers the merchant's rules make for that reason (an exchange, or keeping the item with a
// partial refund). Sent once; the agent reads them before accepting the call.
import { money, t } from './i18n.js';
import { PhotoUpload } from './photo.js';
import { byTestId, h, show } from './util.js';

export class IntakeForm {
  #base;
  #ui;
  #offer = null; // {rule, kind} the customer picked
  #offers = [];
  #sending = false;

  /** `caseId`: the case of the page; does nothing when the page has no intake panel. */
  constructor(caseId) {
    this.#base = `/join/c/${encodeURIComponent(caseId)}`;
    const root = document.querySelector('[data-testid="intake"]');
    if (!root) return;
    this.#ui = {
      root,
      form: byTestId('intake-form', root),
      reason: byTestId('intake-reason', root),
      description: byTestId('intake-description', root),
      photos: byTestId('intake-photos', root),
      count: byTestId('intake-photo-count', root),
      offers: byTestId('intake-offers', root),
      offerList: byTestId('offer-list', root),
      decline: byTestId('offer-decline', root),
      error: byTestId('intake-error', root),
      submit: byTestId('intake-submit', root),
      done: byTestId('intake-done', root),
    };
    this.#ui.reason.addEventListener('change', () => this.#loadOffers());
    this.#ui.photos.addEventListener('change', () => this.#countPhotos());
    this.#ui.decline.addEventListener('click', () => this.#pick(null));
    this.#ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#send();
    });
    this.#ui.reason.disabled = false;
    this.#ui.submit.disabled = false;
  }

  async #post(path, body) {
    const response = await fetch(`${this.#base}/${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(data.error?.message ?? `HTTP ${response.status}`), { status: response.status });
    return data;
  }

  async #loadOffers() {
    this.#pick(null);
    const reason = this.#ui.reason.value;
    this.#offers = [];
    if (reason) {
      try {
        this.#offers = (await this.#post('offers', { reason })).offers ?? [];
      } catch (err) {
        console.warn('intake: no offers', err);
      }
    }
    this.#ui.offerList.replaceChildren(...this.#offers.map((offer) => this.#renderOffer(offer)));
    show(this.#ui.offers, this.#offers.length > 0);
  }

  #offerText(offer) {
    if (offer.kind === 'exchange') return t('offer.exchange');
    const amount = offer.amount !== null && offer.currency
      ? money(offer.amount, offer.currency)
      : `${offer.percent} %`;
    return t('offer.keep', { amount });
  }

  #renderOffer(offer) {
    return h('li', { class: 'offer', 'data-testid': `offer-${offer.kind}`, 'data-chosen': 'false' },
      h('span', {}, this.#offerText(offer)),
      h('button', {
        type: 'button',
        class: 'btn btn-primary btn-small',
        'data-testid': `offer-accept-${offer.kind}`,
        onclick: () => this.#pick(offer),
      }, t('offer.accept')));
  }

  #pick(offer) {
    this.#offer = offer ? { rule: offer.rule, kind: offer.kind } : null;
    for (const item of this.#ui.offerList.children) {
      item.dataset.chosen = String(Boolean(offer) && item.dataset.testid === `offer-${offer.kind}`);
    }
  }

  #countPhotos() {
    const n = this.#ui.photos.files?.length ?? 0;
    this.#ui.count.textContent = n ? t('intake.photos_added', { count: n }) : '';
    show(this.#ui.count, n > 0);
  }

  #fail(key) {
    this.#ui.error.textContent = t(key);
    show(this.#ui.error);
  }

  async #send() {
    if (this.#sending) return;
    show(this.#ui.error, false);
    const reason = this.#ui.reason.value;
    if (!reason) {
      this.#fail('intake.error_reason');
      return;
    }
    this.#sending = true;
    this.#ui.submit.disabled = true;
    this.#ui.submit.textContent = t('intake.sending');
    try {
      const photos = [];
      for (const file of this.#ui.photos.files ?? []) {
        const upload = new PhotoUpload({
          base: this.#base,
          blob: file,
          meta: { source: 'gallery', method: 'file', purpose: 'intake', taken_at_ms: Date.now() },
        });
        photos.push((await upload.send()).item_id);
      }
      const body = { reason, photos };
      const description = this.#ui.description.value.trim();
      if (description) body.description = description;
      if (this.#offer) body.offer = this.#offer;
      await this.#post('intake', body);
      show(this.#ui.form, false);
      this.#ui.done.textContent = this.#offer ? t('offer.accepted') : t('intake.sent');
      show(this.#ui.done);
      this.#ui.root.dataset.sent = 'true';
    } catch (err) {
      console.warn('intake: not sent', err);
      if (err.status === 409) {
        show(this.#ui.form, false);
        this.#ui.done.textContent = t('intake.sent');
        show(this.#ui.done);
      } else {
        this.#fail('intake.error_send');
      }
    } finally {
      this.#sending = false;
      this.#ui.submit.disabled = false;
      this.#ui.submit.textContent = t('intake.submit');
    }
  }
}
