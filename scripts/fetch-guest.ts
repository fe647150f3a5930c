/**
 * Fetches Debian's cloud kernel and busybox-static with apt and builds the default initramfs,
 * into the typevisor cache ($TYPEVISOR_CACHE, else $XDG_CACHE_HOME/typevisor, else
 * ~/.cache/typevisor). CI runs it before the end-to-end tests:
 *
 *   node --import tsx scripts/fetch-guest.ts
 *
 * Prints `kernel=`, `initrd=`, `kernelVersion=` lines on stdout (progress goes to stderr).
 */
import { prepareDefaultGuest } from '../src/guest/default-guest.js';

try {
  const g = await prepareDefaultGuest();
  process.stdout.write(`kernel=${g.kernelPath}\ninitrd=${g.initrdPath}\nkernelVersion=${g.kernelVersion}\n`);
} catch (e) {
  process.stderr.write(`typevisor: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
