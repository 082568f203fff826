// Debian's headless Chromium (installed by `rollcall-testkit install --with-browser`), driven by
// playwright-core in a throwaway profile. Shared by the browser test, the dashboard benchmark and
// docs/screenshot.mjs, hence plain JavaScript (types in chromium.d.mts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium; `close()` closes it and removes its profile directory. */
export async function launchChromium(options = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'rollcall-chromium-'));
  const removeProfile = () => rmSync(profile, { recursive: true, force: true });
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: ARGS,
      ...options,
    });
    return {
      context,
      async close() {
        await context.close();
        removeProfile();
      },
    };
  } catch (error) {
    removeProfile();
    throw error;
  }
}
