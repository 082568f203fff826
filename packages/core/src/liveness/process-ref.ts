/**
 * Keeps the Node process alive while Rollcall has open work, exactly as an open socket does.
 *
 * Rollcall's own timers are unref'd (a library must not keep a finished program alive), and its
 * network clients may hold no ref'd handle while they wait to reconnect to a server that is down.
 * Without this, a program whose only work is `await backend.kv.put(...)` against an unreachable etcd,
 * a `for await` over a watch, or a process that only holds a registration, would see Node exit in
 * the middle (exit code 13 for an unsettled top-level await, or 0). Every pending call, open watch,
 * registration and held lock takes a hold; the process may exit once all are released.
 */

let holds = 0;
let timer: ReturnType<typeof setInterval> | undefined;

/** Takes a hold on the process; call the returned function (idempotent) to release it. */
export function holdProcess(): () => void {
  holds += 1;
  // One ref'd timer for every hold: a long interval that never does anything.
  timer ??= setInterval(() => {}, 2 ** 31 - 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    holds -= 1;
    if (holds === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** Holds the process until `promise` settles, and returns it. */
export function whileHeld<T>(promise: Promise<T>): Promise<T> {
  const release = holdProcess();
  promise.then(release, release);
  return promise;
}

/** How many holds are taken now (tests). */
export function processHolds(): number {
  return holds;
}
