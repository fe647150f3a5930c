/**
 * typevisor from a program: boot the default guest (Debian's kernel, a busybox shell), run a
 * command on its console, print the answer, shut it down. Run: node --import tsx examples/sdk.ts
 * (in a project that depends on typevisor, import from 'typevisor' instead).
 */
import { MiB, Vm } from '../src/index.js';

await using vm = await Vm.create({ memoryBytes: 256 * MiB, cpus: 1, engine: 'bt' });
let output = '';
vm.console.on('data', (b: Buffer) => (output += b.toString()));
const until = async (re: RegExp) => {
  while (!re.test(output)) await new Promise((r) => setTimeout(r, 50));
  return re.exec(output)!;
};
vm.start();
await until(/typevisor:~# /);
vm.console.write('echo "answer: $(uname -sr)"\n');
console.log((await until(/answer: (Linux [^\r\n]*)/))[1]);
console.log('stopped:', await vm.stop());
