/**
 * `typevisor image debian`: builds a bootable Debian root file system image without root on the
 * host, caches it, and copies it to where the user asked.
 *
 *   1. mmdebstrap (Debian's `mmdebstrap`) installs minbase plus EXTRA_PACKAGES into a tarball:
 *      `--mode=root` when run as root, else `--mode=unshare` (needs Debian's `uidmap` and
 *      subordinate uid/gid ranges for the user in /etc/subuid and /etc/subgid).
 *   2. One `fakeroot` session unpacks it, adds typevisor's files (config.ts) and runs
 *      `mkfs.ext4 -d` (e2fsprogs), so the image's files belong to root.
 *   3. The image goes to `<cache>/images/<name>` by an atomic rename, then is copied
 *      (`cp --reflink=auto --sparse=always`) to `--out`, which is never overwritten.
 *
 * Cache layout: `images/debian-bookworm-<size>M-<key>.img`, the key hashing everything the
 * recipe depends on (config.ts: imageCacheKey); `images/.tmp-*` are builds in progress (or
 * interrupted ones, removed after a day). `--rebuild` makes a fresh image for the same key,
 * e.g. to pick up today's package versions. A new build removes the images of the same size
 * that other keys made (superseded recipes).
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, link, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { defaultLog, guestCacheDir } from '../debian.js';
import {
  type AptSource, DEFAULT_IMAGE_SIZE, EXTRA_PACKAGES, fakerootScript, ImageError, imageCacheKey, imageFileName, imageFiles,
  mirrorLines, parseAptSources, SUITE, VARIANT,
} from './config.js';

export interface BuildImageOptions {
  /** Image size in bytes (sparse); default 2 GiB. */
  sizeBytes?: number;
  /** Where the user gets the image; default `./debian.img`. Never overwritten. `null`: only the cache. */
  out?: string | null;
  /** Debian archive URL instead of the host's mirror. */
  mirror?: string;
  /** Build again even when the cache has this image. */
  rebuild?: boolean;
  cacheDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Progress, one line without prefix; default `typevisor: <line>` on stderr. */
  log?: (line: string) => void;
}

export interface BuiltImage {
  /** The image in the cache. */
  cached: string;
  /** The copy at `out`, if one was asked for. */
  out: string | undefined;
  /** True when the cache already had the image. */
  reused: boolean;
}

const STALE_TMP_MS = 24 * 60 * 60 * 1000;
const SOURCES_DIR = '/etc/apt/sources.list.d';
const SOURCES_LIST = '/etc/apt/sources.list';

/** The host's apt `deb` entries (sources.list and sources.list.d), in apt's order. */
export async function hostAptSources(root = '/'): Promise<AptSource[]> {
  const out: AptSource[] = [];
  const read = async (file: string, deb822: boolean) => {
    try {
      out.push(...parseAptSources(await readFile(join(root, file), 'utf8'), deb822));
    } catch {
      // absent or unreadable: apt ignores it too
    }
  };
  await read(SOURCES_LIST, false);
  let names: string[] = [];
  try {
    names = (await readdir(join(root, SOURCES_DIR))).sort();
  } catch {
    // no sources.list.d
  }
  for (const n of names) {
    if (n.endsWith('.list')) await read(join(SOURCES_DIR, n), false);
    else if (n.endsWith('.sources')) await read(join(SOURCES_DIR, n), true);
  }
  return out;
}

async function findTool(tool: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  // sbin too: mkfs.ext4 is there, and an ordinary user's PATH often lacks it
  const dirs = [...(env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
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

async function requireTool(tool: string, pkg: string, env: NodeJS.ProcessEnv): Promise<string> {
  const p = await findTool(tool, env);
  if (!p) throw new ImageError(`${tool} not found: install Debian's ${pkg} package (sudo apt-get install ${pkg})`);
  return p;
}

/** Whether /etc/subuid-style `text` gives `user` (name or uid) a range. */
export function hasSubordinateRange(text: string, user: string, uid: number): boolean {
  return text.split('\n').some((l) => {
    const [who, , count] = l.trim().split(':');
    return (who === user || who === String(uid)) && Number(count) > 0;
  });
}

/**
 * How mmdebstrap may run for this user: `root` as root; `unshare` (user namespaces) otherwise,
 * which needs newuidmap/newgidmap and subordinate id ranges. Says what to install or add.
 */
export async function chooseMode(env: NodeJS.ProcessEnv, uid = process.getuid?.() ?? 0, user = userInfo().username): Promise<'root' | 'unshare'> {
  if (uid === 0) return 'root';
  await requireTool('newuidmap', 'uidmap', env);
  await requireTool('newgidmap', 'uidmap', env);
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch {
      // missing: no ranges
    }
    if (!hasSubordinateRange(text, user, uid)) {
      throw new ImageError(`${file} has no range for ${user}, which mmdebstrap --mode=unshare needs: add one with sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user}`);
    }
  }
  return 'unshare';
}

interface RunResult {
  code: number;
  stderrTail: string;
}

/** Runs a tool; stderr lines go to `onLine` and the last few are kept for an error message. */
function runTool(path: string, args: string[], env: NodeJS.ProcessEnv, onLine: (line: string) => boolean): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(path, args, { env: { ...env, LC_ALL: 'C', LANG: 'C' }, stdio: ['ignore', 'ignore', 'pipe'] });
    const tail: string[] = [];
    let partial = '';
    const take = (line: string) => {
      if (!line.trim() || onLine(line)) return;
      tail.push(line.trim());
      if (tail.length > 3) tail.shift();
    };
    child.stderr.on('data', (b: Buffer) => {
      const parts = (partial + b.toString('utf8')).split('\n');
      partial = parts.pop()!;
      parts.forEach(take);
    });
    child.on('error', (e) => reject(new ImageError(`Cannot run ${path}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) => {
      take(partial);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stderrTail: tail.join(' / ') });
    });
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function removeStale(dir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names.filter((x) => x.startsWith('.tmp-'))) {
    try {
      if (Date.now() - (await stat(join(dir, n))).mtimeMs > STALE_TMP_MS) await rm(join(dir, n), { recursive: true, force: true });
    } catch {
      // another process's, or gone already
    }
  }
}

/**
 * Removes the cached images of the same size that an older recipe, package set or mirror made:
 * each holds a few hundred MB, and a changed key means nobody gets them from the cache again.
 */
async function removeSuperseded(cached: string): Promise<void> {
  const dir = dirname(cached);
  const name = basename(cached);
  const prefix = name.slice(0, name.lastIndexOf('-') + 1);
  for (const n of await readdir(dir)) {
    if (n !== name && n.startsWith(prefix) && n.endsWith('.img')) await rm(join(dir, n), { force: true });
  }
}

/** Refuses an --out that exists or whose directory does not, before any long work. */
export async function checkOut(out: string): Promise<void> {
  if (await exists(out)) throw new ImageError(`${out} already exists: remove it or give another --out`);
  const dir = dirname(out);
  let s;
  try {
    s = await stat(dir);
  } catch {
    throw new ImageError(`cannot write ${out}: directory ${dir} does not exist`);
  }
  if (!s.isDirectory()) throw new ImageError(`cannot write ${out}: ${dir} is not a directory`);
}

/** Copies the cached image to `out` (sparse, reflinked where the file system can) without overwriting. */
async function copyOut(cached: string, out: string, env: NodeJS.ProcessEnv): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}`;
  const cp = await requireTool('cp', 'coreutils', env);
  const r = await runTool(cp, ['--reflink=auto', '--sparse=always', cached, tmp], env, () => false);
  if (r.code !== 0) {
    await rm(tmp, { force: true });
    throw new ImageError(`cannot copy the image to ${out}: ${r.stderrTail}`);
  }
  try {
    await link(tmp, out); // fails if out appeared meanwhile: never overwrite
  } catch (e) {
    throw new ImageError((e as NodeJS.ErrnoException).code === 'EEXIST'
      ? `${out} already exists: remove it or give another --out`
      : `cannot write ${out}: ${(e as Error).message}`, { cause: e });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** Where the image for these options is (or will be) cached, and the archive lines it comes from. */
export async function imagePlan(options: Pick<BuildImageOptions, 'sizeBytes' | 'mirror' | 'cacheDir' | 'env'> = {}): Promise<{ mirrors: string[]; dir: string; cached: string }> {
  const sizeBytes = options.sizeBytes ?? DEFAULT_IMAGE_SIZE;
  const mirrors = mirrorLines(await hostAptSources(), options.mirror);
  const dir = join(options.cacheDir ?? guestCacheDir(options.env ?? process.env), 'images');
  return { mirrors, dir, cached: join(dir, imageFileName(imageCacheKey({ mirrors, sizeBytes }), sizeBytes)) };
}

export async function buildDebianImage(options: BuildImageOptions = {}): Promise<BuiltImage> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((l: string) => defaultLog(`image: ${l}`));
  const sizeBytes = options.sizeBytes ?? DEFAULT_IMAGE_SIZE;
  const out = options.out === null ? undefined : resolve(options.out ?? 'debian.img');
  if (out) await checkOut(out);

  const { mirrors, dir, cached } = await imagePlan(options);

  let reused = false;
  if (!options.rebuild && await exists(cached)) {
    reused = true;
    log(`using the image built ${(await stat(cached)).mtime.toISOString().slice(0, 16).replace('T', ' ')} UTC from the cache (--rebuild makes a fresh one): ${cached}`);
  } else {
    await buildInto(cached, { mirrors, sizeBytes, env, log, dir });
  }
  if (out) {
    await copyOut(cached, out, env);
    log(`wrote ${out}`);
  }
  return { cached, out, reused };
}

async function buildInto(cached: string, b: { mirrors: string[]; sizeBytes: number; env: NodeJS.ProcessEnv; log: (l: string) => void; dir: string }): Promise<void> {
  const { env, log } = b;
  const mmdebstrap = await requireTool('mmdebstrap', 'mmdebstrap', env);
  const fakeroot = await requireTool('fakeroot', 'fakeroot', env);
  const mkfs = await requireTool('mkfs.ext4', 'e2fsprogs', env);
  const mode = await chooseMode(env);

  await mkdir(b.dir, { recursive: true });
  await removeStale(b.dir);
  const work = await mkdtemp(join(b.dir, '.tmp-'));
  const started = Date.now();
  const secs = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  try {
    const tarball = join(work, 'rootfs.tar');
    log(`installing Debian ${SUITE} (${VARIANT} + ${EXTRA_PACKAGES.join(', ')}) with mmdebstrap --mode=${mode} from ${b.mirrors[0]!.split(' ')[1]}`);
    const m = await runTool(mmdebstrap, [
      `--mode=${mode}`, `--variant=${VARIANT}`, `--include=${EXTRA_PACKAGES.join(',')}`, SUITE, tarball, ...b.mirrors,
    ], env, (line) => {
      const i = /^I: (.*?)\.*$/.exec(line);
      // mmdebstrap's own phases; its other notes are left out
      if (i && /^(downloading|extracting|installing|cleaning|creating)/.test(i[1]!)) log(`mmdebstrap: ${i[1]} (${secs()})`);
      return i !== null;
    });
    if (m.code !== 0) throw new ImageError(`mmdebstrap failed (status ${m.code}): ${m.stderrTail}`);

    const files = join(work, 'files');
    for (const f of imageFiles()) {
      await mkdir(dirname(join(files, f.path)), { recursive: true });
      await writeFile(join(files, f.path), f.text);
    }
    const image = join(work, 'image.img');
    const script = join(work, 'build.sh');
    await writeFile(script, fakerootScript({ tarball, files, root: join(work, 'root'), image, mkfs, sizeBytes: b.sizeBytes }));
    const f = await runTool(fakeroot, ['--', 'sh', script], env, (line) => {
      const p = /^phase: (.*)$/.exec(line);
      if (p) log(`${p[1]} (${secs()})`);
      return p !== null;
    });
    if (f.code !== 0) {
      const tooSmall = /could not allocate|no space|not enough/i.test(f.stderrTail);
      throw new ImageError(tooSmall
        ? `the image is too small for the root tree: give a larger --size (mkfs.ext4: ${f.stderrTail})`
        : `building the file system under fakeroot failed (status ${f.code}): ${f.stderrTail}`);
    }
    await rename(image, cached);
    log(`built ${cached} in ${secs()}`);
    await removeSuperseded(cached);
  } finally {
    // The tree's directories may lack the owner's write bit (fakeroot kept the modes).
    await runTool('chmod', ['-R', 'u+rwX', work], env, () => true).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}
