import type { KvCopyProgress } from './kv-copy.js';

/** Where progress goes: a terminal (redrawn in place) or plain lines. */
export interface ProgressOutput {
  /** Writes a whole line (plain output). */
  line(text: string): void;
  /** Writes raw text without a newline, when the output is a terminal. */
  tty?: (text: string) => void;
  /** Clock, for tests. Default `performance.now`. */
  now?: () => number;
}

const BAR = 30;
/** Least time between two plain progress lines. */
const LINE_EVERY_MS = 1000;

/**
 * Renders copy progress: a bar redrawn in place on a terminal, else a plain line at most once a
 * second (and at the end), so logs of long copies stay readable.
 */
export function progressReporter(out: ProgressOutput): {
  update(progress: KvCopyProgress): void;
  end(): void;
} {
  const now = out.now ?? (() => performance.now());
  let lastLine = Number.NEGATIVE_INFINITY;
  let drawn = false;
  return {
    update({ done, total, bytes }) {
      const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
      const text = `${done}/${total} keys (${pct}%, ${(bytes / 1024 / 1024).toFixed(1)} MiB)`;
      if (out.tty) {
        const filled = Math.round((pct / 100) * BAR);
        out.tty(`\r[${'#'.repeat(filled)}${'-'.repeat(BAR - filled)}] ${text}`);
        drawn = true;
        return;
      }
      if (done === total || now() - lastLine >= LINE_EVERY_MS) {
        lastLine = now();
        out.line(`progress: ${text}`);
      }
    },
    end() {
      if (drawn) out.tty?.('\n');
    },
  };
}
