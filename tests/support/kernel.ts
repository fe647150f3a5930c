/**
 * Where tests find the real Debian kernel: TYPEVISOR_KERNEL, else the default guest's cache
 * (`.ci/run` fetches it before the tests; `node --import tsx scripts/fetch-guest.ts` does too).
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { guestCacheDir } from '../../src/guest/debian.js';

export function findKernel(): string | undefined {
  const env = process.env['TYPEVISOR_KERNEL'];
  if (env && existsSync(env)) return env;
  const pkgs = path.join(guestCacheDir(), 'packages');
  if (!existsSync(pkgs)) return undefined;
  for (const dir of readdirSync(pkgs).filter((d) => d.startsWith('linux-image-')).sort().reverse()) {
    const boot = path.join(pkgs, dir, 'boot');
    const image = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
    if (image) return path.join(boot, image);
  }
  return undefined;
}

export const NO_KERNEL_REASON = 'no Debian kernel: set TYPEVISOR_KERNEL or run `node --import tsx scripts/fetch-guest.ts`';
