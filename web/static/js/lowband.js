// When the customer's video cannot hold: the console's automatic switch to audio plus photos
// and back. A pure judge of the received bitrate and frame rate, sampled once a second, so its
// rule can be tested on its own.
//
// Video whose frame rate stays under `lowFps` (or under twice that with the bitrate under
// `lowKbps`) for `holdS` seconds -> audio. In audio mode the
// phone sends no video, so nothing can be measured: after `retryS` the judge tries video again,
// and each time the video fails again right after such a try it waits twice as long (up to
// `maxRetryS`). An agent's own choice of audio is left alone (no automatic return).

export class LinkJudge {
  constructor({ lowKbps = 120, lowFps = 6, holdS = 8, retryS = 30, maxRetryS = 240, graceS = 6 } = {}) {
    Object.assign(this, { lowKbps, lowFps, holdS, retryS, maxRetryS, graceS });
    this.wait = retryS;
    this.lowSince = null;
    this.audioSince = null;
    this.videoSince = null;
    this.agentAudio = false;
  }

  /** The agent switched by hand: an audio chosen by the agent stays audio. */
  agentChose(mode) {
    this.agentAudio = mode === 'audio';
    this.lowSince = null;
  }

  /** One sample; returns the mode to switch to, or null to stay. */
  sample({ kbps, fps, t, mode }) {
    if (mode === 'audio') {
      this.lowSince = null;
      if (this.agentAudio) return null;
      if (this.audioSince === null) this.audioSince = t;
      if (t - this.audioSince >= this.wait) {
        this.audioSince = null;
        this.videoSince = t;
        return 'video';
      }
      return null;
    }
    this.audioSince = null;
    if (this.videoSince === null) this.videoSince = t;
    // A video that just (re)started ramps up: give it a moment before judging.
    if (t - this.videoSince < this.graceS) return null;
    // A still scene (a label held up) is sent at a few kbit/s and full frame rate: a low bitrate
    // alone is no sign of trouble, a falling frame rate is.
    const low = fps < this.lowFps || (kbps < this.lowKbps && fps < 2 * this.lowFps);
    if (!low) {
      this.lowSince = null;
      // Video held for a while: the next failure starts from the shortest wait again.
      if (t - this.videoSince > 4 * this.holdS) this.wait = this.retryS;
      return null;
    }
    if (this.lowSince === null) this.lowSince = t;
    if (t - this.lowSince < this.holdS) return null;
    const retried = t - this.videoSince < this.graceS + 2 * this.holdS;
    if (retried) this.wait = Math.min(this.maxRetryS, this.wait * 2);
    this.lowSince = null;
    this.videoSince = null;
    return 'audio';
  }
}
