/** A small server-sent events client for tests: collects every event of one `/events` stream. */
export interface SseStream {
  /** Every event so far, in order. */
  readonly events: { event: string; data: unknown }[];
  /** The raw text received so far. */
  text(): string;
  /** Resolves with the first event (from the start) named `event` whose data satisfies `predicate`. */
  next<T = unknown>(event: string, predicate?: (data: T) => boolean, timeoutMs?: number): Promise<T>;
  close(): void;
}

/** Opens `url` as an event stream; rejects with the HTTP status when it is not 200. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  if (response.status !== 200 || !response.body) {
    controller.abort();
    throw new Error(`HTTP ${response.status}`);
  }
  const events: { event: string; data: unknown }[] = [];
  const waiters = new Set<() => void>();
  let raw = '';
  let buffer = '';
  void (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        raw += text;
        buffer += text;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
        for (const wake of waiters) wake();
      }
    } catch {
      // closed
    }
  })();
  return {
    events,
    text: () => raw,
    next<T>(event: string, predicate: (data: T) => boolean = () => true, timeoutMs = 10_000) {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          const found = events.find((e) => e.event === event && predicate(e.data as T));
          if (!found) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found.data as T);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no '${event}' event matching within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => controller.abort(),
  };
}
