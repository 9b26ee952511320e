// A session's recent output, bounded in bytes, addressed by absolute offsets (bytes since the
// shell started), so a client that reconnects can ask for exactly what it has not seen.

export class OutputRing {
  private readonly buf: Buffer;
  /** Total bytes ever appended: the offset of the next byte. */
  private total = 0;

  constructor(readonly capacity: number) {
    // Not zero-filled: only bytes written are ever read, and untouched pages cost no memory.
    this.buf = Buffer.allocUnsafeSlow(capacity);
  }

  /** The offset one past the newest byte. */
  get end(): number {
    return this.total;
  }

  /** The oldest offset still held. */
  get start(): number {
    return Math.max(0, this.total - this.capacity);
  }

  /** Bytes held now. */
  get size(): number {
    return this.total - this.start;
  }

  append(data: Buffer): void {
    // Only the last `capacity` bytes of a huge chunk can survive anyway.
    const src = data.length > this.capacity ? data.subarray(data.length - this.capacity) : data;
    this.total += data.length - src.length;
    let pos = this.total % this.capacity;
    let off = 0;
    while (off < src.length) {
      const n = Math.min(src.length - off, this.capacity - pos);
      src.copy(this.buf, pos, off, off + n);
      off += n;
      pos = (pos + n) % this.capacity;
    }
    this.total += src.length;
  }

  /** The bytes from `offset` to the end, or undefined when `offset` is no longer (or not yet) held. */
  since(offset: number): Buffer | undefined {
    if (offset < this.start || offset > this.total) return undefined;
    const n = this.total - offset;
    const out = Buffer.allocUnsafe(n);
    let pos = offset % this.capacity;
    let done = 0;
    while (done < n) {
      const k = Math.min(n - done, this.capacity - pos);
      this.buf.copy(out, done, pos, pos + k);
      done += k;
      pos = (pos + k) % this.capacity;
    }
    return out;
  }
}
