// Chat panel: idempotent sends (client_id), rendering ordered and deduplicated by server `seq`,
// and resume after a reconnect (`lastSeq` goes into `join.resume_from`; unconfirmed sends are
// re-sent with the same client_id, so the server stores them once; a long history arrives as
// `joined.chat` plus `chat_page` messages).
import { t } from './i18n.js';
import { formatTime, h } from './util.js';

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Non-secure contexts (plain http on a LAN) have no randomUUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function roleName(role) {
  if (role === 'customer') return t('chat.customer');
  if (role === 'agent' || role === 'admin' || role === 'reviewer') return t('chat.agent');
  return t('chat.unknown');
}

function languageName(code) {
  try {
    return new Intl.DisplayNames([document.documentElement.lang || 'en'], { type: 'language' }).of(code) ?? code;
  } catch {
    return code;
  }
}

export class ChatPanel {
  #signal;
  #log;
  #input;
  #button;
  #seen = new Map(); // seq -> <li>
  #pending = new Map(); // client_id -> {text, el}
  #mine = new Set(); // client_ids sent from this page
  #selfId = null;
  #enabled = false;
  #lang;
  lastSeq = 0;

  /** `lang`: the language this page writes in (sent with each message, shown beside it). */
  constructor({ signal, form, log, input, button, lang = null }) {
    this.#signal = signal;
    this.#lang = lang;
    this.#log = log;
    this.#input = input;
    this.#button = button;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#submit();
    });
    signal.on('chat', (message) => this.receive(message));
    // Older chat than `joined` carried comes right after it, a page at a time, oldest first;
    // each message lands in seq order wherever it belongs.
    signal.on('chat_page', (message) => {
      for (const chat of message.chat ?? []) this.receive(chat);
    });
  }

  /** Allow or block typing (e.g. the agent outside a call). */
  setEnabled(enabled) {
    this.#enabled = enabled;
    this.#input.disabled = !enabled;
    this.#button.disabled = !enabled;
  }

  /** Forget everything (the agent moved to another case). */
  reset() {
    this.#seen.clear();
    this.#pending.clear();
    this.lastSeq = 0;
    this.#log.replaceChildren();
  }

  /** Handle a `joined`: replay missed messages, then re-send what the server never confirmed. */
  joined(message) {
    this.#selfId = message.participant_id ?? null;
    for (const chat of message.chat ?? []) this.receive(chat);
    for (const [clientId, pending] of this.#pending) {
      this.#signal.send(this.#message(clientId, pending.text, pending.lang));
    }
  }

  /** Render one server chat message unless its seq was already shown. */
  receive(message) {
    if (typeof message.seq !== 'number') return;
    const pending = this.#pending.get(message.client_id);
    if (pending) {
      pending.el.remove();
      this.#pending.delete(message.client_id);
    }
    this.lastSeq = Math.max(this.lastSeq, message.seq);
    if (this.#seen.has(message.seq)) return;
    const el = this.#render(message);
    this.#seen.set(message.seq, el);
    this.#insertOrdered(el, message.seq);
  }

  #submit() {
    const text = this.#input.value.trim();
    if (!text || !this.#enabled) return;
    this.sendText(text, this.#lang);
    this.#input.value = '';
    this.#input.focus();
  }

  /** Send `text` written in `lang` (a canned phrase in the customer's language). */
  sendText(text, lang = this.#lang) {
    if (!text || !this.#enabled) return;
    const clientId = newClientId();
    this.#mine.add(clientId);
    const el = this.#renderPending(text);
    this.#pending.set(clientId, { text, lang, el });
    this.#log.append(el);
    this.#scroll();
    // When the socket is down the message stays pending and goes out after the next `joined`.
    this.#signal.send(this.#message(clientId, text, lang));
  }

  #message(clientId, text, lang) {
    const message = { type: 'chat', client_id: clientId, text };
    if (lang) message.lang = lang;
    return message;
  }

  #isMine(message) {
    return this.#mine.has(message.client_id)
      || (this.#selfId !== null && message.sender?.participant_id === this.#selfId);
  }

  #render(message) {
    const mine = this.#isMine(message);
    const sender = message.sender ?? {};
    const who = mine ? t('chat.you') : (sender.name || roleName(sender.role));
    const lang = sender.lang ?? message.lang ?? null;
    return h('li', {
      class: `chat-msg ${mine ? 'chat-mine' : 'chat-theirs'}`,
      'data-testid': 'chat-message',
      'data-seq': message.seq,
      'data-role': sender.role ?? '',
    },
    h('div', { class: 'chat-meta' },
      h('span', { class: 'chat-sender' }, who),
      lang ? h('span', { class: 'chat-lang', 'data-testid': 'chat-lang', title: languageName(lang) }, lang) : null,
      h('time', {}, formatTime(message.ts))),
    h('div', { class: 'chat-text', lang: lang ?? undefined }, message.text));
  }

  #renderPending(text) {
    return h('li', { class: 'chat-msg chat-mine chat-pending', 'data-testid': 'chat-pending' },
      h('div', { class: 'chat-meta' }, h('span', { class: 'chat-sender' }, t('chat.you')), h('time', {}, t('chat.sending'))),
      h('div', { class: 'chat-text' }, text));
  }

  #insertOrdered(el, seq) {
    // Confirmed messages stay in seq order; pending ones remain at the bottom.
    const after = [...this.#log.children].find(
      (child) => child.classList.contains('chat-pending') || Number(child.dataset.seq) > seq,
    );
    this.#log.insertBefore(el, after ?? null);
    this.#scroll();
  }

  #scroll() {
    this.#log.scrollTop = this.#log.scrollHeight;
  }
}
