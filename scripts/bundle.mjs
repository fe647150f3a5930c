// The CLI as a few files: `npm run build` runs this after tsc. Node resolves, reads and compiles
// ~160 ES modules one by one at every start (~60-80 ms of a bt start-up), and Node 20 keeps no
// compile cache for ES modules. So the CLI is one CommonJS file, dist/bundle/cli.cjs (its
// import()s become lazy module inits, so a run still evaluates only what it uses), run by
// dist/bundle/main.js (src/cli/launch.ts) through V8's code cache (src/cli/code-cache.ts).
// The kvm vCPU thread and the machine it builds are ES module entries beside it, sharing chunks,
// so the sibling URLs of kvm/prestart.ts and vmm/kvm-prestart.ts (import.meta.url, which is
// cli.cjs's own file URL in the CJS bundle) resolve there as they do in dist/. The library
// (dist/index.js) stays unbundled, for `import` by programs and for its type declarations.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

rmSync('dist/bundle', { recursive: true, force: true }); // no chunks of an earlier build left

const common = {
  outdir: 'dist/bundle',
  bundle: true,
  platform: 'node',
  target: 'node20',
  // koffi finds its native library next to its own files: leave it in node_modules
  external: ['koffi'],
  legalComments: 'none',
  logLevel: 'warning',
};

// the workers: ES modules with shared chunks
await build({
  ...common,
  entryPoints: { 'vcpu-worker': 'dist/kvm/vcpu-worker.js', 'kvm-machine': 'dist/vmm/kvm-machine.js', 'ap-worker': 'dist/engine/bt/ap-worker.js' },
  splitting: true,
  format: 'esm',
  chunkNames: 'chunk-[hash]',
  // bundled CommonJS dependencies call require() for node's own modules
  banner: { js: "import { createRequire as __typevisorRequire } from 'node:module'; const require = __typevisorRequire(import.meta.url);" },
});

// the CLI: one CommonJS file; code-cache.ts passes __bundleUrl (its file URL) to it
await build({
  ...common,
  entryPoints: { cli: 'dist/cli/main.js' },
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  define: { 'import.meta.url': '__bundleUrl' },
});

// the command: a small ES module that runs cli.cjs
await build({
  ...common,
  entryPoints: { main: 'dist/cli/launch.js' },
  format: 'esm',
});
