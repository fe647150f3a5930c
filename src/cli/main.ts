#!/usr/bin/env -S node --v8-pool-size=1
/**
 * The `typevisor` command line. Flags become a VmConfig (src/vmm/config.ts) — the same shape
 * the API and SDK will produce — and the VM runner does the rest.
 *
 * One V8 worker thread (the shebang's --v8-pool-size=1): the guest runs on the main thread, and
 * Node's default of four workers (wasm tier-up, GC) competed with it for a 2-core machine's
 * cores (boot to poweroff ~8.1 s with the default, ~7.2 s with one worker).
 */
import { resolve as resolvePath } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import {
  ConfigError, DEFAULT_MEMORY, fmtBytes, MAX_CPUS, parseCpus, parseDiskSpec, parseSize, validateDisks, validateCpuModel, validateEngine, type VmConfig,
  validateConsole, parseNet, parsePublish, resolveNet,
} from '../vmm/config.js';
import { DEFAULT_IMAGE_SIZE, ImageError, parseImageSize } from '../guest/image/config.js';
import { EXIT_FAILURE, EXIT_USAGE, fail } from './errors.js';

// An error nothing caught is typevisor's own failure: its status, not node's 1 (which a guest's
// debug-exit write of 0 also gives).
process.on('uncaughtException', (e) => {
  process.stderr.write(`typevisor: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(EXIT_FAILURE);
});

const program = new Command();
program
  .name('typevisor')
  .description('A Type 2 hypervisor in TypeScript: boots unmodified Linux in a Node.js process')
  .version('0.1.0')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .addHelpText('after', `
Exit statuses: 0 the guest powered off; 2 a bad command line; 4 the guest kernel panicked;
6 it triple-faulted; 8 it halted for good; 10 it reset the machine with --no-reboot;
12 typevisor could not run the guest (a file or device it cannot use, an internal error);
(v << 1) | 1 the guest wrote v to port 0xf4 (always odd); 128 + n signal n.`);

program
  .command('run')
  .description('boot a guest (by default Debian\'s cloud kernel with a busybox shell) on the serial console')
  .option('-k, --kernel <path>', 'kernel image: bzImage, ELF vmlinux or multiboot ELF')
  .option('-i, --initrd <path>', 'initial ramdisk (initramfs), or the multiboot module')
  .option('--cmdline <string>', 'kernel command line')
  .option('-m, --memory <size>', 'guest RAM, e.g. 512M or 2G (a bare number means MiB)', fmtBytes(DEFAULT_MEMORY))
  .option('-c, --cpus <n>', `number of vCPUs, 1 to ${MAX_CPUS}`, '1')
  .addOption(new Option('--engine <engine>', 'execution engine: auto, bt or kvm').default('auto'))
  .option('--cpu-model <model>', 'the CPU the guest sees: host (the kvm engine\'s default) or typevisor (typevisor\'s own model, the bt engine\'s; a kvm VM with it takes snapshots the bt engine restores)')
  .option('--vmlinux', 'boot the uncompressed vmlinux extracted from the bzImage (skips in-guest decompression)')
  .option('--no-reboot', 'end typevisor (status 10) when the guest resets the machine, instead of restarting it')
  .option('--net [spec]', 'network card: user (typevisor\'s own NAT network 10.0.2.0/24, the kind a bare --net gives), stream=UNIX_SOCKET (frames in QEMU stream framing, e.g. to passt), tap=NAME (an existing tap device: sudo ip tuntap add NAME mode tap user $USER) or none (default: no card unless --net or --publish); add ,mac=XX:XX:XX:XX:XX:XX to choose the card\'s address (default: 52:54:00:12:34:56 on user, a random 52:54:00:xx:xx:xx on stream and tap)')
  .option('--publish <[addr:]hostport:guestport[/udp]>', 'reach the guest\'s port from a host port (user network; repeatable; binds 127.0.0.1 unless addr is given)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .addOption(new Option('--console <where>', 'the guest console: serial (ttyS0) or virtio (hvc0)').default('serial'))
  .option('--disk <path[,ro][,snapshot][,serial=ID]>', 'a raw disk image as virtio-blk (repeatable: /dev/vda, /dev/vdb, ...)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .action(async (opts: { kernel?: string; initrd?: string; cmdline?: string; memory: string; cpus: string; engine: string; cpuModel?: string; vmlinux?: boolean; reboot: boolean; disk: string[]; console: string; net?: string | true; publish: string[] }) => {
    const config: VmConfig = {
      kernel: opts.kernel,
      initrd: opts.initrd,
      cmdline: opts.cmdline,
      // strict: an empty or malformed value is an error, never the default
      memoryBytes: parseSize(opts.memory),
      cpus: parseCpus(opts.cpus),
      engine: validateEngine(opts.engine),
      cpuModel: opts.cpuModel === undefined ? undefined : validateCpuModel(opts.cpuModel),
      vmlinux: Boolean(opts.vmlinux),
      reboot: opts.reboot,
      disks: validateDisks(opts.disk.map(parseDiskSpec)),
      console: validateConsole(opts.console),
      net: resolveNet(opts.net === undefined ? undefined : parseNet(opts.net === true ? 'user' : opts.net), opts.publish.map(parsePublish)),
    };
    // kvm: its vCPU threads boot on another core while the rest of typevisor loads
    const { kvmAvailability } = await import('../kvm/detect.js');
    if (config.engine === 'kvm' || (config.engine === 'auto' && kvmAvailability().usable)) (await import('../vmm/kvm-prestart.js')).prestartKvm(config.cpus);
    const { runVm } = await import('../vmm/run.js'); // loaded on use: `typevisor --help` stays quick
    const status = await runVm(config);
    process.exitCode = status;
  });

program
  .command('image')
  .description('build guest disk images')
  .command('debian')
  .description('build a bootable Debian 12 root file system image (no root needed: mmdebstrap, uidmap, fakeroot, e2fsprogs); boot it with typevisor run --disk PATH')
  .option('--size <size>', 'image size (sparse), e.g. 2G or 1500M', fmtBytes(DEFAULT_IMAGE_SIZE))
  .option('--out <path>', 'where to write the image (never overwritten)', 'debian.img')
  .option('--mirror <url>', 'Debian archive to install from (default: the host\'s apt sources)')
  .option('--rebuild', 'build afresh even if the cache has this image (today\'s package versions)')
  .action(async (opts: { size: string; out: string; mirror?: string; rebuild?: boolean }) => {
    const { buildDebianImage } = await import('../guest/image/build.js');
    await buildDebianImage({ sizeBytes: parseImageSize(opts.size), out: opts.out, mirror: opts.mirror, rebuild: Boolean(opts.rebuild) });
  });

const log = (line: string): void => void process.stderr.write(`${line}\n`);

program
  .command('serve')
  .description('serve the Firecracker-compatible REST API on a Unix socket for one VM; its console is this terminal, and the process ends with the VM')
  .requiredOption('--api-sock <path>', 'the API socket (Firecracker\'s flag)')
  .action(async (opts: { apiSock: string }) => {
    const { serveApi } = await import('../api/serve.js');
    process.exitCode = await serveApi(opts.apiSock, log);
  });

program
  .command('snapshot')
  .description('pause the VM served on an API socket and write a snapshot of it (state file + memory file)')
  .requiredOption('--api-sock <path>', 'the API socket of typevisor serve')
  .option('--state <path>', 'the state file to write', 'vm.snapshot')
  .option('--mem <path>', 'the memory file to write', 'vm.mem')
  .option('--resume', 'resume the VM afterwards (default: it stays paused)')
  .action(async (opts: { apiSock: string; state: string; mem: string; resume?: boolean }) => {
    const { apiCall } = await import('../api/client.js');
    await apiCall(opts.apiSock, 'PATCH', '/vm', { state: 'Paused' });
    await apiCall(opts.apiSock, 'PUT', '/snapshot/create', { snapshot_type: 'Full', snapshot_path: resolvePath(opts.state), mem_file_path: resolvePath(opts.mem) });
    if (opts.resume) await apiCall(opts.apiSock, 'PATCH', '/vm', { state: 'Resumed' });
    log(`typevisor: snapshot written to ${opts.state} and ${opts.mem}${opts.resume ? '; the VM runs on' : '; the VM is paused'}`);
  });

program
  .command('restore')
  .description('resume a VM from a snapshot in this process, its console on this terminal (by default on the engine that took it)')
  .option('--state <path>', 'the snapshot\'s state file', 'vm.snapshot')
  .option('--mem <path>', 'the snapshot\'s memory file', 'vm.mem')
  .addOption(new Option('--engine <engine>', 'the engine to resume on: auto (the snapshot\'s, or bt where this host cannot run kvm), bt or kvm; a snapshot moves between them (one vCPU, CPU model typevisor)').default('auto'))
  .option('--allow-cpu-mismatch', 'move the snapshot to the other engine even when the guest was offered CPU features that engine lacks (a warning names them)')
  .action(async (opts: { state: string; mem: string; engine: string; allowCpuMismatch?: boolean }) => {
    const { Vm } = await import('../vmm/vm.js');
    const { runInForeground } = await import('../vmm/run.js');
    const vm = await Vm.restore({ statePath: opts.state, memPath: opts.mem }, { log, engine: validateEngine(opts.engine), allowCpuMismatch: Boolean(opts.allowCpuMismatch) });
    process.exitCode = await runInForeground(vm, log);
  });

// Not a top-level await: the bundle is CommonJS (scripts/bundle.mjs), which has none.
void program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE;
  } else if (e instanceof ConfigError || (e instanceof ImageError && e.usage)) {
    fail(e.message, EXIT_USAGE); // a bad command line, as commander's own usage errors
  } else {
    fail(e);
  }
});
