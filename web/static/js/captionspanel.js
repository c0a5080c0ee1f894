// The agent's captions panel: the call's live captions with the customer's words translated
// into English, the customer's language and local time, the switch that stops transcription
// for the case, and canned phrases sent to the customer in their own language.
import { CaptionsView } from './captions.js';
import { api, byTestId, show } from './util.js';

function languageName(locale) {
  try {
    return new Intl.DisplayNames(['en'], { type: 'language' }).of(locale) ?? locale;
  } catch {
    return locale;
  }
}

export class CaptionsPanel {
  #root;
  #view;
  #toggle;
  #who;
  #phrases;
  #phraseSelect;
  #caseId = null;
  #enabled = true;
  #timeZone = null;
  #locale = null;
  #clock = null;
  #onPhrase;

  /** @param {{onPhrase: (text: string, lang: string) => void}} options sends a chat message */
  constructor({ onPhrase }) {
    this.#root = byTestId('captions-panel');
    this.#toggle = byTestId('captions-toggle');
    this.#who = byTestId('customer-language');
    this.#phrases = byTestId('phrase-form');
    this.#phraseSelect = byTestId('phrase-select');
    this.#onPhrase = onPhrase;
    this.#view = new CaptionsView({
      list: byTestId('caption-log'),
      status: byTestId('captions-status'),
      labels: { you: 'You', agent: 'Agent', customer: 'Customer', off: 'Captions are off for this case: speech is not transcribed.' },
      translations: true,
    });
    this.#toggle.addEventListener('click', () => this.#switch(!this.#enabled));
    this.#phrases.addEventListener('submit', (event) => {
      event.preventDefault();
      const option = this.#phraseSelect.selectedOptions[0];
      if (option?.value) this.#onPhrase(option.dataset.text, option.dataset.lang);
    });
  }

  /** A call started (or the page reloaded into one): show what was said so far. */
  async attach({ caseId, participantId }) {
    const fresh = caseId !== this.#caseId;
    this.#caseId = caseId;
    this.#view.setSelf(participantId);
    if (fresh) this.#view.reset();
    show(this.#root);
    try {
      const [transcript, detail] = await Promise.all([
        api('GET', `/api/cases/${encodeURIComponent(caseId)}/transcript`),
        api('GET', `/api/cases/${encodeURIComponent(caseId)}`),
      ]);
      if (caseId !== this.#caseId) return;
      for (const segment of transcript.segments ?? []) this.#view.caption(segment);
      this.#setEnabled(transcript.enabled, transcript.available);
      this.#customer(detail.case?.customer_locale, detail.case?.customer_time_zone);
    } catch (err) {
      console.warn('captions: could not load the transcript', err);
    }
  }

  reset() {
    this.#caseId = null;
    this.#view.reset();
    clearInterval(this.#clock);
    this.#clock = null;
    show(this.#root, false);
  }

  caption(message) {
    this.#view.caption(message);
  }

  switched(message) {
    this.#setEnabled(message.enabled, true);
  }

  /** The customer chose or reported their language and time zone. */
  customerChanged(locale, timeZone) {
    this.#customer(locale, timeZone);
  }

  #setEnabled(enabled, available) {
    this.#enabled = enabled !== false;
    this.#view.switched({ enabled: this.#enabled });
    this.#toggle.hidden = !available;
    this.#toggle.setAttribute('aria-pressed', String(this.#enabled));
    this.#toggle.textContent = this.#enabled ? 'Turn captions off' : 'Turn captions on';
  }

  async #switch(enabled) {
    if (!this.#caseId) return;
    this.#toggle.disabled = true;
    try {
      const answer = await api('PUT', `/api/cases/${encodeURIComponent(this.#caseId)}/captions`, { enabled });
      this.#setEnabled(answer.enabled, answer.available);
    } catch (err) {
      console.warn('captions: could not switch', err);
    } finally {
      this.#toggle.disabled = false;
    }
  }

  #customer(locale, timeZone) {
    const changed = locale !== this.#locale;
    this.#locale = locale || null;
    this.#timeZone = timeZone || null;
    this.#renderWho();
    clearInterval(this.#clock);
    this.#clock = this.#timeZone ? setInterval(() => this.#renderWho(), 30_000) : null;
    // Without a case language the phrases are English.
    if (changed) this.#loadPhrases(this.#locale ?? 'en');
  }

  #renderWho() {
    const parts = [];
    if (this.#locale) parts.push(`Customer's language: ${languageName(this.#locale)}`);
    if (this.#timeZone) {
      try {
        const time = new Intl.DateTimeFormat('en', { hour: '2-digit', minute: '2-digit', timeZone: this.#timeZone }).format(new Date());
        parts.push(`local time ${time} (${this.#timeZone})`);
      } catch {
        parts.push(this.#timeZone);
      }
    }
    this.#who.textContent = parts.join(' · ');
    show(this.#who, parts.length > 0);
  }

  async #loadPhrases(locale) {
    try {
      const answer = await api('GET', `/api/phrases?locale=${encodeURIComponent(locale)}`);
      const options = (answer.phrases ?? []).map((phrase) => {
        const option = document.createElement('option');
        option.value = phrase.key;
        option.dataset.text = phrase.text;
        option.dataset.lang = answer.locale;
        option.textContent = phrase.english === phrase.text ? phrase.text : `${phrase.english} — ${phrase.text}`;
        return option;
      });
      this.#phraseSelect.replaceChildren(...options);
      show(this.#phrases, options.length > 0);
    } catch (err) {
      console.warn('captions: no phrases', err);
    }
  }
}
