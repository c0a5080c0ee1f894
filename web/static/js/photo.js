// Full-resolution photos from the customer's phone: taken with ImageCapture.takePhoto() where
// the browser has it (the camera's photo pipeline, at its full size), else the live track's
// largest frame; sent in pieces that resume where a dropped network left them.

/** A photo of `track` (shown in `video`): {blob, method, width, height}. */
export async function takePhoto(track, video) {
  if (typeof ImageCapture === 'function' && track?.readyState === 'live') {
    try {
      const capture = new ImageCapture(track);
      let settings;
      try {
        const caps = await capture.getPhotoCapabilities();
        settings = { imageWidth: caps.imageWidth?.max, imageHeight: caps.imageHeight?.max };
      } catch {
        settings = undefined;
      }
      const blob = await capture.takePhoto(settings);
      const size = await imageSize(blob);
      return { blob, method: 'take_photo', ...size };
    } catch (err) {
      console.warn('takePhoto failed, using the largest frame', err);
    }
  }
  return frameBlob(video);
}

/** The video's current frame at its own (largest) size, as a JPEG. */
async function frameBlob(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.95));
  if (!blob) throw new Error('the camera gave no picture');
  return { blob, method: 'frame', width: canvas.width, height: canvas.height };
}

export async function imageSize(blob) {
  const bitmap = await createImageBitmap(blob);
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return size;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the server said when it refused (its sentence, ready to show). */
export class UploadError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function refusal(response) {
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    error = {};
  }
  return new UploadError(response.status, error.code ?? `http_${response.status}`,
    error.message ?? `refused with HTTP ${response.status}`);
}

/**
 * Sends one photo to `base` (the customer page's own path) in pieces: POST creates the upload,
 * each PATCH sends the bytes from `Upload-Offset`, and after a network error a HEAD says where
 * to go on. Resolves to the filed photo ({item_id, width, height, sha256, grade}).
 */
export class PhotoUpload {
  constructor({ base, blob, meta, pieceBytes = 512 * 1024, onProgress = () => {}, maxTries = 40 }) {
    Object.assign(this, { base, blob, meta, pieceBytes, onProgress, maxTries });
    this.id = null;
    this.offset = 0;
    this.resumed = 0;
  }

  async send() {
    const created = await fetch(`${this.base}/uploads`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ size: this.blob.size, content_type: this.blob.type || 'image/jpeg', ...this.meta }),
    });
    if (!created.ok) throw await refusal(created);
    this.id = (await created.json()).upload.id;
    let failures = 0;
    for (;;) {
      const end = Math.min(this.blob.size, this.offset + this.pieceBytes);
      let response;
      try {
        response = await fetch(`${this.base}/uploads/${encodeURIComponent(this.id)}`, {
          method: 'PATCH',
          credentials: 'same-origin',
          headers: { 'Upload-Offset': String(this.offset), 'Content-Type': 'application/offset+octet-stream' },
          body: this.blob.slice(this.offset, end),
        });
      } catch (err) {
        // The network dropped: wait, ask where the server is, go on from there.
        failures += 1;
        if (failures > this.maxTries) throw new UploadError(0, 'network', 'the connection is gone');
        this.onProgress({ sent: this.offset, size: this.blob.size, waiting: true });
        await sleep(Math.min(8000, 500 * 2 ** Math.min(failures, 4)));
        await this.#resync();
        continue;
      }
      if (response.status === 409) {
        await this.#resync();
        continue;
      }
      if (!response.ok) throw await refusal(response);
      failures = 0;
      const data = await response.json();
      this.offset = data.upload.offset;
      this.onProgress({ sent: this.offset, size: this.blob.size, waiting: false });
      if (data.photo) return data.photo;
    }
  }

  async #resync() {
    try {
      const head = await fetch(`${this.base}/uploads/${encodeURIComponent(this.id)}`, {
        method: 'HEAD', credentials: 'same-origin',
      });
      if (head.ok) {
        this.offset = Number(head.headers.get('Upload-Offset') ?? this.offset);
        this.resumed += 1;
      } else if (head.status === 404) {
        throw new UploadError(404, 'not_found', 'the upload expired');
      }
    } catch (err) {
      if (err instanceof UploadError) throw err;
      // Still offline: the next PATCH fails and waits again.
    }
  }
}
