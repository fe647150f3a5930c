/**
 * The machine the KVM tests run, built in the boot vCPU's worker through the KvmMachineFactory
 * contract: the real COM1 UART, i8042 and debug-exit devices, plus tiny test devices. Output
 * bytes and events are posted to the host.
 *
 *   0x3f8       Uart16550 (COM1)
 *   0x60/0x64   I8042 (0xfe to 0x64: pulse the reset line)
 *   0xf4        DebugExit (write v: stop with status (v << 1) | 1)
 *   0x510       IRQ test: write n raises GSI n; 0x511 write n lowers it
 *   0x520       timer test: write n schedules a debug exit with value n 1 ms later
 *   PCI_MMIO_START + 0x0   MMIO scratch register (read returns last write xor 0xffffffff)
 */
import { Machine } from '../../src/machine/machine.js';
import type { AccessSize, BusDevice } from '../../src/machine/bus.js';
import {
  IRQ_COM1,
  IRQ_KEYBOARD,
  IRQ_MOUSE,
  PCI_MMIO_START,
  PORT_COM1,
  PORT_DEBUG_EXIT,
  PORT_I8042_COMMAND,
  PORT_I8042_DATA,
} from '../../src/machine/layout.js';
import { Uart16550 } from '../../src/devices/legacy/uart/uart.js';
import { I8042 } from '../../src/devices/legacy/i8042/i8042.js';
import { DebugExit, DEBUG_EXIT_PORTS } from '../../src/devices/legacy/debug-exit/debug-exit.js';
import type { KvmMachineContext } from '../../src/kvm/machine-factory.js';

export const PORT_IRQ_RAISE = 0x510;
export const PORT_TIMER = 0x520;
export const MMIO_SCRATCH = PCI_MMIO_START;

export type TestEvent = { out: number } | { mmio: 'read' | 'write'; offset: number; size: number; value: number };

export function createKvmMachine(ctx: KvmMachineContext): Machine {
  const m = new Machine(ctx.memory);
  const post = (e: TestEvent): void => ctx.post(e);
  const dev = (write: (offset: number, size: AccessSize, value: number) => void, read = (_o: number, _s: AccessSize) => 0): BusDevice => ({ read, write });
  m.pio.insert(PORT_COM1, 8, new Uart16550(m.irq.line(IRQ_COM1), (bytes) => bytes.forEach((b) => post({ out: b }))), 'com1');
  const i8042 = new I8042(m.irq.line(IRQ_KEYBOARD), m.irq.line(IRQ_MOUSE), () => m.requestStop({ kind: 'reset' }));
  m.pio.insert(PORT_I8042_DATA, 1, i8042.dataPort, 'i8042-data');
  m.pio.insert(PORT_I8042_COMMAND, 1, i8042.commandPort, 'i8042-command');
  m.pio.insert(PORT_DEBUG_EXIT, DEBUG_EXIT_PORTS, new DebugExit((value) => m.requestStop({ kind: 'debug-exit', value })), 'debug-exit');
  m.pio.insert(PORT_IRQ_RAISE, 2, dev((off, _s, v) => m.irq.setIrq(v & 0xff, off === 0)), 'test-irq');
  m.pio.insert(PORT_TIMER, 1, dev((_o, _s, v) => {
    m.timers.schedule(m.clock.nowNs() + 1e6, () => m.requestStop({ kind: 'debug-exit', value: v }));
  }), 'test-timer');
  let scratch = 0;
  m.mmio.insert(MMIO_SCRATCH, 0x1000, dev(
    (offset, size, value) => {
      scratch = value;
      post({ mmio: 'write', offset, size, value });
    },
    (offset, size) => {
      const value = (scratch ^ 0xffff_ffff) >>> 0;
      post({ mmio: 'read', offset, size, value });
      return value;
    },
  ), 'test-mmio');
  return m;
}
