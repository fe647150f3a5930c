import { mkdtempSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { cacheKey, readCache, runWithCodeCache } from './code-cache.js';

const g = globalThis as { codeCacheTest?: unknown };

/** A CommonJS "bundle" that reports what it ran and with which arguments. */
const bundle = (tag: string): string =>
  `#!/usr/bin/env node\nglobalThis.codeCacheTest = { tag: ${JSON.stringify(tag)}, url: __bundleUrl, fs: typeof require('node:fs').statSync, f: (x) => x * 2 };\n`;

describe('runWithCodeCache', () => {
  let dir: string;
  let file: string;
  let cache: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'typevisor-code-cache-'));
    file = join(dir, 'cli.cjs');
    cache = join(dir, 'cache', 'code-cache', 'cli.bin');
    g.codeCacheTest = undefined;
  });

  it('compiles and writes the cache once, then runs from it', () => {
    writeFileSync(file, bundle('a'));
    expect(runWithCodeCache(file, cache)).toBe('compiled');
    expect(g.codeCacheTest).toMatchObject({ tag: 'a', url: pathToFileURL(file).href, fs: 'function' });
    expect(readCache(cache, cacheKey(file))).toBeDefined();
    g.codeCacheTest = undefined;
    expect(runWithCodeCache(file, cache)).toBe('cached');
    expect(g.codeCacheTest).toMatchObject({ tag: 'a' });
  });

  it('runs a changed bundle of the same length from its source, not the old cache', () => {
    writeFileSync(file, bundle('a'));
    runWithCodeCache(file, cache);
    writeFileSync(file, bundle('b'));
    const t = new Date(statSync(file).mtimeMs + 5000);
    utimesSync(file, t, t); // as a rebuild does: the key holds the mtime (ns), the size is the same
    expect(runWithCodeCache(file, cache)).toBe('compiled');
    expect(g.codeCacheTest).toMatchObject({ tag: 'b' });
    expect(runWithCodeCache(file, cache)).toBe('cached');
  });

  it('ignores a corrupt or truncated cache and writes a good one', () => {
    writeFileSync(file, bundle('a'));
    runWithCodeCache(file, cache);
    const good = readFileSync(cache);
    const bad = Buffer.from(good);
    bad[bad.length - 20] ^= 0xff;
    writeFileSync(cache, bad);
    expect(runWithCodeCache(file, cache)).toBe('compiled');
    expect(g.codeCacheTest).toMatchObject({ tag: 'a' });
    expect(readFileSync(cache)).toEqual(good);
    writeFileSync(cache, good.subarray(0, 10));
    expect(runWithCodeCache(file, cache)).toBe('compiled');
    writeFileSync(cache, 'garbage');
    expect(runWithCodeCache(file, cache)).toBe('compiled');
  });

  it('runs when the cache cannot be written', () => {
    writeFileSync(file, bundle('a'));
    const ro = join(dir, 'ro');
    writeFileSync(ro, ''); // a file where the cache directory should be
    expect(runWithCodeCache(file, join(ro, 'code-cache', 'cli.bin'))).toBe('compiled');
    expect(g.codeCacheTest).toMatchObject({ tag: 'a' });
  });
});
