/**
 * The default guest: Debian's cloud kernel (`linux-image-cloud-amd64`, resolved to its current
 * versioned image package) and an initramfs built around Debian's `busybox-static`. Everything is
 * fetched with the host's apt and cached (see `guestCacheDir`); a second call downloads nothing
 * and prints nothing.
 *
 * Without apt (non-Debian host) a cache filled earlier (or copied from a Debian machine) is still
 * used; only an empty cache makes this fail, with a GuestError saying to pass --kernel/--initrd.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AptSession, BUSYBOX_PACKAGE, defaultLog, type ExtractedPackage, type FetchOptions, guestCacheDir,
} from './debian.js';
import { BRING_YOUR_OWN, GuestError } from './errors.js';
import { prepareInitramfs } from './initramfs.js';

export interface DefaultGuestOptions extends FetchOptions {
  /** gzip the initramfs (default true). */
  compressInitrd?: boolean;
}

export interface DefaultGuest {
  /** The bzImage: `boot/vmlinuz-<kernelVersion>` of the extracted kernel package. */
  kernelPath: string;
  /** The cached initramfs (cpio newc, gzip'd unless `compressInitrd: false`). */
  initrdPath: string;
  /** What `uname -r` will say in the guest, e.g. `6.1.0-56-cloud-amd64`. */
  kernelVersion: string;
  /** The Debian package the kernel came from, e.g. linux-image-6.1.0-56-cloud-amd64 6.1.192-2. */
  kernelPackage: { name: string; version: string };
  /** Debian version of busybox-static inside the initramfs. */
  busyboxVersion: string;
  /** Root of the extracted kernel package (has lib/modules/<kernelVersion>/ too). */
  kernelPackageRoot: string;
}

/** Fetches (or finds in the cache) the default kernel and builds (or finds) its initramfs. */
export async function prepareDefaultGuest(options: DefaultGuestOptions = {}): Promise<DefaultGuest> {
  const env = options.env ?? process.env;
  const cacheDir = options.cacheDir ?? guestCacheDir(env);
  const session = new AptSession({ ...options, env, cacheDir, log: options.log ?? defaultLog });

  let kernel: ExtractedPackage;
  let busybox: ExtractedPackage;
  try {
    kernel = await session.fetch(await session.resolveKernel());
    busybox = await session.fetch(await session.resolve(BUSYBOX_PACKAGE));
  } catch (e) {
    const cached = e instanceof GuestError && e.code === 'NO_APT' ? await fromCacheOnly(cacheDir) : undefined;
    if (!cached) throw e;
    [kernel, busybox] = cached;
    (options.log ?? defaultLog)(`apt not found; using the cached ${kernel.name} ${kernel.version} and ${busybox.name} ${busybox.version}`);
  }

  const { kernelPath, kernelVersion } = await findKernelImage(kernel);
  const busyboxPath = join(busybox.root, 'bin', 'busybox');
  const initrdPath = await prepareInitramfs({
    cacheDir,
    busyboxPath,
    busyboxVersion: busybox.version,
    compress: options.compressInitrd !== false,
    kernelModulesDir: join(kernel.root, 'lib', 'modules', kernelVersion, 'kernel'),
  });
  return {
    kernelPath,
    initrdPath,
    kernelVersion,
    kernelPackage: { name: kernel.name, version: kernel.version },
    busyboxVersion: busybox.version,
    kernelPackageRoot: kernel.root,
  };
}

/** The single `boot/vmlinuz-*` of an extracted kernel package. */
export async function findKernelImage(pkg: ExtractedPackage): Promise<{ kernelPath: string; kernelVersion: string }> {
  const boot = join(pkg.root, 'boot');
  let names: string[];
  try {
    names = (await readdir(boot)).filter((n) => n.startsWith('vmlinuz-'));
  } catch {
    names = [];
  }
  if (names.length !== 1) {
    throw new GuestError(
      `Expected one boot/vmlinuz-* in ${pkg.name} ${pkg.version}, found ${names.length} (in ${boot}); delete that directory and retry, ${BRING_YOUR_OWN}`,
    );
  }
  return { kernelPath: join(boot, names[0]!), kernelVersion: names[0]!.slice('vmlinuz-'.length) };
}

/**
 * Without apt: the newest cached kernel image and busybox-static, if the cache has both.
 * Directory names are `<package>_<version>` (see packageDir).
 */
async function fromCacheOnly(cacheDir: string): Promise<[ExtractedPackage, ExtractedPackage] | undefined> {
  const dir = join(cacheDir, 'packages');
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return undefined;
  }
  const newest = async (match: (name: string) => boolean): Promise<ExtractedPackage | undefined> => {
    let best: { pkg: ExtractedPackage; mtime: number } | undefined;
    for (const e of entries) {
      if (e.startsWith('.')) continue;
      const sep = e.indexOf('_');
      if (sep < 0 || !match(e.slice(0, sep))) continue;
      const root = join(dir, e);
      const st = await stat(root);
      if (!st.isDirectory()) continue;
      const version = decodeURIComponent(e.slice(sep + 1));
      if (!best || st.mtimeMs > best.mtime) best = { pkg: { name: e.slice(0, sep), version, root }, mtime: st.mtimeMs };
    }
    return best?.pkg;
  };
  const kernel = await newest((n) => /^linux-image-.*-cloud-amd64$/.test(n) && n !== 'linux-image-cloud-amd64');
  const busybox = await newest((n) => n === BUSYBOX_PACKAGE);
  return kernel && busybox ? [kernel, busybox] : undefined;
}
