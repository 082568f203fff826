#!/usr/bin/env node
// Installs the real servers the tests and benchmarks run against. Idempotent: when everything is
// present it only checks versions and exits (well under a second).
//
// - etcd + etcdctl: from the machine's Debian archive (`apt-get install etcd-server etcd-client`).
//   The harness never starts or relies on a system etcd; it only needs the binaries.
// - Consul 1.8.7: Debian bookworm has no consul, bullseye does. It is fetched WITHOUT changing the
//   machine's apt sources: a temporary sources file reuses the mirror URI already configured on
//   this machine with suite `bullseye`, apt-get runs with private lists/cache dirs, and the .deb is
//   unpacked (not installed) into <repo>/.cache/servers/consul.
//
// - chromium (and zsh): from the machine's Debian archive, for the `rollcall ui` browser tests
//   (driven by playwright-core with `executablePath: '/usr/bin/chromium'`) and the zsh completion test.
//
// No package host is written here: the mirror is read from the machine's apt config at run time.
// Any failure exits non-zero with a message: tests must fail loudly, never skip.

import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const consulDest = join(repoRoot, '.cache', 'servers', 'consul');
const consulBin = join(consulDest, 'usr', 'bin', 'consul');
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

class InstallError extends Error {}

function fail(message) {
  throw new InstallError(message);
}

/** Finds an executable on PATH or in /usr/bin (PATH may be trimmed by the caller). */
function which(name) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs a command, returning stdout; on failure throws with the command line and its output. */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    fail(`\`${cmd} ${args.join(' ')}\` exited with ${r.status ?? r.signal}:\n${out}`);
  }
  return r.stdout;
}

function firstLine(text) {
  return text.trim().split('\n')[0] ?? '';
}

function ms(start) {
  return `${Math.round(performance.now() - start)} ms`;
}

// ---------------------------------------------------------------------------------------------- etcd

function ensureEtcd() {
  const start = performance.now();
  let etcd = which('etcd');
  let etcdctl = which('etcdctl');
  let action = 'present';
  if (!etcd || !etcdctl) {
    if (!isRoot) {
      fail(
        'etcd/etcdctl not found and this is not root, so they cannot be installed here.\n' +
          'Run as root: apt-get update && apt-get install -y etcd-server etcd-client\n' +
          '(or point ROLLCALL_ETCD_BIN / ROLLCALL_ETCDCTL_BIN at existing binaries).',
      );
    }
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], { env });
    // policy-rc.d is not touched: the harness never relies on (or stops) a system etcd.
    run('apt-get', ['install', '-y', '--no-install-recommends', 'etcd-server', 'etcd-client'], { env });
    etcd = which('etcd');
    etcdctl = which('etcdctl');
    if (!etcd || !etcdctl)
      fail('apt-get installed etcd-server/etcd-client but etcd/etcdctl are still not found');
    action = 'installed';
  }
  const version = firstLine(run(etcd, ['--version']));
  const ctlVersion = firstLine(run(etcdctl, ['version']));
  console.log(`etcd    ${action}: ${version} (${etcd}); ${ctlVersion} (${etcdctl}) [${ms(start)}]`);
}

// ------------------------------------------------------------------------------- chromium and zsh

/** Installs Debian packages whose executables are missing (one apt-get run for all). */
function ensureDebianTools(tools) {
  const start = performance.now();
  const missing = tools.filter((t) => !which(t.bin));
  if (missing.length > 0) {
    const names = missing.map((t) => t.pkg);
    if (!isRoot)
      fail(`${names.join(', ')} not found and this is not root: run apt-get install -y ${names.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', ...names], { env });
    try {
      install();
    } catch {
      // The package lists may be missing or old on a fresh machine.
      run('apt-get', ['update'], { env });
      install();
    }
  }
  for (const t of tools) {
    const bin = which(t.bin);
    if (!bin) fail(`apt-get installed ${t.pkg} but ${t.bin} is still not found`);
    const version = firstLine(run(bin, t.versionArgs, { env: { ...process.env, HOME: tmpdir() } }));
    const action = missing.includes(t) ? 'installed' : 'present';
    console.log(`${t.bin.padEnd(7)} ${action}: ${version} (${bin}) [${ms(start)}]`);
  }
}

// -------------------------------------------------------------------------------------------- consul

/** Reads the machine's main Debian mirror URI (and its Signed-By keyring) from the apt config. */
function machineMirror() {
  const candidates = [];
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  const parts = '/etc/apt/sources.list.d';
  const files = [];
  if (existsSync(deb822)) files.push(deb822);
  if (existsSync(parts)) {
    for (const f of readdirSync(parts).sort()) {
      const p = join(parts, f);
      if (p !== deb822 && (f.endsWith('.sources') || f.endsWith('.list'))) files.push(p);
    }
  }
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');

  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      // deb822 stanzas separated by blank lines.
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = {};
        for (const line of stanza.split('\n')) {
          if (line.startsWith('#')) continue;
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (m) fields[m[1].toLowerCase()] = m[2].trim();
        }
        if (fields.enabled === 'no') continue;
        if (!(fields.types ?? '').split(/\s+/).includes('deb')) continue;
        const suites = (fields.suites ?? '').split(/\s+/);
        for (const uri of (fields.uris ?? '').split(/\s+/).filter(Boolean)) {
          candidates.push({ uri, suites, signedBy: fields['signed-by'], file });
        }
      }
    } else {
      for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (!line.startsWith('deb ')) continue;
        // deb [opts] uri suite components...
        const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(line);
        if (!m) continue;
        const signed = /signed-by=(\S+)/.exec(m[1] ?? '');
        candidates.push({ uri: m[2], suites: [m[3]], signedBy: signed?.[1], file });
      }
    }
  }
  // The main archive: a Debian suite that is not the security archive.
  const main = candidates.find(
    (c) =>
      /^(https?|file):/.test(c.uri) &&
      !c.suites.some((s) => s.includes('security')) &&
      c.suites.some((s) => /^(bookworm|trixie|bullseye|stable|testing|sid|unstable)/.test(s)),
  );
  if (!main) {
    fail(
      `could not find a Debian mirror URI in the machine's apt config (${files.join(', ') || 'no sources files'}); ` +
        'expected a `URIs:` line in /etc/apt/sources.list.d/debian.sources or a `deb` line in /etc/apt/sources.list',
    );
  }
  return main;
}

function consulVersion(bin) {
  const r = spawnSync(bin, ['version'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return firstLine(r.stdout);
}

function ensureConsul() {
  const start = performance.now();
  const existing = existsSync(consulBin) ? consulVersion(consulBin) : undefined;
  if (existing && /Consul v1\.8\./.test(existing)) {
    console.log(`consul  present: ${existing} (${consulBin}) [${ms(start)}]`);
    return;
  }
  const mirror = machineMirror();
  const keyring = mirror.signedBy ?? '/usr/share/keyrings/debian-archive-keyring.gpg';
  if (!existsSync(keyring)) fail(`keyring ${keyring} (from ${mirror.file}) does not exist`);

  const tmp = mkdtempSync(join(tmpdir(), 'rollcall-consul-apt-'));
  try {
    const sources = join(tmp, 'bullseye.sources');
    writeFileSync(
      sources,
      `Types: deb\nURIs: ${mirror.uri}\nSuites: bullseye\nComponents: main\nSigned-By: ${keyring}\n`,
    );
    for (const d of ['lists/partial', 'cache/archives/partial', 'download']) {
      mkdirSync(join(tmp, d), { recursive: true });
    }
    const aptOpts = [
      '-o',
      `Dir::Etc::sourcelist=${sources}`,
      '-o',
      'Dir::Etc::sourceparts=-',
      '-o',
      `Dir::State::Lists=${join(tmp, 'lists')}`,
      '-o',
      `Dir::Cache=${join(tmp, 'cache')}`,
    ];
    // Private dirs under a root-owned mkdtemp are not readable by apt's `_apt` sandbox user;
    // download as the invoking user instead of printing a sandbox warning.
    if (isRoot) aptOpts.push('-o', 'APT::Sandbox::User=root');
    run('apt-get', [...aptOpts, '-q', 'update']);
    const downloadDir = join(tmp, 'download');
    run('apt-get', [...aptOpts, '-q', 'download', 'consul'], { cwd: downloadDir });
    const deb = readdirSync(downloadDir).find((f) => /^consul_.*\.deb$/.test(f));
    if (!deb) fail(`apt-get download consul produced no consul_*.deb in ${downloadDir}`);

    // Unpack next to the destination, then swap it in, so a half-extracted tree is never used.
    mkdirSync(dirname(consulDest), { recursive: true });
    const staging = mkdtempSync(join(dirname(consulDest), '.consul-'));
    run('dpkg-deb', ['-x', join(downloadDir, deb), staging]);
    rmSync(consulDest, { recursive: true, force: true });
    renameSync(staging, consulDest);
    const version = consulVersion(consulBin);
    if (!version || !/Consul v1\.8\./.test(version)) {
      fail(
        `unpacked ${deb} but \`${consulBin} version\` gave ${JSON.stringify(version)}, expected Consul v1.8.x`,
      );
    }
    console.log(
      `consul  installed: ${version} (${consulBin}) from ${deb} via ${mirror.uri} bullseye [${ms(start)}]`,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------- main

try {
  const start = performance.now();
  ensureEtcd();
  ensureConsul();
  ensureDebianTools([
    { bin: 'chromium', pkg: 'chromium', versionArgs: ['--version'] },
    { bin: 'zsh', pkg: 'zsh', versionArgs: ['--version'] },
  ]);
  // Used only to give a clear message if openssl (needed for etcd TLS) is missing.
  const openssl = which('openssl');
  if (openssl) {
    console.log(
      `openssl present: ${firstLine(execFileSync(openssl, ['version'], { encoding: 'utf8' }))} (${openssl})`,
    );
  } else {
    console.log('openssl missing: startEtcd({ tls: true }) will not work (apt-get install -y openssl)');
  }
  console.log(`install-servers: done in ${ms(start)}`);
} catch (err) {
  const message = err instanceof InstallError ? err.message : (err?.stack ?? String(err));
  console.error(`install-servers: FAILED\n${message}`);
  process.exit(1);
}
