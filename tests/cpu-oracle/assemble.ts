/**
 * nasm front end for the oracle tests: assembles many small snippets in one nasm run and splits
 * the flat binary back into one byte string per snippet (a table of start/end offsets is
 * emitted at the front of the image). Results are cached by source text.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class AssembleError extends Error {
  override name = 'AssembleError';
}

const NASM_CANDIDATES = ['/usr/bin/nasm', '/usr/local/bin/nasm'];

/** Path of nasm, or undefined when it is not installed (the suites skip then). */
export const nasmPath: string | undefined = NASM_CANDIDATES.find((p) => existsSync(p));

/** Reason string for `describe.skipIf`. */
export const nasmMissing = nasmPath === undefined;

const cache = new Map<string, Uint8Array>();

/**
 * Assemble each snippet (nasm syntax, no `bits` line needed) for `bits` and return the bytes of
 * each. Snippets must not define labels that collide across snippets: use nasm local labels
 * (`.loop`) — every snippet is given its own non-local label scope.
 */
export function assembleMany(snippets: readonly string[], bits: 16 | 32 | 64 = 64): Uint8Array[] {
  if (nasmPath === undefined) throw new AssembleError('Cannot assemble: nasm is not installed (apt-get install nasm)');
  const key = (s: string): string => `${bits}\u0000${s}`;
  const todo = [...new Set(snippets.filter((s) => !cache.has(key(s))))];
  if (todo.length > 0) {
    const lines: string[] = [`bits ${bits}`, 'org 0', `dd ${todo.length}`];
    todo.forEach((_, i) => lines.push(`dd __s${i} - $$, __e${i} - $$`));
    todo.forEach((s, i) => lines.push(`__s${i}:`, s, `__e${i}:`));
    const dir = mkdtempSync(join(tmpdir(), 'tv-oracle-'));
    try {
      const src = join(dir, 'a.asm');
      const out = join(dir, 'a.bin');
      writeFileSync(src, lines.join('\n') + '\n');
      try {
        execFileSync(nasmPath, ['-f', 'bin', '-o', out, src], { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? '';
        // quote the offending source lines next to nasm's messages
        const quoted = stderr
          .split('\n')
          .filter((l) => l.includes('error'))
          .slice(0, 5)
          .map((l) => {
            const m = /:(\d+): (.*)$/.exec(l);
            return m ? `${m[2]}: \`${lines[Number(m[1]) - 1] ?? '?'}\`` : l;
          });
        throw new AssembleError(`nasm rejected a test snippet: ${quoted.join('; ')}`);
      }
      const bin = new Uint8Array(readFileSync(out));
      const dv = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
      const n = dv.getUint32(0, true);
      if (n !== todo.length) throw new AssembleError(`nasm output table has ${n} entries, expected ${todo.length}`);
      for (let i = 0; i < n; i++) {
        const s = dv.getUint32(4 + 8 * i, true);
        const e = dv.getUint32(8 + 8 * i, true);
        cache.set(key(todo[i]!), bin.slice(s, e));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return snippets.map((s) => cache.get(key(s))!);
}

export function assemble(snippet: string, bits: 16 | 32 | 64 = 64): Uint8Array {
  return assembleMany([snippet], bits)[0]!;
}
