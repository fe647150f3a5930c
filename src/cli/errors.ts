/** How the CLI reports a problem: one line on stderr, a non-zero exit status. */

export function fail(e: unknown, status = 1): void {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`typevisor: ${msg}\n`);
  if (process.env['TYPEVISOR_DEBUG'] && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exitCode = status;
}
