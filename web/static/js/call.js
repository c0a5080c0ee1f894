// The browser side of a call: one RTCPeerConnection to the server. The client always offers;
// the server answers. `renegotiate` asks for more receiving transceivers and a new offer.
import { t } from './i18n.js';
import { Emitter } from './signal.js';

const GATHER_CAP_MS = 1000;

/** Resolve when ICE gathering completes, or after `capMs` (trickle covers the rest). */
function gatheringDone(pc, capMs = GATHER_CAP_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, capMs);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      resolve();
    }
    function onChange() {
      if (pc.iceGatheringState === 'complete') finish();
    }
    pc.addEventListener('icegatheringstatechange', onChange);
  });
}

/** The ICE server list of `joined` in the shape RTCPeerConnection wants. */
function rtcIceServers(servers) {
  return (servers ?? []).map(({ urls, username, credential }) => {
    const entry = { urls };
    if (username) entry.username = username;
    if (credential) entry.credential = credential;
    return entry;
  });
}

/**
 * One call's peer connection. Emits `track` ({track, streams}), `state` (connectionState) and
 * `error` (Error). `localStream` tracks are sent; `recvVideo` adds a recvonly video transceiver.
 * `cameraId` scopes the peer to one camera of a site's room: its offers and candidates carry
 * `camera_id`, and only answers and `renegotiate` messages for that camera reach it.
 */
export class CallPeer extends Emitter {
  #signal;
  #pc;
  #cameraId;
  #offerSent = false;
  #negotiating = false;
  #wanted = null;
  #closed = false;
  #unsubscribe = [];

  constructor({ signal, iceServers, localStream = null, recvVideo = false, cameraId = null }) {
    super();
    this.#signal = signal;
    this.#cameraId = cameraId;
    this.#pc = new RTCPeerConnection({ iceServers: rtcIceServers(iceServers), bundlePolicy: 'max-bundle' });
    this.#addLocal(localStream, { recvVideo });
    this.#wireEvents();
    this.#unsubscribe.push(
      signal.on('answer', (message) => this.#mine(message) && this.#onAnswer(message)),
      signal.on('renegotiate', (message) => this.#mine(message) && this.#onRenegotiate(message)),
    );
  }

  #mine(message) {
    return (message.camera_id ?? null) === this.#cameraId;
  }

  #scoped(message) {
    return this.#cameraId === null ? message : { ...message, camera_id: this.#cameraId };
  }

  get connectionState() {
    return this.#pc.connectionState;
  }

  /** The peer connection's statistics (what the link carries now). */
  getStats() {
    return this.#pc.getStats();
  }

  /** Send the first offer. */
  start() {
    return this.#negotiate();
  }

  /** Swap the outgoing track of `kind` without renegotiating (camera switch, mic change). */
  async replaceTrack(kind, track) {
    const sender = this.#pc.getSenders().find((s) => s.track?.kind === kind
      || (s.track === null && this.#senderKind(s) === kind));
    if (!sender) throw new Error(`no ${kind} sender`);
    await sender.replaceTrack(track);
  }

  /**
   * Send `track` as this peer's audio (talk-back), or stop sending with `null`. The first time,
   * a receive-only audio transceiver becomes send-and-receive and the peer offers again.
   */
  async setLocalAudio(track) {
    const transceiver = this.#pc.getTransceivers()
      .find((t) => !t.stopped && (t.sender.track?.kind === 'audio' || t.receiver.track?.kind === 'audio'));
    if (!transceiver) throw new Error('no audio transceiver');
    await transceiver.sender.replaceTrack(track);
    if (track && transceiver.direction === 'recvonly') {
      transceiver.direction = 'sendrecv';
      if (this.#negotiating) this.#wanted = this.#wanted ?? {};
      else await this.#negotiate();
    }
  }

  /** Stop the peer connection and forget its handlers. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const off of this.#unsubscribe) off();
    this.#pc.close();
    this.emit('state', 'closed');
  }

  #senderKind(sender) {
    const transceiver = this.#pc.getTransceivers().find((t) => t.sender === sender);
    return transceiver?.receiver.track?.kind;
  }

  #addLocal(stream, { recvVideo }) {
    const tracks = stream?.getTracks() ?? [];
    for (const track of tracks) {
      if (track.kind === 'video') this.#addVideo(track, stream);
      else this.#pc.addTrack(track, stream);
    }
    const hasAudio = tracks.some((t) => t.kind === 'audio');
    // Without a microphone the call still hears the other side.
    if (!hasAudio) this.#pc.addTransceiver('audio', { direction: 'recvonly' });
    if (recvVideo) this.#pc.addTransceiver('video', { direction: 'recvonly' });
  }

  /**
   * Send video in three temporal layers (VP8 L1T3): the server forwards all of them to a viewer
   * whose link carries them and only the lower ones to a slow viewer, so one narrow link does
   * not slow everyone, and grading decodes the base layer alone. A browser that does not know
   * `scalabilityMode` sends one layer.
   */
  #addVideo(track, stream) {
    try {
      this.#pc.addTransceiver(track, {
        direction: 'sendrecv', streams: [stream], sendEncodings: [{ scalabilityMode: 'L1T3' }],
      });
    } catch {
      this.#pc.addTrack(track, stream);
    }
  }

  #wireEvents() {
    const pc = this.#pc;
    pc.addEventListener('track', (event) => this.emit('track', { track: event.track, streams: event.streams }));
    pc.addEventListener('connectionstatechange', () => this.emit('state', pc.connectionState));
    pc.addEventListener('icecandidate', (event) => {
      // Candidates found before the offer went out are already inside its SDP.
      if (!this.#offerSent || this.#closed) return;
      const c = event.candidate;
      this.#signal.send(this.#scoped(c
        ? { type: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }
        : { type: 'candidate', candidate: '' }));
    });
  }

  async #negotiate() {
    if (this.#closed) return;
    this.#negotiating = true;
    try {
      const offer = await this.#pc.createOffer();
      await this.#pc.setLocalDescription(offer);
      await gatheringDone(this.#pc);
      if (this.#closed) return;
      this.#offerSent = true;
      this.#signal.send(this.#scoped({ type: 'offer', sdp: this.#pc.localDescription.sdp }));
    } catch (err) {
      this.#negotiating = false;
      this.emit('error', err);
    }
  }

  async #onAnswer(message) {
    if (this.#closed || this.#pc.signalingState !== 'have-local-offer') return;
    try {
      await this.#pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
    } catch (err) {
      this.emit('error', err);
    } finally {
      this.#negotiating = false;
    }
    if (this.#wanted) {
      const wanted = this.#wanted;
      this.#wanted = null;
      this.#onRenegotiate({ tracks: wanted });
    }
  }

  #onRenegotiate(message) {
    if (this.#closed) return;
    const wanted = message.tracks ?? {};
    if (this.#negotiating) {
      // One offer at a time: apply the newest request after the pending answer.
      this.#wanted = wanted;
      return;
    }
    for (const kind of ['audio', 'video']) this.#ensureReceivers(kind, wanted[kind] ?? 0);
    this.#negotiate();
  }

  #ensureReceivers(kind, count) {
    const receiving = this.#pc.getTransceivers().filter((t) => !t.stopped
      && t.receiver.track?.kind === kind
      && (t.direction === 'recvonly' || t.direction === 'sendrecv'));
    for (let i = receiving.length; i < count; i += 1) {
      this.#pc.addTransceiver(kind, { direction: 'recvonly' });
    }
  }
}

/** Why getUserMedia failed, in words a customer can act on. */
/**
 * The camera facing ``facing`` ('user' or 'environment') at up to 1280x720, with the microphone;
 * a device without a usable microphone still shows its picture.
 */
export async function openCamera(facing) {
  const video = { facingMode: { ideal: facing }, width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio: true });
  } catch (err) {
    if (err?.name === 'NotFoundError' || err?.name === 'NotReadableError') {
      return navigator.mediaDevices.getUserMedia({ video });
    }
    throw err;
  }
}

/** Why the camera could not start, in the page's language: {kind, title, message}. */
export function describeMediaError(err) {
  const name = err?.name ?? '';
  let kind = 'other';
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
    kind = 'denied';
  } else if (name === 'NotFoundError' || name === 'DevicesNotFoundError' || name === 'OverconstrainedError') {
    kind = 'missing';
  } else if (name === 'NotReadableError' || name === 'TrackStartError' || name === 'AbortError') {
    kind = 'busy';
  } else if (!navigator.mediaDevices?.getUserMedia) {
    kind = 'unsupported';
  }
  if (kind === 'other') console.warn('camera failed', err);
  return { kind, title: t(`media.${kind}_title`), message: t(`media.${kind}_message`) };
}

/** Play a media element; resolves false when autoplay rules blocked it (needs a tap). */
export async function tryPlay(el) {
  try {
    await el.play();
    return true;
  } catch (err) {
    return err?.name !== 'NotAllowedError';
  }
}
