#!/usr/bin/env -S node --v8-pool-size=1
/**
 * The `typevisor` command as the package installs it (dist/bundle/main.js): runs the CLI's
 * CommonJS bundle beside it (dist/bundle/cli.cjs, made from ./main.ts by scripts/bundle.mjs)
 * through V8's code cache (./code-cache.ts), kept under the typevisor cache directory. The
 * shebang's --v8-pool-size=1 is main.ts's (one V8 worker thread: the guest has the other core).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { guestCacheDir } from '../guest/cache-dir.js';
import { runWithCodeCache } from './code-cache.js';

const bundle = fileURLToPath(new URL('./cli.cjs', import.meta.url));
runWithCodeCache(bundle, join(guestCacheDir(), 'code-cache', 'cli.bin'));
