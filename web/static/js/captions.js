// Live captions of a call: each `caption` segment the server sends (who spoke, the language,
// the words and, for the agent, their English translation), newest last, the last few kept on
// screen; a `captions` message says they were switched off or on. Used by the customer's page
// and the agent's console; the page passes its own words for the labels.

const KEEP = 40;

function languageName(code, locale) {
  try {
    return new Intl.DisplayNames([locale], { type: 'language' }).of(code) ?? code;
  } catch {
    return code;
  }
}

export class CaptionsView {
  #list;
  #status;
  #selfId = null;
  #labels;
  #translations;
  #locale;
  #seen = new Set();

  /**
   * @param {object} options
   * @param {HTMLElement} options.list where captions go (an <ol>)
   * @param {HTMLElement} options.status the line that says captions are off
   * @param {{you: string, agent: string, customer: string, off: string}} options.labels
   * @param {boolean} options.translations show the English translation beside the original
   * @param {string} options.locale the page's locale (language names, times)
   */
  constructor({ list, status, labels, translations = false, locale = 'en' }) {
    this.#list = list;
    this.#status = status;
    this.#labels = labels;
    this.#translations = translations;
    this.#locale = locale;
  }

  /** Who this page is (its own captions are labelled "You"). */
  setSelf(participantId) {
    this.#selfId = participantId ?? null;
  }

  reset() {
    this.#seen.clear();
    this.#list.replaceChildren();
    this.switched({ enabled: true });
  }

  /** One `caption` message. */
  caption(message) {
    if (!message.segment_id || this.#seen.has(message.segment_id)) return;
    this.#seen.add(message.segment_id);
    const item = document.createElement('li');
    item.className = 'caption';
    item.dataset.testid = 'caption';
    item.dataset.role = message.role ?? '';
    item.dataset.language = message.language ?? '';
    const who = document.createElement('span');
    who.className = 'caption-who';
    who.textContent = this.#speaker(message);
    const lang = document.createElement('span');
    lang.className = 'caption-lang';
    lang.dataset.testid = 'caption-language';
    lang.title = languageName(message.language ?? '', this.#locale);
    lang.textContent = (message.language ?? '').toUpperCase();
    const text = document.createElement('p');
    text.className = 'caption-text';
    text.dataset.testid = 'caption-text';
    text.lang = message.language ?? '';
    text.textContent = message.text ?? '';
    item.append(who, lang, text);
    if (this.#translations && message.translation) {
      const english = document.createElement('p');
      english.className = 'caption-translation';
      english.dataset.testid = 'caption-translation';
      english.lang = 'en';
      english.textContent = message.translation;
      item.append(english);
    }
    this.#list.append(item);
    while (this.#list.children.length > KEEP) this.#list.firstElementChild.remove();
    item.scrollIntoView?.({ block: 'nearest' });
  }

  /** A `captions` message (or the state known at join). */
  switched(message) {
    const enabled = message.enabled !== false;
    this.#list.dataset.enabled = String(enabled);
    this.#status.hidden = enabled;
    this.#status.textContent = enabled ? '' : this.#labels.off;
  }

  #speaker(message) {
    if (this.#selfId && message.participant_id === this.#selfId) return this.#labels.you;
    if (message.role === 'customer') return message.name || this.#labels.customer;
    return message.name || this.#labels.agent;
  }
}
