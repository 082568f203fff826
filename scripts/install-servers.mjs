#!/usr/bin/env node
// Installs what this repository's tests and benchmarks need: `rollcall-testkit install-servers`
// (etcd, etcdctl, Consul 1.8.7: see packages/testkit/README.md), plus Chromium and zsh for the
// `rollcall ui` browser tests and the zsh completion tests. Idempotent and quick when all is present.
//
// The installer is the testkit's own entry point, so it is built first (`tsc -b` of the testkit
// and core: ~0.3 s when up to date, a few seconds on a fresh clone, reused by `npm run build`).
// Any failure exits non-zero with a message: tests must fail loudly, never skip.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function node(args) {
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

node([join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', join(root, 'packages', 'testkit')]);
node([
  join(root, 'packages', 'testkit', 'bin', 'rollcall-testkit.js'),
  'install-servers',
  '--with-browser',
  '--with-zsh',
]);
