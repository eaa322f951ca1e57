export type OutputStream = 'stdout' | 'stderr';

interface Chunk {
  stream: OutputStream;
  /** Offset of the chunk's first byte in the output (stdout and stderr together, arrival order). */
  offset: number;
  data: Buffer;
}

export interface RingRead {
  stdout: Buffer;
  stderr: Buffer;
  /** The cursor for the next read: the offset just past the last byte returned. */
  nextSince: number;
  /** Bytes between `since` and the oldest byte still kept (dropped to stay within capacity). */
  dropped: number;
  /** More bytes are kept after nextSince than this read returned. */
  more: boolean;
}

/** Consecutive chunks of one stream are merged while the last one is smaller than this. */
const MERGE_BELOW = 8 << 10;

/**
 * The output of a background process: the newest `capacity` bytes of stdout and stderr together,
 * in arrival order, each byte addressed by its offset since the start (so a reader's cursor stays
 * valid while old bytes are dropped). Totals count every byte, kept or not. Small chunks of the
 * same stream are merged, so a guest printing one byte at a time costs bytes, not objects.
 */
export class OutputRing {
  readonly #capacity: number;
  readonly #chunks: Chunk[] = [];
  /** Index of the first live chunk in #chunks (dropped ones are spliced out in batches). */
  #head = 0;
  #kept = 0;
  #end = 0;
  readonly #totals = { stdout: 0, stderr: 0 };

  constructor(capacity: number) {
    if (!(capacity > 0)) throw new RangeError(`ring capacity must be positive, got ${capacity}`);
    this.#capacity = capacity;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Offset just past the newest byte (= all bytes ever pushed). */
  get end(): number {
    return this.#end;
  }

  /** Offset of the oldest byte still kept. */
  get start(): number {
    return this.#end - this.#kept;
  }

  /** Bytes kept now (at most the capacity). */
  get keptBytes(): number {
    return this.#kept;
  }

  get totals(): Readonly<{ stdout: number; stderr: number }> {
    return this.#totals;
  }

  push(stream: OutputStream, chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#totals[stream] += chunk.length;
    const offset = this.#end;
    this.#end += chunk.length;
    // Only the newest `capacity` bytes of a chunk larger than the ring can ever be read.
    const data = chunk.length > this.#capacity ? chunk.subarray(chunk.length - this.#capacity) : chunk;
    const dataOffset = this.#end - data.length;
    const last = this.#chunks.length > this.#head ? this.#chunks[this.#chunks.length - 1] : undefined;
    if (last && last.stream === stream && last.data.length < MERGE_BELOW && dataOffset === offset) {
      last.data = Buffer.concat([last.data, data]);
    } else {
      // Copied: the caller's buffer (an SSH packet) may be reused.
      this.#chunks.push({ stream, offset: dataOffset, data: Buffer.from(data) });
    }
    this.#kept += data.length;
    this.#trim();
  }

  /** Drops the oldest bytes until at most `capacity` are kept. */
  #trim(): void {
    let excess = this.#kept - this.#capacity;
    while (excess > 0) {
      const first = this.#chunks[this.#head] as Chunk;
      if (first.data.length <= excess) {
        excess -= first.data.length;
        this.#kept -= first.data.length;
        this.#head++;
      } else {
        first.data = Buffer.from(first.data.subarray(excess)); // a copy: the old bytes are freed
        first.offset += excess;
        this.#kept -= excess;
        excess = 0;
      }
    }
    if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /**
   * Up to `maxBytes` bytes from offset `since` (clamped to the oldest kept byte), split by stream.
   * A cut made by `maxBytes` inside a UTF-8 character moves back to the character's start, so
   * text read in pieces decodes cleanly (unless a single character is more than `maxBytes`).
   */
  read(since: number, maxBytes: number): RingRead {
    if (since > this.#end) {
      throw new RangeError(`since ${since} is past the end of the output (${this.#end} bytes so far)`);
    }
    const from = Math.max(since, this.start);
    const dropped = from - since;
    const limit = Math.min(this.#end, from + Math.max(0, maxBytes));
    const parts: Array<{ stream: OutputStream; data: Buffer }> = [];
    for (let i = this.#head; i < this.#chunks.length; i++) {
      const c = this.#chunks[i] as Chunk;
      const cEnd = c.offset + c.data.length;
      if (cEnd <= from) continue;
      if (c.offset >= limit) break;
      const a = Math.max(from, c.offset) - c.offset;
      const b = Math.min(limit, cEnd) - c.offset;
      parts.push({ stream: c.stream, data: c.data.subarray(a, b) });
    }
    let taken = limit - from;
    if (limit < this.#end && parts.length > 0) {
      const lastPart = parts[parts.length - 1] as { stream: OutputStream; data: Buffer };
      const back = incompleteUtf8Tail(lastPart.data);
      if (back > 0 && back < taken) {
        lastPart.data = lastPart.data.subarray(0, lastPart.data.length - back);
        taken -= back;
      }
    }
    const pick = (s: OutputStream) => Buffer.concat(parts.filter((p) => p.stream === s).map((p) => p.data));
    return {
      stdout: pick('stdout'),
      stderr: pick('stderr'),
      nextSince: from + taken,
      dropped,
      more: from + taken < this.#end,
    };
  }
}

/** How many bytes at the end of `b` are the start of a UTF-8 character that continues after it. */
export function incompleteUtf8Tail(b: Buffer): number {
  // Look back over at most 3 continuation bytes (10xxxxxx) to the lead byte.
  for (let i = 1; i <= Math.min(4, b.length); i++) {
    const byte = b[b.length - i] as number;
    if ((byte & 0xc0) === 0x80) continue; // continuation
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > i ? i : 0;
  }
  return 0;
}
