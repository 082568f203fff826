// Preloaded into a test's child process (`node --import <this file>`) to step its wall clock the way an
// NTP correction would, without touching the machine's clock. `Date.now()` and `new Date()` return the
// real time plus an offset; on SIGUSR2 the offset is read (in ms) from the file named by
// ROLLCALL_WALL_CLOCK_FILE. The monotonic clock (`performance.now()`) is not touched: that is the point.
// Signal listeners keep no process alive, so the child still exits when its work is done.
import { readFileSync } from 'node:fs';

const file = process.env.ROLLCALL_WALL_CLOCK_FILE;
const RealDate = Date;
const realNow = RealDate.now.bind(RealDate);
let offset = 0;

class SteppedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(realNow() + offset);
    else super(...args);
  }
  static now() {
    return realNow() + offset;
  }
}
globalThis.Date = SteppedDate;

process.on('SIGUSR2', () => {
  if (!file) return;
  offset = Number(readFileSync(file, 'utf8')) || 0;
  process.stderr.write(`wall clock stepped: offset ${offset} ms\n`);
});
