/**
 * What a virtio notification costs on the KVM engine, measured with the small virtio-rng guest
 * (virtio-guest.ts) on the machine `typevisor run --engine kvm` builds. Not a test:
 *
 *   node --import tsx tests/kvm/notify-cost.ts [rounds]
 *
 * Each row runs the guest twice, with R and R + `rounds` rounds after its first, checked,
 * request, and divides the difference of wall (and process CPU) time from the guest's 'S' mark to
 * the end of the run by `rounds`: start-up and teardown cancel out. Rows:
 *
 *  - notify, MMIO exit only: the doorbell write exits to the device thread, which finds nothing
 *    new in the ring (the bare price of the exit);
 *  - MSI-X round trip: post a buffer, doorbell (MMIO exit), the device fills it and sends
 *    KVM_SIGNAL_MSI, the guest halts until its handler ran (what the device path costs today);
 *  - INTx round trip: the same through KVM_IRQ_LINE and the in-kernel IOAPIC; the handler's ISR
 *    read is a second exit and lowers the line;
 *  - notify, ioeventfd only: the doorbell address is registered with KVM_IOEVENTFD, so the
 *    write completes in the kernel (no userspace exit; nobody reads the eventfd);
 *  - ioeventfd + waiting thread + MSI: the doorbell signals the eventfd, a host thread blocked
 *    in read(2) wakes and sends KVM_SIGNAL_MSI, the guest halts until its handler ran: the
 *    round trip of a device served by a thread of its own.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import koffi from 'koffi';
import { C, check, sys } from '../../src/kvm/sys.js';
import { KvmMsiSink } from '../../src/kvm/msi.js';
import type { GuestMemory } from '../../src/machine/memory.js';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { GO_FLAG, MSI_VECTOR, VIRTIO_GUEST_BAR, VIRTIO_GUEST_OK, virtioRngGuest, type VirtioGuestOptions } from './virtio-guest.js';
import { NOTIFY_OFFSET } from '../../src/devices/virtio/pci/transport.js';

const libc = koffi.load('libc.so.6');
const eventfd = libc.func('int eventfd(unsigned int initval, int flags)') as (init: number, flags: number) => number;
const read = libc.func('long read(int fd, void *buf, unsigned long n)') as (fd: number, buf: Uint8Array, n: number) => number;

/** The VM fd the engine opened (anon inode "kvm-vm"); the test process runs one VM at a time. */
function findVmFd(): number {
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`) === 'anon_inode:kvm-vm') return Number(name);
    } catch {
      /* closed meanwhile */
    }
  }
  throw new Error('no KVM VM fd in this process');
}

interface Sample {
  wallUs: number;
  cpuUs: number;
}

async function once(opts: VirtioGuestOptions, ioeventfd: 'none' | 'swallow' | 'serve'): Promise<Sample> {
  let memory: GuestMemory | undefined;
  let t0 = 0n;
  let c0 = process.cpuUsage();
  let efd = -1;
  const r = await runGuest(virtioRngGuest(opts), {
    machine: PRODUCT_MACHINE_MODULE,
    timeoutMs: 60_000,
    prepare: (m) => (memory = m),
    onEvent: (e) => {
      if (!('out' in e) || e.out !== 'S'.charCodeAt(0) || t0 !== 0n) return;
      if (ioeventfd !== 'none') {
        const vmFd = findVmFd();
        efd = check(eventfd(0, C.EFD_CLOEXEC), 'eventfd');
        const req = new Uint8Array(C.KVM_IOEVENTFD_SIZE);
        const dv = new DataView(req.buffer);
        dv.setBigUint64(C.KVM_IOEVENTFD_ADDR, BigInt(VIRTIO_GUEST_BAR + NOTIFY_OFFSET), true); // queue 0
        dv.setUint32(C.KVM_IOEVENTFD_LEN, 2, true);
        dv.setInt32(C.KVM_IOEVENTFD_FD, efd, true);
        check(sys.ioctlPtr(vmFd, C.KVM_IOEVENTFD, req), 'KVM_IOEVENTFD');
        t0 = process.hrtime.bigint();
        c0 = process.cpuUsage();
        memory!.write8(GO_FLAG, 1);
        if (ioeventfd === 'serve') {
          // This thread plays the device thread: block on the eventfd, answer with an MSI.
          const sink = new KvmMsiSink(vmFd);
          const counter = new Uint8Array(8);
          let served = 0;
          while (served < (opts.rounds ?? 1) - 1) {
            check(read(efd, counter, 8), 'read(eventfd)');
            served += Number(new DataView(counter.buffer).getBigUint64(0, true));
            sink.sendMsi(0xfee0_0000, MSI_VECTOR);
          }
        }
        return;
      }
      t0 = process.hrtime.bigint();
      c0 = process.cpuUsage();
    },
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  if (efd >= 0) sys.close(efd);
  if (r.reason.kind !== 'debug-exit' || r.reason.value !== VIRTIO_GUEST_OK) throw new Error(`guest failed: ${JSON.stringify(r.reason)}`);
  return { wallUs: wall, cpuUs: cpu.user + cpu.system };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function row(label: string, opts: VirtioGuestOptions, ioeventfd: 'none' | 'swallow' | 'serve', rounds: number): Promise<void> {
  const base = 100;
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < 5; i++) {
    const a = await once({ ...opts, rounds: base + 1 }, ioeventfd);
    const b = await once({ ...opts, rounds: base + rounds + 1 }, ioeventfd);
    wall.push((b.wallUs - a.wallUs) / rounds);
    cpu.push((b.cpuUs - a.cpuUs) / rounds);
  }
  console.log(`${label.padEnd(44)} wall ${median(wall).toFixed(1).padStart(6)} µs   CPU ${median(cpu).toFixed(1).padStart(6)} µs   (runs: ${wall.map((w) => w.toFixed(1)).join(', ')})`);
}

const skip = kvmSkipReason();
if (skip) {
  console.log(`cannot measure: ${skip}`);
} else {
  const rounds = Number(process.argv[2] ?? 2000);
  console.log(`µs per round, median of 5 (differences of runs with ${rounds} more rounds)`);
  await row('notify, MMIO exit only', { intx: false, work: 'notify-only' }, 'none', rounds);
  await row('MSI-X round trip (MMIO exit, KVM_SIGNAL_MSI)', { intx: false }, 'none', rounds);
  await row('INTx round trip (MMIO exit, KVM_IRQ_LINE)', { intx: true }, 'none', rounds);
  await row('notify, ioeventfd only (no userspace exit)', { intx: false, work: 'notify-only' }, 'swallow', rounds);
  await row('ioeventfd + waiting thread + KVM_SIGNAL_MSI', { intx: false, work: 'host-msi' }, 'serve', rounds);
}
