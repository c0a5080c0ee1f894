// The codes of the /ws protocol that the pages act on, in one place. The server's own lists are
// `signaling.CloseCode` and `signaling.SignalingErrorCode` (signaling/errors.py);
// tests/web/test_protocol_js.py keeps these equal to them.

/** WebSocket close codes the server sends. */
export const CloseCode = Object.freeze({
  /** The server is shutting down: reconnect. */
  GOING_AWAY: 1001,
  /** The client kept flooding after `rate_limited`. */
  POLICY_VIOLATION: 1008,
  /** A frame larger than the socket takes. */
  MESSAGE_TOO_BIG: 1009,
  /** Fell behind the outbound queue: reconnect and resume from the last sequence. */
  LAGGING: 4008,
  /** The node holding the call's media stopped: reconnect, resume and offer again. */
  MEDIA_LOST: 4012,
  /** Not authorised: retrying with the same credential cannot help. */
  UNAUTHORIZED: 4401,
  /** A camera page opened again elsewhere: the newer page publishes now, this one must stop. */
  REPLACED: 4409,
});

/** Close codes after which a page must not reconnect by itself. */
export const FATAL_CLOSE_CODES = Object.freeze(new Set([CloseCode.UNAUTHORIZED, CloseCode.REPLACED]));

/** Close codes the page itself sends (never sent by the server). */
export const ClientCloseCode = Object.freeze({
  /** The page leaves for good. */
  NORMAL: 1000,
  /** The page drops its socket to open a fresh one (network change, failed peer). */
  RECONNECT: 4000,
});

/** `code` of the server's `error` messages that a page handles by name. */
export const SignalingErrorCode = Object.freeze({
  UNAUTHORIZED: 'unauthorized',
  TOKEN_EXPIRED: 'token_expired',
  ALREADY_ACCEPTED: 'already_accepted',
  NOT_WAITING: 'not_waiting',
  REPLACED: 'replaced',
});
