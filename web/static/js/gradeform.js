// The grade part of the return decision form: the grade the rule table derives from the
// agent's facts (POST /api/grading/derive) next to the model's live grade, and the optional
// override with its reason that goes into the decision body as `grade_override`.
import { api, byTestId, show } from './util.js';
import { channelText, percent, setBadge, statusText } from './grading.js';

const FACT_FIELDS = ['cosmetic', 'functional', 'packaging', 'accessories_complete'];
const DERIVE_DELAY_MS = 150;

export class GradeForm {
  #form;
  #el;
  #timer = null;
  #request = 0;
  derived = null;

  constructor(form) {
    this.#form = form;
    this.#el = {
      derived: byTestId('derived-grade', form),
      explanation: byTestId('derived-explanation', form),
      channel: byTestId('resale-channel', form),
      model: byTestId('decision-model-grade', form),
      modelNote: byTestId('decision-model-note', form),
      toggle: byTestId('grade-override-toggle', form),
      fields: byTestId('grade-override-fields', form),
      select: byTestId('grade-override-select', form),
      reason: byTestId('grade-override-reason', form),
    };
    form.addEventListener('change', (event) => {
      if (FACT_FIELDS.includes(event.target.name)) this.#scheduleDerive();
      if (event.target === this.#el.toggle) this.#syncOverride();
    });
  }

  /** After the form was reset (a new case): derive the default facts again. */
  reset() {
    this.derived = null;
    setBadge(this.#el.derived, null);
    this.#el.explanation.textContent = 'Choose the facts to derive the grade.';
    this.#el.channel.textContent = '';
    this.#syncOverride();
    this.#scheduleDerive();
  }

  /** Show the model's current view next to the derived grade. */
  showModel(view) {
    setBadge(this.#el.model, view?.grade);
    let note = 'No video analysed yet';
    if (view?.grade) note = `${percent(view.confidence)} confident · ${statusText(view)}`;
    else if (view) note = `No grade yet · ${statusText(view)}`;
    this.#el.modelNote.textContent = note;
  }

  /** `{grade, reason}` when overriding, else null; throws with a message for a missing reason. */
  override() {
    if (!this.#el.toggle.checked) return null;
    const reason = this.#el.reason.value.trim();
    if (reason.length < 3) {
      this.#el.reason.focus();
      throw new Error('Say why you override the grade (at least 3 characters).');
    }
    return { grade: this.#el.select.value, reason };
  }

  #syncOverride() {
    const on = this.#el.toggle.checked;
    show(this.#el.fields, on);
    this.#el.reason.required = on;
    if (on && this.derived && !this.#el.reason.value) this.#el.select.value = this.derived.grade;
  }

  #facts() {
    const data = new FormData(this.#form);
    return {
      cosmetic: data.get('cosmetic'),
      functional: data.get('functional'),
      packaging: data.get('packaging'),
      accessories_complete: data.get('accessories_complete') !== null,
    };
  }

  #scheduleDerive() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#derive(), DERIVE_DELAY_MS);
  }

  async #derive() {
    const request = ++this.#request;
    let response;
    try {
      response = await api('POST', '/api/grading/derive', this.#facts());
    } catch (err) {
      if (request !== this.#request) return;
      this.#el.explanation.textContent = `Could not derive the grade: ${err.message}`;
      return;
    }
    if (request !== this.#request) return; // an answer to older facts
    const derived = response.derived;
    this.derived = derived;
    setBadge(this.#el.derived, derived.grade);
    this.#el.explanation.textContent = derived.explanation;
    this.#el.explanation.title = `${derived.rules_version} · rule ${derived.rule}`;
    this.#el.channel.textContent = `Resale: ${channelText(derived.channel)}`;
  }
}
