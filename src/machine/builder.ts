/**
 * Builds the machine: guest memory plus every device, attached to the buses in one visible,
 * commented order. The interrupt controllers and the PIT are ours only under the software
 * engine; under KVM the kernel provides them (KVM_CREATE_IRQCHIP / KVM_CREATE_PIT2) and the
 * engine installs its own interrupt sink on machine.irq.
 */
import { AcpiPm, GPE0_BLK_LEN, PM1_CNT_LEN, PM1_EVT_LEN, PM_TMR_LEN, ResetControl } from '../devices/acpi/pm.js';
import { DebugExit } from '../devices/legacy/debug-exit/debug-exit.js';
import { I8042 } from '../devices/legacy/i8042/i8042.js';
import { LegacyInterruptRouter } from '../devices/legacy/interrupt-router.js';
import { IoApic } from '../devices/legacy/ioapic/ioapic.js';
import { LocalApic } from '../devices/legacy/lapic/lapic.js';
import { ApicBus, LapicWindow } from '../devices/legacy/lapic/apic-bus.js';
import { PicPair } from '../devices/legacy/pic/pic.js';
import { Pit8254 } from '../devices/legacy/pit/pit.js';
import { CmosRtc } from '../devices/legacy/rtc/rtc.js';
import { Uart16550 } from '../devices/legacy/uart/uart.js';
import { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_INTERRUPT_LINE, PciHost } from '../devices/pci/host.js';
import { ApicMsiSink } from '../devices/pci/msi.js';
import { BAR_SIZE as VIRTIO_BAR_SIZE, VIRTIO_BAR, VirtioPciDevice } from '../devices/virtio/pci/transport.js';
import { EntropyDevice } from '../devices/virtio/rng/rng.js';
import { VirtioConsole } from '../devices/virtio/console/console.js';
import { VirtioNet } from '../devices/virtio/net/net.js';
import { BlockDevice } from '../devices/virtio/blk/blk.js';
import type { DiskBackend } from '../devices/virtio/blk/backend.js';
import { PvPanic } from '../devices/legacy/pvpanic/pvpanic.js';
import type { Clock } from './clock.js';
import * as L from './layout.js';
import { Machine } from './machine.js';
import type { GuestMemory } from './memory.js';

export interface MachineOptions {
  memory: GuestMemory;
  /** 'bt' attaches our PIC/IOAPIC/LAPIC/PIT models; 'kvm' leaves them to the kernel. */
  interruptModel: 'emulated' | 'in-kernel';
  /** Where the guest's COM1 output goes. */
  serialOut: (bytes: Uint8Array) => void;
  clock?: Clock;
  /**
   * The host's CSPRNG (at most 65536 bytes a call). With it, the machine gets a virtio-rng
   * device; the host side injects it, so the core imports no node:crypto.
   */
  fillRandom?: (bytes: Uint8Array) => void;
  /** virtio-blk disks, in order (/dev/vda, ...); the host side opens the images. */
  disks?: readonly { backend: DiskBackend; serial?: string }[];
  /**
   * A virtio console (hvc0) whose output goes here: the guest's console when `--console
   * virtio` (the UART stays, for whatever else writes to it).
   */
  virtioConsoleOut?: (bytes: Uint8Array) => void;
  /**
   * ACPI S3: the PM device enters the sleeping state on S3's SLP_TYP and raises
   * machine.sleepEvent; only for an engine that listens (the bt engine; the kvm engine's device
   * thread, with one vCPU), and the DSDT must advertise \_S3 then (AcpiOptions.s3). Default false.
   */
  s3?: boolean;
  /**
   * vCPUs of the software engine (default 1): one local APIC each (APIC ID = index), joined by an
   * APIC bus; the register page answers for the vCPU running (LapicWindow).
   */
  cpus?: number;
  /** A virtio-net card: its MAC and where the frames the guest sends go. */
  net?: { mac: Uint8Array; transmit: (frame: Uint8Array) => void; txReady?: () => boolean; rxChecksumsValid?: boolean; guestTso?: boolean };
}

export interface BuiltMachine {
  machine: Machine;
  uart: Uart16550;
  /** The software engine's interrupt controllers (absent under KVM). */
  pic?: PicPair;
  ioapic?: IoApic;
  lapic?: LocalApic;
  /** Every vCPU's local APIC, by vCPU index (software engine; `lapic` is the first). */
  lapics: LocalApic[];
  /** With several vCPUs: the APIC bus (the engine sets its hooks) and the register page's router. */
  apicBus?: ApicBus;
  lapicWindow?: LapicWindow;
  /** The virtio-rng PCI function, when attached. */
  virtioRng?: VirtioPciDevice;
  /** The virtio-blk PCI functions, one per disk, in order. */
  virtioBlk: VirtioPciDevice[];
  /** The virtio console (hvc0), when asked for. */
  virtioConsole?: VirtioConsole;
  /** The virtio-net card, when asked for. */
  virtioNet?: VirtioNet;
  /** ACPI power management (the power button). */
  pm: AcpiPm;
  /** The 8254 PIT (software engine only), the CMOS RTC, the keyboard controller, pvpanic. */
  pit?: Pit8254;
  rtc: CmosRtc;
  i8042: I8042;
  pvpanic: PvPanic;
  /** The PCI host (configuration mechanism #1, the host bridge). */
  pci: PciHost;
  /** Every virtio PCI function, in the order they were plugged in (snapshots walk them). */
  virtioFunctions: { name: string; slot: number; fn: VirtioPciDevice }[];
}

export function buildMachine(opts: MachineOptions): BuiltMachine {
  const machine = new Machine(opts.memory, opts.clock);
  const { pio, mmio, irq, timers, clock } = machine;
  const stop = machine.requestStop.bind(machine);
  const ramBelow4G = opts.memory.regions.filter((r) => r.base < L.MMIO32_START).reduce((n, r) => n + r.size, 0);

  // 1. Interrupt controllers (software engine only): the 8259 pair, the IOAPIC, the boot
  //    CPU's local APIC; ISA lines go to both the PIC and the IOAPIC, as on a PC.
  let pic: PicPair | undefined;
  let ioapic: IoApic | undefined;
  let lapic: LocalApic | undefined;
  const lapics: LocalApic[] = [];
  let apicBus: ApicBus | undefined;
  let lapicWindow: LapicWindow | undefined;
  const cpus = opts.cpus ?? 1;
  if (opts.interruptModel === 'emulated') {
    pic = new PicPair();
    ioapic = new IoApic();
    const io = ioapic;
    if (cpus === 1) {
      lapic = new LocalApic({
        clock, timers, pic, id: 0, bsp: true, onLevelEoi: (v) => io.eoi(v),
        // the guest moved the APIC's page: it answers there, unless a device already lives there
        onRelocate: (old, base) => {
          if (mmio.find(old)?.device === lapic) mmio.remove(old);
          const free = mmio.list().every((m) => base + L.LAPIC_SIZE <= m.base || m.base + m.length <= base);
          if (free) mmio.insert(base, L.LAPIC_SIZE, lapic!, 'lapic');
          return free;
        },
      });
      lapics.push(lapic);
      mmio.insert(L.LAPIC_START, L.LAPIC_SIZE, lapic, 'lapic');
    } else {
      // one APIC per vCPU; the PIC's virtual wire reaches the BSP's LINT0 only. The page stays
      // where it is: with one window for every vCPU, moving one APIC's page is refused.
      const bus = new ApicBus(lapics);
      apicBus = bus;
      for (let i = 0; i < cpus; i++) {
        lapics.push(new LocalApic({
          clock, timers, pic: i === 0 ? pic : undefined, id: i, bsp: i === 0, onLevelEoi: (v) => io.eoi(v),
          onIpi: (ipi) => bus.send(i, ipi),
          onRelocate: () => false,
        }));
      }
      lapic = lapics[0];
      lapicWindow = new LapicWindow(lapics);
      mmio.insert(L.LAPIC_START, L.LAPIC_SIZE, lapicWindow, 'lapic');
    }
    for (const a of lapics) ioapic.addTarget(a);
    machine.msi.install(new ApicMsiSink(lapics)); // PCI MSI-X messages go to the local APICs
    pio.insert(L.PORT_PIC_MASTER, 2, pic.master, 'pic-master');
    pio.insert(L.PORT_PIC_SLAVE, 2, pic.slave, 'pic-slave');
    pio.insert(L.PORT_PIC_ELCR, 2, pic.elcr, 'pic-elcr');
    mmio.insert(L.IOAPIC_START, L.IOAPIC_SIZE, ioapic, 'ioapic');
    irq.install(new LegacyInterruptRouter(pic, ioapic));
  }

  // 2. Timers: the 8254 PIT (software engine; KVM has an in-kernel PIT) and the CMOS RTC.
  let pit: Pit8254 | undefined;
  if (opts.interruptModel === 'emulated') {
    pit = new Pit8254({ clock, timers, irq: irq.line(L.IRQ_PIT) });
    pio.insert(L.PORT_PIT, 4, pit, 'pit');
    pio.insert(L.PORT_SYSTEM_CONTROL_B, 1, pit.systemControl, 'system-control-b');
  }
  const rtc = new CmosRtc({
    clock,
    timers,
    irq: irq.line(L.IRQ_RTC),
    ramBelow4G,
    ramAbove4G: opts.memory.size - ramBelow4G,
    onAlarm: () => pm.rtcAlarm(), // the chipset's RTC_STS (step 5)
  });
  pio.insert(L.PORT_RTC, 2, rtc, 'rtc');

  // 3. The serial console: COM1 16550A on IRQ 4.
  const uart = new Uart16550(irq.line(L.IRQ_COM1), opts.serialOut);
  pio.insert(L.PORT_COM1, 8, uart, 'com1');

  // 4. The keyboard controller; its reset command restarts the machine (we stop instead).
  const i8042 = new I8042(irq.line(L.IRQ_KEYBOARD), irq.line(L.IRQ_MOUSE), () => stop({ kind: 'reset' }));
  pio.insert(L.PORT_I8042_DATA, 1, i8042.dataPort, 'i8042-data');
  pio.insert(L.PORT_I8042_COMMAND, 1, i8042.commandPort, 'i8042-command');

  // 5. ACPI fixed hardware: PM1a event/control, PM timer, GPE0; S5 powers off; S3 (when
  //    asked for) stops the vCPUs until a wake event: the power button, the RTC alarm of step 2
  //    with RTC_EN, or console input (the Vm calls pm.wakeEvent()).
  const s3 = opts.s3 ? { onSuspend: () => machine.sleepEvent('suspend'), onWake: () => machine.sleepEvent('wake') } : undefined;
  const pm = new AcpiPm({ clock, timers, sci: irq.line(L.IRQ_ACPI_SCI), onPowerOff: () => stop({ kind: 'poweroff' }), s3 });
  pio.insert(L.PORT_ACPI_PM1A_EVT, PM1_EVT_LEN, pm.event, 'acpi-pm1a-evt');
  pio.insert(L.PORT_ACPI_PM1A_CNT, PM1_CNT_LEN, pm.control, 'acpi-pm1a-cnt');
  pio.insert(L.PORT_ACPI_PM_TMR, PM_TMR_LEN, pm.timer, 'acpi-pm-tmr');
  pio.insert(L.PORT_ACPI_GPE0, GPE0_BLK_LEN, pm.gpe0, 'acpi-gpe0');

  // 6. PCI configuration mechanism #1 at 0xcf8..0xcff, which also decodes the reset
  //    control register at 0xcf9 (the FADT's RESET_REG).
  //    Memory BARs of PCI functions are mapped on the MMIO bus where the guest programs them.
  const pci = new PciHost({ resetControl: new ResetControl(() => stop({ kind: 'reset' })), mmio });
  pio.insert(L.PORT_PCI_CONFIG_ADDRESS, 8, pci, 'pci-config');

  // 7. The debug-exit port, like QEMU's isa-debug-exit: status (v << 1) | 1.
  pio.insert(L.PORT_DEBUG_EXIT, 4, new DebugExit((value) => stop({ kind: 'debug-exit', value })), 'debug-exit');

  // 8. Port 0x80 (POST codes): Linux writes it as an I/O delay; accept and ignore.
  pio.insert(L.PORT_POST, 1, { read: () => 0xff, write: () => {} }, 'post');

  // 9. pvpanic (ACPI QEMU0001, described in the DSDT): the guest kernel reports its panic.
  const pvpanic = new PvPanic((event) => event === 'panicked' && stop({ kind: 'panic' }));
  pio.insert(L.PORT_PVPANIC, 1, pvpanic, 'pvpanic');

  // 10. virtio devices on PCI, on both engines: MSI-X messages go to machine.msi (the LAPIC
  //     model of step 1, or KVM_SIGNAL_MSI, which the KVM engine installs in its device
  //     thread), INTx to machine.irq (our IOAPIC, or KVM_IRQ_LINE to the in-kernel one). Like
  //     firmware, we place each BAR in the PCI window, give the function its INTx GSI (what
  //     the DSDT's _PRT says) and turn memory decoding on.
  let virtioRng: VirtioPciDevice | undefined;
  const virtioBlk: VirtioPciDevice[] = [];
  let virtioConsole: VirtioConsole | undefined;
  let virtioNet: VirtioNet | undefined;
  const virtioFunctions: BuiltMachine['virtioFunctions'] = [];
  {
    let nextBar = L.PCI_MMIO_START;
    const pciFunction = (slot: number, name: string, device: VirtioPciDevice['device']): VirtioPciDevice => {
      const fn = new VirtioPciDevice({ device, memory: opts.memory, msi: machine.msi, intx: irq.line(L.pciIntxGsi(slot, 0)), name });
      fn.programBar(VIRTIO_BAR, nextBar);
      nextBar += VIRTIO_BAR_SIZE;
      fn.set8(PCI_INTERRUPT_LINE, L.pciIntxGsi(slot, 0));
      fn.set16(PCI_COMMAND, PCI_COMMAND_MEMORY);
      pci.addDevice(slot, 0, fn);
      virtioFunctions.push({ name, slot, fn });
      return fn;
    };
    // 10a. virtio-rng: the host's CSPRNG seeds the guest's RNG.
    if (opts.fillRandom) virtioRng = pciFunction(L.PCI_SLOT_VIRTIO_RNG, 'virtio-rng', new EntropyDevice({ fillRandom: opts.fillRandom }));
    // 10d. virtio-net, when asked for.
    if (opts.net) {
      virtioNet = new VirtioNet({ mac: opts.net.mac, transmit: opts.net.transmit, txReady: opts.net.txReady, rxChecksumsValid: opts.net.rxChecksumsValid, guestTso: opts.net.guestTso });
      pciFunction(L.PCI_SLOT_VIRTIO_NET, 'virtio-net', virtioNet);
    }
    // 10c. virtio-console (hvc0), when asked for.
    if (opts.virtioConsoleOut) {
      virtioConsole = new VirtioConsole({ output: opts.virtioConsoleOut });
      pciFunction(L.PCI_SLOT_VIRTIO_CONSOLE, 'virtio-console', virtioConsole);
    }
    // 10b. virtio-blk: one function per disk, in consecutive slots, so Linux names them in order.
    (opts.disks ?? []).forEach((d, i) => {
      virtioBlk.push(pciFunction(L.PCI_SLOT_VIRTIO_BLK + i, `virtio-blk${i}`, new BlockDevice({ backend: d.backend, serial: d.serial })));
    });
  }

  return { machine, uart, pic, ioapic, lapic, lapics, apicBus, lapicWindow, virtioRng, virtioBlk, virtioConsole, virtioNet, pm, pit, rtc, i8042, pvpanic, pci, virtioFunctions };
}
