import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Debian packages through the machine's own apt configuration. No package host is written in
 * this package: mirrors are read from `/etc/apt` at run time.
 */

/** An installation step failed; its message says what to run or fix. */
export class InstallError extends Error {
  override readonly name = 'InstallError';
}

/** True when this process runs as root (it may `apt-get install`). */
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** What to do on a machine this installer cannot serve. */
const ELSEWHERE =
  'install-servers needs a Debian-family machine (apt-get, dpkg-deb); elsewhere install etcd 3.4+ and ' +
  'Consul 1.8-1.13 yourself and put them on PATH or set ROLLCALL_ETCD_BIN, ROLLCALL_ETCDCTL_BIN and ROLLCALL_CONSUL_BIN';

/** Runs a command and returns its stdout; throws an {@link InstallError} with the command and the end of its output. */
export function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new InstallError(`${cmd} not found: ${ELSEWHERE}`);
  if (result.error) throw new InstallError(`${cmd} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    const out = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new InstallError(
      `\`${cmd} ${args.join(' ')}\` exited with ${result.status ?? result.signal}:\n${out}`,
    );
  }
  return result.stdout;
}

const noninteractive = (): NodeJS.ProcessEnv => ({ ...process.env, DEBIAN_FRONTEND: 'noninteractive' });

/**
 * `apt-get install -y --no-install-recommends <packages>` on the machine (root only), running
 * `apt-get update` first when the package lists are missing or old.
 */
export function aptInstall(packages: string[]): void {
  if (!isRoot)
    throw new InstallError(
      `${packages.join(', ')} missing and this is not root: run apt-get install -y ${packages.join(' ')}`,
    );
  const install = () =>
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { env: noninteractive() });
  try {
    install();
  } catch {
    run('apt-get', ['update'], { env: noninteractive() });
    install();
  }
}

/** A Debian archive configured on this machine. */
export interface Mirror {
  readonly uri: string;
  /** The release suite it is configured with, e.g. `'bookworm'`. */
  readonly suite: string;
  /** Its `Signed-By` keyring, when the configuration names one. */
  readonly signedBy: string | undefined;
  /** The apt sources file it was read from. */
  readonly file: string;
}

interface SourceEntry {
  uri: string;
  suites: string[];
  signedBy: string | undefined;
  file: string;
}

function sourceFiles(): string[] {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  const parts = '/etc/apt/sources.list.d';
  const files: string[] = [];
  if (existsSync(deb822)) files.push(deb822);
  if (existsSync(parts)) {
    for (const f of readdirSync(parts).sort()) {
      const p = join(parts, f);
      if (p !== deb822 && (f.endsWith('.sources') || f.endsWith('.list'))) files.push(p);
    }
  }
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  return files;
}

/** deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Signed-By:`), separated by blank lines. */
function deb822Entries(text: string, file: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m?.[1] && m[2] !== undefined) fields[m[1].toLowerCase()] = m[2].trim();
    }
    if (fields.enabled === 'no') continue;
    if (!(fields.types ?? '').split(/\s+/).includes('deb')) continue;
    const suites = (fields.suites ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (fields.uris ?? '').split(/\s+/).filter(Boolean)) {
      entries.push({ uri, suites, signedBy: fields['signed-by'], file });
    }
  }
  return entries;
}

/** One-line entries: `deb [options] uri suite components...`. */
function listEntries(text: string, file: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  for (const raw of text.split('\n')) {
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(raw.trim());
    if (!m?.[2] || !m[3]) continue;
    const signed = /signed-by=(\S+)/.exec(m[1] ?? '');
    entries.push({ uri: m[2], suites: [m[3]], signedBy: signed?.[1], file });
  }
  return entries;
}

const RELEASE = /^(bookworm|trixie|forky|bullseye|stable|testing|sid|unstable)$/;

/** The machine's main Debian archive (not the security archive), read from its apt configuration. */
export function machineMirror(): Mirror {
  const files = sourceFiles();
  const entries = files.flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    return file.endsWith('.sources') ? deb822Entries(text, file) : listEntries(text, file);
  });
  for (const entry of entries) {
    if (!/^(https?|file):/.test(entry.uri)) continue;
    const suite = entry.suites.find((s) => RELEASE.test(s));
    if (suite) return { uri: entry.uri, suite, signedBy: entry.signedBy, file: entry.file };
  }
  throw new InstallError(
    `could not find a Debian mirror URI in the machine's apt config (${files.join(', ') || 'no sources files'}); ` +
      'expected a `URIs:` line in /etc/apt/sources.list.d/debian.sources or a `deb` line in /etc/apt/sources.list. ' +
      ELSEWHERE,
  );
}

/**
 * Downloads `packages` of `suite` from the machine's mirror and unpacks them (`dpkg-deb -x`, not
 * installed) into `dest`, replacing what was there. The machine's apt sources and state are not
 * changed: a temporary sources file reuses the configured mirror URI and keyring, and apt-get runs
 * with private lists and cache directories (so this works without root). The tree is unpacked
 * beside `dest` and swapped in, so a half-unpacked one is never used. Returns the .deb file names.
 */
export function unpackDebs(options: {
  packages: string[];
  suite: string;
  dest: string;
  mirror: Mirror;
}): string[] {
  const { packages, suite, dest, mirror } = options;
  const keyring = mirror.signedBy ?? '/usr/share/keyrings/debian-archive-keyring.gpg';
  if (!existsSync(keyring)) throw new InstallError(`keyring ${keyring} (from ${mirror.file}) does not exist`);
  const tmp = mkdtempSync(join(tmpdir(), 'rollcall-apt-'));
  try {
    const sources = join(tmp, `${suite}.sources`);
    writeFileSync(
      sources,
      `Types: deb\nURIs: ${mirror.uri}\nSuites: ${suite}\nComponents: main\nSigned-By: ${keyring}\n`,
    );
    for (const d of ['lists/partial', 'cache/archives/partial', 'download'])
      mkdirSync(join(tmp, d), { recursive: true });
    const aptOptions = [
      ['Dir::Etc::sourcelist', sources],
      ['Dir::Etc::sourceparts', '-'],
      ['Dir::State::Lists', join(tmp, 'lists')],
      ['Dir::Cache', join(tmp, 'cache')],
      // apt's `_apt` sandbox user cannot read a root-owned mkdtemp: download as the invoking user.
      ...(isRoot ? [['APT::Sandbox::User', 'root']] : []),
    ].flatMap(([k, v]) => ['-o', `${k}=${v}`]);
    run('apt-get', [...aptOptions, '-q', 'update']);
    const downloads = join(tmp, 'download');
    run('apt-get', [...aptOptions, '-q', 'download', ...packages], { cwd: downloads });
    const debs = readdirSync(downloads).filter((f) => f.endsWith('.deb'));
    if (debs.length !== packages.length)
      throw new InstallError(`apt-get download ${packages.join(' ')} gave ${debs.join(', ') || 'nothing'}`);

    mkdirSync(dirname(dest), { recursive: true });
    const staging = mkdtempSync(`${dest}.partial-`);
    try {
      for (const deb of debs) run('dpkg-deb', ['-x', join(downloads, deb), staging]);
      rmSync(dest, { recursive: true, force: true });
      renameSync(staging, dest);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      // Another installer swapped its own copy in between our rm and rename: theirs is as good.
      if (!(error instanceof InstallError) && existsSync(dest)) return debs;
      throw error;
    }
    return debs;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
