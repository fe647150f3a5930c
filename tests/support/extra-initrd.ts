/**
 * The default guest's initramfs with extra files: Linux unpacks concatenated cpio archives in
 * order, so a second (uncompressed) archive after the default one adds files to the guest's /
 * without rebuilding anything. Tests use it to put programs they built into the guest.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { CpioWriter } from '../../src/guest/cpio.js';
import { prepareDefaultGuest } from '../../src/guest/default-guest.js';

export interface ExtraFile {
  /** Path inside the guest, without the leading slash. */
  path: string;
  bytes: Uint8Array;
  mode?: number;
}

/** Write the default initramfs plus `files` to `out`; returns `out`. */
export async function initrdWithFiles(out: string, files: readonly ExtraFile[]): Promise<string> {
  const guest = await prepareDefaultGuest();
  const w = new CpioWriter({ mtime: 0 });
  const dirs = new Set<string>();
  for (const f of files) {
    // the writer wants every parent listed; the kernel merges them with the first archive's
    const parts = f.path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) w.addDirectory(d, { mode: 0o755 });
      dirs.add(d);
    }
    w.addFile(f.path, f.bytes, { mode: f.mode ?? 0o755 });
  }
  const base = readFileSync(guest.initrdPath);
  const extra = w.finish();
  // each archive starts 4-byte aligned (the kernel skips zero padding between them)
  const pad = (4 - (base.length % 4)) % 4;
  const all = new Uint8Array(base.length + pad + extra.length);
  all.set(base, 0);
  all.set(extra, base.length + pad);
  writeFileSync(out, all);
  return out;
}
