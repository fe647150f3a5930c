// The CLI as a few files: `npm run build` runs this after tsc. Node resolves, reads and compiles
// ~160 ES modules one by one at every start (~60-80 ms of a bt start-up); bundled, the CLI
// loads one entry and the chunks it shares with the two worker entries (the kvm vCPU thread
// and the machine it builds), all in dist/bundle, so the workers' sibling URLs
// (kvm/prestart.ts, vmm/kvm-prestart.ts) resolve there as they do in dist/. The library
// (dist/index.js) stays unbundled, for `import` by programs and for its type declarations.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

rmSync('dist/bundle', { recursive: true, force: true }); // no chunks of an earlier build left

await build({
  entryPoints: { main: 'dist/cli/main.js', 'vcpu-worker': 'dist/kvm/vcpu-worker.js', 'kvm-machine': 'dist/vmm/kvm-machine.js' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunk-[hash]',
  // koffi finds its native library next to its own files: leave it in node_modules
  external: ['koffi'],
  // bundled CommonJS dependencies (commander) call require() for node's own modules
  banner: { js: "import { createRequire as __typevisorRequire } from 'node:module'; const require = __typevisorRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
});
