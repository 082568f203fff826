import type { BrowserContext, chromium } from 'playwright-core';

export interface Chromium {
  readonly context: BrowserContext;
  /** Closes the browser and removes its profile directory. */
  close(): Promise<void>;
}

/** Launches headless Chromium in a fresh profile (`options`: e.g. `viewport`). */
export function launchChromium(
  options?: Parameters<typeof chromium.launchPersistentContext>[1],
): Promise<Chromium>;
