import type { SessionMessage } from '@rollcall/core';

interface Sessions {
  alive: number;
  unconfirmed: number;
  /** A session was lost and no session has been confirmed since. */
  lost: boolean;
}

/**
 * Whether each backend answers this process's keepalives, folded from `rollcall:session` state
 * changes: connected while at least one session is confirmed and none waits for a renewal answer;
 * not connected while a renewal goes unanswered, or after a loss until a session is confirmed again
 * (the re-grant of a lost lease only succeeds once the backend answers). Clients of one backend
 * name in the same process count together.
 */
export class Connectivity {
  private readonly backends = new Map<string, Sessions>();

  apply(message: SessionMessage): void {
    let sessions = this.backends.get(message.backend);
    if (!sessions) {
      sessions = { alive: 0, unconfirmed: 0, lost: false };
      this.backends.set(message.backend, sessions);
    }
    // Sessions granted before the instrumentation was installed are unknown to it: never below zero.
    if (message.previous === 'alive') sessions.alive = Math.max(0, sessions.alive - 1);
    if (message.previous === 'unconfirmed') sessions.unconfirmed = Math.max(0, sessions.unconfirmed - 1);
    if (message.state === 'alive') {
      sessions.alive += 1;
      sessions.lost = false;
    } else if (message.state === 'unconfirmed') sessions.unconfirmed += 1;
    else if (message.state === 'lost') sessions.lost = true;
    // The last session ended (the client closed): nothing is left to be connected or not.
    else if (sessions.alive + sessions.unconfirmed === 0) sessions.lost = false;
  }

  /** 1 (connected) or 0 per backend that holds a session or lost one; nothing for a closed client. */
  *values(): IterableIterator<[backend: string, connected: 0 | 1]> {
    for (const [backend, s] of this.backends) {
      if (s.alive + s.unconfirmed === 0 && !s.lost) continue;
      yield [backend, s.unconfirmed === 0 && (s.alive > 0 || !s.lost) ? 1 : 0];
    }
  }
}
