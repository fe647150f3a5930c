/** Where typevisor keeps what it can build again (packages, initramfs images, the CLI's code cache). */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `$TYPEVISOR_CACHE`, else `$XDG_CACHE_HOME/typevisor`, else `~/.cache/typevisor`. */
export function guestCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['TYPEVISOR_CACHE']) return env['TYPEVISOR_CACHE'];
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'typevisor');
  return join(homedir(), '.cache', 'typevisor');
}
