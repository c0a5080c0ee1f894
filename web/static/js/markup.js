// Marks on a frozen frame, drawn the same way on the agent's console and the customer's phone.
// Every point is normalised to the frame (x and y in 0..1 from the top-left corner), so a mark
// lands on the same spot of the picture on any screen size and orientation; the canvas is laid
// over the picture where it is shown (object-fit: contain), and redrawn when that box changes.

export const TOOLS = Object.freeze(['arrow', 'circle', 'freehand', 'text', 'marker']);
export const COLORS = Object.freeze(['#ff3b30', '#ffcc00', '#34c759', '#0a84ff', '#ffffff']);

/** Where a picture of `naturalW` x `naturalH` lies inside a box of `boxW` x `boxH` (contain). */
export function containRect(boxW, boxH, naturalW, naturalH) {
  if (!naturalW || !naturalH || !boxW || !boxH) return { x: 0, y: 0, w: boxW, h: boxH };
  const scale = Math.min(boxW / naturalW, boxH / naturalH);
  const w = naturalW * scale;
  const h = naturalH * scale;
  return { x: (boxW - w) / 2, y: (boxH - h) / 2, w, h };
}

function lineWidth(rect) {
  return Math.max(2, Math.round(0.006 * Math.min(rect.w, rect.h)));
}

/** Draw one stroke on `ctx`, inside `rect` (the picture's box on the canvas, CSS pixels). */
export function drawStroke(ctx, stroke, rect) {
  const at = ([x, y]) => [rect.x + x * rect.w, rect.y + y * rect.h];
  const width = lineWidth(rect);
  ctx.save();
  ctx.strokeStyle = stroke.color;
  ctx.fillStyle = stroke.color;
  ctx.lineWidth = width;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  const pts = stroke.points.map(at);
  if (stroke.tool === 'arrow') {
    const [[x1, y1], [x2, y2]] = pts;
    const angle = Math.atan2(y2 - y1, x2 - x1);
    const head = width * 5;
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2 - Math.cos(angle) * head * 0.6, y2 - Math.sin(angle) * head * 0.6);
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x2, y2);
    ctx.lineTo(x2 - head * Math.cos(angle - 0.45), y2 - head * Math.sin(angle - 0.45));
    ctx.lineTo(x2 - head * Math.cos(angle + 0.45), y2 - head * Math.sin(angle + 0.45));
    ctx.closePath();
    ctx.fill();
  } else if (stroke.tool === 'circle') {
    const [[x1, y1], [x2, y2]] = pts;
    ctx.beginPath();
    ctx.ellipse((x1 + x2) / 2, (y1 + y2) / 2, Math.abs(x2 - x1) / 2 || 1, Math.abs(y2 - y1) / 2 || 1, 0, 0, Math.PI * 2);
    ctx.stroke();
  } else if (stroke.tool === 'freehand') {
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
    ctx.stroke();
  } else if (stroke.tool === 'text') {
    const [[x, y]] = pts;
    const size = Math.max(12, Math.round(0.03 * Math.min(rect.w, rect.h)));
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    ctx.textBaseline = 'top';
    ctx.lineWidth = Math.max(2, size / 6);
    ctx.strokeStyle = 'rgba(0,0,0,0.75)';
    ctx.strokeText(stroke.text, x, y);
    ctx.fillText(stroke.text, x, y);
  } else if (stroke.tool === 'marker') {
    const [[x, y]] = pts;
    const radius = Math.max(9, 0.025 * Math.min(rect.w, rect.h));
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, Math.PI * 2);
    ctx.fill();
    ctx.fillStyle = '#ffffff';
    ctx.font = `700 ${Math.round(radius * 1.2)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(String(stroke.number), x, y + 1);
  }
  ctx.restore();
}

/**
 * A canvas over a picture (an <img> of the frozen frame or a <video>): keeps the strokes and
 * the taps shown on it, and redraws them whenever the picture's box changes size.
 */
export class MarkupLayer {
  #canvas;
  #picture;
  #strokes = new Map();
  #pulses = [];
  #draft = null;
  #frame = 0;

  constructor(canvas, picture) {
    this.#canvas = canvas;
    this.#picture = picture;
    new ResizeObserver(() => this.redraw()).observe(canvas);
    picture.addEventListener('load', () => this.redraw());
    picture.addEventListener('loadedmetadata', () => this.redraw());
  }

  get canvas() { return this.#canvas; }

  get strokes() { return [...this.#strokes.values()]; }

  set picture(el) { this.#picture = el; this.redraw(); }

  /** The picture's box on the canvas, in CSS pixels. */
  rect() {
    const el = this.#picture;
    const natW = el.naturalWidth || el.videoWidth || 0;
    const natH = el.naturalHeight || el.videoHeight || 0;
    return containRect(this.#canvas.clientWidth, this.#canvas.clientHeight, natW, natH);
  }

  /** A pointer event's spot as a share of the picture, or null outside it. */
  toUnit(event) {
    const box = this.#canvas.getBoundingClientRect();
    const rect = this.rect();
    const x = (event.clientX - box.left - rect.x) / rect.w;
    const y = (event.clientY - box.top - rect.y) / rect.h;
    if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) return null;
    return [Math.round(x * 10000) / 10000, Math.round(y * 10000) / 10000];
  }

  add(stroke) { this.#strokes.set(stroke.id, stroke); this.redraw(); }

  remove(id) { this.#strokes.delete(id); this.redraw(); }

  clear() { this.#strokes.clear(); this.#draft = null; this.redraw(); }

  setDraft(stroke) { this.#draft = stroke; this.redraw(); }

  /** A pulsing ring at a tapped spot, gone after `ms`. */
  pulse([x, y], color = '#ffcc00', ms = 3500) {
    this.#pulses.push({ x, y, color, until: performance.now() + ms });
    this.#animate();
  }

  #animate() {
    if (this.#frame) return;
    const step = () => {
      this.#frame = 0;
      const now = performance.now();
      this.#pulses = this.#pulses.filter((p) => p.until > now);
      this.redraw();
      if (this.#pulses.length) this.#frame = requestAnimationFrame(step);
    };
    this.#frame = requestAnimationFrame(step);
  }

  redraw() {
    const canvas = this.#canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const rect = this.rect();
    for (const stroke of this.#strokes.values()) drawStroke(ctx, stroke, rect);
    if (this.#draft) drawStroke(ctx, this.#draft, rect);
    const now = performance.now();
    for (const p of this.#pulses) {
      const phase = (now % 1000) / 1000;
      const cx = rect.x + p.x * rect.w;
      const cy = rect.y + p.y * rect.h;
      const base = Math.max(10, 0.03 * Math.min(rect.w, rect.h));
      ctx.save();
      ctx.strokeStyle = p.color;
      ctx.globalAlpha = 1 - phase;
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(cx, cy, base * (1 + phase * 1.5), 0, Math.PI * 2);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = p.color;
      ctx.beginPath();
      ctx.arc(cx, cy, base * 0.35, 0, Math.PI * 2);
      ctx.fill();
      ctx.restore();
    }
  }
}
