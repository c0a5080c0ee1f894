// The agent's view of why the item comes back: the reason the merchant or the customer claimed,
// the customer's answers before the call (what is wrong, photos, an offer taken), and the
// reason the agent records from what the call shows (POST /api/cases/{id}/reason); where the
// two differ the panel says so. Rules may act on it (the refund held or released, a
// reshipment, a carrier claim): they show in the case's timeline.
import { api, byTestId, h, label, show } from './util.js';

const REASONS = [
  ['defective', 'Defective'], ['damaged_in_transit', 'Damaged in transit'],
  ['missing_parts', 'Parts missing'], ['wrong_item', 'Wrong item sent'],
  ['not_as_described', 'Not as described'], ['size_too_large', 'Too large'],
  ['size_too_small', 'Too small'], ['color', 'Colour not as expected'],
  ['style', 'Style not as expected'], ['unwanted', 'No longer wanted'], ['other', 'Other'],
];
const REASON_TEXT = Object.fromEntries(REASONS);

function reasonText(code) {
  return code ? (REASON_TEXT[code] ?? label(code)) : '—';
}

export class ReasonPanel {
  #root;
  #facts;
  #form;
  #select;
  #error;
  #caseId = null;

  constructor() {
    this.#root = byTestId('reason-panel');
    this.#facts = byTestId('reason-facts');
    this.#form = byTestId('reason-form');
    this.#select = byTestId('verified-reason');
    this.#error = byTestId('reason-error');
    this.#select.replaceChildren(
      h('option', { value: '' }, 'Choose what the call shows'),
      ...REASONS.map(([code, text]) => h('option', { value: code }, text)),
    );
    this.#form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#record();
    });
  }

  /** A return call started: show its reasons. */
  async attach(caseId, kind) {
    this.#caseId = caseId;
    show(this.#root, kind === 'return');
    if (kind !== 'return') return;
    try {
      const detail = await api('GET', `/api/cases/${encodeURIComponent(caseId)}`);
      if (caseId === this.#caseId) this.#render(detail.case);
    } catch (err) {
      console.warn('reasons: could not load the case', err);
    }
  }

  reset() {
    this.#caseId = null;
    this.#facts.replaceChildren();
    show(this.#root, false);
  }

  #render(c) {
    const intake = c.intake ?? null;
    const rows = [['Claimed', reasonText(c.claimed_reason)]];
    if (intake) {
      rows.push(['Customer says', reasonText(intake.reason)]);
      if (intake.description) rows.push(['In their words', intake.description]);
      if (intake.photos?.length) rows.push(['Photos sent', String(intake.photos.length)]);
      if (intake.offer) rows.push(['Offer taken', label(intake.offer.kind)]);
    }
    rows.push(['Verified', reasonText(c.verified_reason)]);
    if (c.refund_state && c.refund_state !== 'none') rows.push(['Refund', label(c.refund_state)]);
    if (c.disposition) rows.push(['Goes to', label(c.disposition)]);
    const items = rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]);
    if (c.mismatched !== null && c.mismatched !== undefined) {
      items.push(h('dt', {}, 'Match'), h('dd', {},
        h('span', { class: 'mismatch-badge', 'data-testid': 'reason-mismatch', 'data-mismatch': String(c.mismatched) },
          c.mismatched ? 'Differs from the claim' : 'Matches the claim')));
    }
    this.#facts.replaceChildren(...items);
    this.#facts.dataset.verified = c.verified_reason ?? '';
    if (c.verified_reason) this.#select.value = c.verified_reason;
  }

  async #record() {
    show(this.#error, false);
    const reason = this.#select.value;
    if (!reason || !this.#caseId) {
      this.#error.textContent = 'Choose the reason the call shows.';
      show(this.#error);
      return;
    }
    const button = this.#form.querySelector('[type="submit"]');
    button.disabled = true;
    try {
      const answer = await api('POST', `/api/cases/${encodeURIComponent(this.#caseId)}/reason`, { verified_reason: reason });
      this.#render(answer.case);
    } catch (err) {
      this.#error.textContent = err.message;
      show(this.#error);
    } finally {
      button.disabled = false;
    }
  }
}
