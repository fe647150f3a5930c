/** How the CLI reports a problem: one line on stderr, a non-zero exit status. */

/**
 * typevisor itself could not run the guest (a kernel, disk or device it cannot use, an internal
 * error). Even, so it never looks like a guest's debug-exit status ((v << 1) | 1: a guest writing
 * 0 there exits 1); the README's table lists every status.
 */
export const EXIT_FAILURE = 12;
/** A bad command line (as commander's own usage errors). */
export const EXIT_USAGE = 2;

export function fail(e: unknown, status = EXIT_FAILURE): void {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`typevisor: ${msg}\n`);
  if (process.env['TYPEVISOR_DEBUG'] && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exitCode = status;
}
