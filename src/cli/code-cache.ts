/**
 * Runs a CommonJS bundle with V8's code cache. Node 20 compiles every ES module from source at
 * each start (it has no compile cache for them); a script compiled through `vm.Script` can take
 * `cachedData`, V8's own serialized bytecode, and skip parsing and compiling what the cache holds.
 * The CLI is such a bundle (dist/bundle/cli.cjs, scripts/bundle.mjs), run by dist/bundle/main.js.
 *
 * The cache file starts with one header line: a magic, a key that changes when the bundle or
 * node does (the bundle's size, mtime and inode; node's version and arch), and the SHA-1 of the
 * V8 data after it — V8 itself checks only the source's length and its own version and flags, and
 * runs a corrupt cache. A missing, stale, corrupt or unwritable cache only costs the compile: the
 * bundle runs from source and the cache is written again (atomically: a temporary file renamed).
 *
 * The cache is made right after the bundle's first synchronous run: it then holds the functions
 * compiled so far, and V8's flags are still the ones the next start has (the bt engine sets two
 * flags later; a cache made after that is refused as from other flags).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';

const MAGIC = 'typevisor-code-cache-1';

/** What the cache was made from: the bundle file (as stat sees it) and this node. */
export function cacheKey(bundlePath: string): string {
  const st = statSync(bundlePath, { bigint: true });
  return `${process.version}-${process.arch}-${st.size}-${st.mtimeNs}-${st.ino}`;
}

/** The V8 data in `cachePath` if it was made for `key` and is intact, else undefined. */
export function readCache(cachePath: string, key: string): Buffer | undefined {
  let file: Buffer;
  try {
    file = readFileSync(cachePath);
  } catch {
    return undefined;
  }
  const eol = file.indexOf(10);
  if (eol < 0) return undefined;
  const [magic, fileKey, sum] = file.subarray(0, eol).toString('latin1').split(' ');
  if (magic !== MAGIC || fileKey !== key) return undefined;
  const data = file.subarray(eol + 1);
  return createHash('sha1').update(data).digest('hex') === sum ? data : undefined;
}

/** Write `data` for `key` to `cachePath`; failures are ignored (the next start compiles again). */
export function writeCache(cachePath: string, key: string, data: Buffer): void {
  const tmp = `${cachePath}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(cachePath), { recursive: true });
    const header = `${MAGIC} ${key} ${createHash('sha1').update(data).digest('hex')}\n`;
    writeFileSync(tmp, Buffer.concat([Buffer.from(header, 'latin1'), data]));
    renameSync(tmp, cachePath);
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // no directory to have left it in
    }
  }
}

/**
 * Run the CommonJS file `bundlePath` (a bundle whose `import.meta.url` was defined as
 * `__bundleUrl`) in this context, with its code cache at `cachePath`. Says whether V8 took the
 * cache or compiled the source (and then wrote the cache).
 */
export function runWithCodeCache(bundlePath: string, cachePath: string): 'cached' | 'compiled' {
  let key: string | undefined;
  let cachedData: Buffer | undefined;
  try {
    key = cacheKey(bundlePath);
    cachedData = readCache(cachePath, key);
  } catch {
    key = undefined; // no key (the bundle's stat failed): the read below says why
  }
  const source = readFileSync(bundlePath, 'utf8').replace(/^#!.*/, ''); // a shebang is no script syntax
  const wrapper = `(function (exports, require, module, __filename, __dirname, __bundleUrl) {${source}\n})`;
  const script = new vm.Script(wrapper, {
    filename: bundlePath,
    cachedData,
    // esbuild inlines the bundle's own import()s; any other would go to node's loader (node >= 20.12)
    ...(vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER ? { importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER } : {}),
  });
  const module = { exports: {} };
  (script.runInThisContext() as (...args: unknown[]) => void)(
    module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath), pathToFileURL(bundlePath).href,
  );
  if (cachedData !== undefined && !script.cachedDataRejected) return 'cached';
  if (key !== undefined) writeCache(cachePath, key, script.createCachedData());
  return 'compiled';
}
