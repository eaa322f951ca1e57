/**
 * The latest line of a process's output, for progress messages: the last non-empty line seen
 * (complete or not yet ended), without control characters, at most `maxChars` long.
 */
export class OutputTail {
  readonly #maxChars: number;
  #partial = '';
  #last = '';
  readonly #decoder = new TextDecoder('utf-8');

  constructor(maxChars = 200) {
    this.#maxChars = maxChars;
  }

  push(chunk: Uint8Array): void {
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    const lines = text.split(/\r?\n|\r/);
    this.#partial = (lines.pop() ?? '').slice(-4 * this.#maxChars);
    for (let i = lines.length - 1; i >= 0; i--) {
      const clean = tidy(lines[i] as string);
      if (clean) {
        this.#last = clean.slice(0, this.#maxChars);
        break;
      }
    }
  }

  /** The line to show: the unfinished one when it has text, else the last complete one. */
  get line(): string {
    const partial = tidy(this.#partial);
    return (partial || this.#last).slice(0, this.#maxChars);
  }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping terminal control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]|\u001b\[[0-9;?]*[A-Za-z]/g;
const tidy = (s: string) => s.replace(CONTROL, '').trim();
