/**
 * Fetches Debian packages for the default guest with the host's own apt: `apt-cache policy`
 * picks the version apt would install (so bookworm-security / backports pins are honoured),
 * `apt-get download` fetches the .deb, `dpkg-deb -x` unpacks it into the typevisor cache.
 *
 * Cache layout (`guestCacheDir()`):
 *   packages/<name>_<version>/   one extracted package, created by an atomic rename
 *   packages/.tmp-*              work dirs of a run in progress (or an interrupted one)
 *
 * A package already in the cache is used without a download and without output. Nothing here
 * hard-codes a kernel version: `linux-image-cloud-amd64` is a metapackage whose candidate
 * version depends on exactly one `linux-image-<abi>-cloud-amd64`, which is what we fetch.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { guestCacheDir } from './cache-dir.js';
import { BRING_YOUR_OWN, GuestError } from './errors.js';

export const KERNEL_METAPACKAGE = 'linux-image-cloud-amd64';
export const BUSYBOX_PACKAGE = 'busybox-static';

/** Work dirs older than this are leftovers of an interrupted run and are removed. */
const STALE_TMP_MS = 24 * 60 * 60 * 1000;

export interface FetchOptions {
  /** Cache root; default `guestCacheDir(env)`. */
  cacheDir?: string;
  /** Environment for the apt tools and for locating the cache; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Progress sink, one line without prefix or newline; default writes `typevisor: <line>` to stderr. */
  log?: (line: string) => void;
}

export interface PackageRef {
  name: string;
  version: string;
}

export interface ExtractedPackage extends PackageRef {
  /** Directory holding the package's file tree (as `dpkg-deb -x` lays it out). */
  root: string;
}

export { guestCacheDir };

export function defaultLog(line: string): void {
  process.stderr.write(`typevisor: ${line}\n`);
}

/** A version as a file-name component: apt's `%3a` for the epoch colon, `_` for anything odd. */
export function versionForPath(version: string): string {
  return version.replace(/:/g, '%3a').replace(/[^A-Za-z0-9.+~%-]/g, '_');
}

/** The cache directory of one extracted package. */
export function packageDir(cacheDir: string, ref: PackageRef): string {
  return join(cacheDir, 'packages', `${ref.name}_${versionForPath(ref.version)}`);
}

// ---- running the apt tools --------------------------------------------------------------------

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function findOnPath(tool: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, tool);
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function run(path: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, {
      cwd,
      env: { ...env, LC_ALL: 'C', LANG: 'C', DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new GuestError(`Cannot run ${path}: ${e.message}; ${BRING_YOUR_OWN}`, { cause: e })));
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** The last few lines of a tool's stderr, for an error message. */
function tail(text: string): string {
  const lines = text.trim().split('\n').filter((l) => l && !l.includes('unsandboxed as root'));
  return lines.slice(-3).join(' / ');
}

// ---- apt session ------------------------------------------------------------------------------

/**
 * One conversation with the host's apt. Remembers whether it already ran `apt-get update`, so a
 * run updates the package lists at most once.
 */
export class AptSession {
  readonly cacheDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly log: (line: string) => void;
  private tools: { aptGet: string; aptCache: string; dpkgDeb: string } | undefined;
  private updated = false;

  constructor(options: FetchOptions = {}) {
    this.env = options.env ?? process.env;
    this.cacheDir = options.cacheDir ?? guestCacheDir(this.env);
    this.log = options.log ?? defaultLog;
  }

  /** Locates apt-get, apt-cache and dpkg-deb, or throws a GuestError saying what to do. */
  private async need(): Promise<{ aptGet: string; aptCache: string; dpkgDeb: string }> {
    if (this.tools) return this.tools;
    const aptGet = await findOnPath('apt-get', this.env);
    const aptCache = await findOnPath('apt-cache', this.env);
    if (!aptGet || !aptCache) {
      throw new GuestError(
        'Cannot fetch the default guest: apt-get/apt-cache not found on PATH (the default guest is ' +
          `Debian's ${KERNEL_METAPACKAGE} and ${BUSYBOX_PACKAGE}, fetched with apt on a Debian host); ` +
          'run on Debian, run `node --import tsx scripts/fetch-guest.ts` where apt exists and copy its cache dir, ' +
          BRING_YOUR_OWN,
        { code: 'NO_APT' },
      );
    }
    const dpkgDeb = await findOnPath('dpkg-deb', this.env);
    if (!dpkgDeb) {
      throw new GuestError(`Cannot unpack Debian packages: dpkg-deb not found on PATH; install dpkg, ${BRING_YOUR_OWN}`);
    }
    this.tools = { aptGet, aptCache, dpkgDeb };
    return this.tools;
  }

  /** Runs `apt-get update` once per session. */
  private async update(why: string): Promise<void> {
    const { aptGet } = await this.need();
    this.updated = true;
    this.log(`${why}; running apt-get update (once) ...`);
    const r = await run(aptGet, ['update', '-q'], this.env);
    if (r.code !== 0) {
      throw new GuestError(
        `apt-get update failed (${tail(r.stderr) || `exit status ${r.code}`}); run \`sudo apt-get update\` yourself, ${BRING_YOUR_OWN}`,
      );
    }
  }

  /** The version `apt-cache policy` selects for `name`, or undefined if apt has none. */
  async candidate(name: string): Promise<string | undefined> {
    const { aptCache } = await this.need();
    const r = await run(aptCache, ['policy', name], this.env);
    if (r.code !== 0) {
      throw new GuestError(`apt-cache policy ${name} failed (${tail(r.stderr) || `exit status ${r.code}`}); ${BRING_YOUR_OWN}`);
    }
    const m = /^\s*Candidate:\s*(\S+)\s*$/m.exec(r.stdout);
    if (!m || m[1] === '(none)') return undefined;
    return m[1];
  }

  /** Like `candidate`, but runs `apt-get update` once if apt does not know the package yet. */
  async resolve(name: string): Promise<PackageRef> {
    let version = await this.candidate(name);
    if (version === undefined && !this.updated) {
      await this.update(`apt has no candidate for ${name} (package lists missing or stale?)`);
      version = await this.candidate(name);
    }
    if (version === undefined) {
      throw new GuestError(
        `apt knows no installable version of ${name}: this host's apt sources need Debian bookworm (or newer) main; ${BRING_YOUR_OWN}`,
      );
    }
    return { name, version };
  }

  /** The `Depends:` field of one version of a package (empty if it has none). */
  async depends(ref: PackageRef): Promise<string> {
    const { aptCache } = await this.need();
    const r = await run(aptCache, ['show', '--no-all-versions', `${ref.name}=${ref.version}`], this.env);
    if (r.code !== 0) {
      throw new GuestError(`apt-cache show ${ref.name}=${ref.version} failed (${tail(r.stderr)}); ${BRING_YOUR_OWN}`);
    }
    const m = /^Depends:\s*(.*(?:\n[ \t].*)*)$/m.exec(r.stdout);
    return m ? m[1]!.replace(/\n[ \t]+/g, ' ').trim() : '';
  }

  /**
   * The versioned kernel image behind the `linux-image-cloud-amd64` metapackage (for example
   * `linux-image-6.1.0-56-cloud-amd64`), at the version apt would install.
   */
  async resolveKernel(metapackage = KERNEL_METAPACKAGE): Promise<PackageRef> {
    const meta = await this.resolve(metapackage);
    const image = pickKernelImage(await this.depends(meta), metapackage);
    if (!image) {
      throw new GuestError(
        `Cannot find the kernel image package behind ${metapackage} ${meta.version} (its Depends names no linux-image-*); ${BRING_YOUR_OWN}`,
      );
    }
    return this.resolve(image);
  }

  /**
   * The extracted package, from the cache if present, else downloaded and extracted. Returns
   * without output when the cache already has it.
   */
  async fetch(ref: PackageRef): Promise<ExtractedPackage> {
    const dest = packageDir(this.cacheDir, ref);
    if (await isDir(dest)) return { ...ref, root: dest };
    const { aptGet, dpkgDeb } = await this.need();
    const tmpRoot = join(this.cacheDir, 'packages');
    await mkdir(tmpRoot, { recursive: true });
    await removeStaleTmp(tmpRoot);
    const work = await mkdtemp(join(tmpRoot, '.tmp-'));
    try {
      this.log(`downloading ${ref.name} ${ref.version} ...`);
      let r = await run(aptGet, ['download', '-q', `${ref.name}=${ref.version}`], this.env, work);
      if (r.code !== 0 && !this.updated) {
        // Typically a 404: the lists name a version the mirror has since replaced.
        await this.update(`download of ${ref.name} ${ref.version} failed`);
        const now = await this.resolve(ref.name);
        if (now.version !== ref.version) {
          throw new GuestError(
            `${ref.name} changed from ${ref.version} to ${now.version} after apt-get update; run again to fetch the new version`,
          );
        }
        r = await run(aptGet, ['download', '-q', `${ref.name}=${ref.version}`], this.env, work);
      }
      if (r.code !== 0) {
        throw new GuestError(`apt-get download ${ref.name}=${ref.version} failed (${tail(r.stderr) || `exit status ${r.code}`}); check network access to the Debian archive, ${BRING_YOUR_OWN}`);
      }
      const debs = (await readdir(work)).filter((f) => f.endsWith('.deb'));
      if (debs.length !== 1) {
        throw new GuestError(`apt-get download ${ref.name}=${ref.version} left ${debs.length} .deb files instead of one; ${BRING_YOUR_OWN}`);
      }
      this.log(`extracting ${debs[0]} ...`);
      const tree = join(work, 'root');
      const x = await run(dpkgDeb, ['-x', join(work, debs[0]!), tree], this.env);
      if (x.code !== 0) {
        throw new GuestError(`dpkg-deb -x ${debs[0]} failed (${tail(x.stderr) || `exit status ${x.code}`}); delete ${work} and retry, ${BRING_YOUR_OWN}`);
      }
      try {
        await rename(tree, dest);
      } catch (e) {
        // Another run finished the same package first: use theirs.
        if (!(await isDir(dest))) throw new GuestError(`Cannot move the extracted ${ref.name} into ${dest}: ${(e as Error).message}`, { cause: e });
      }
      return { ...ref, root: dest };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}

/**
 * The first `linux-image-*` package in a Depends field (`a (= v), b | c`), ignoring
 * the metapackage itself.
 */
export function pickKernelImage(depends: string, metapackage = KERNEL_METAPACKAGE): string | undefined {
  for (const clause of depends.split(',')) {
    for (const alt of clause.split('|')) {
      const name = alt.trim().split(/[\s(:]/)[0] ?? '';
      if (name.startsWith('linux-image-') && name !== metapackage) return name;
    }
  }
  return undefined;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function removeStaleTmp(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(dir)) {
    if (!name.startsWith('.tmp-')) continue;
    const p = join(dir, name);
    try {
      if (now - (await stat(p)).mtimeMs > STALE_TMP_MS) await rm(p, { recursive: true, force: true });
    } catch {
      // raced with its owner; leave it
    }
  }
}

/** The kernel image package (resolved from the metapackage), fetched and extracted. */
export async function fetchKernelPackage(options: FetchOptions = {}, session = new AptSession(options)): Promise<ExtractedPackage> {
  return session.fetch(await session.resolveKernel());
}

/** busybox-static, fetched and extracted. */
export async function fetchBusyboxPackage(options: FetchOptions = {}, session = new AptSession(options)): Promise<ExtractedPackage> {
  return session.fetch(await session.resolve(BUSYBOX_PACKAGE));
}
