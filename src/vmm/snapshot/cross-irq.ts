/**
 * The interrupt controllers and the PIT between the two engines' forms, for a snapshot that
 * moves a guest from one engine to the other (cross-engine.ts):
 *
 *   kvm engine: KVM's in-kernel devices, as their ABI structures (kvm_pic_state, kvm_ioapic_state,
 *               kvm_pit_state2, and the local APIC's register page, kvm_lapic_state);
 *   bt engine:  our device models' saved state (PicState, IoApicState, PitState, LocalApicState).
 *
 * Both describe the same guest-visible registers; what differs is bookkeeping:
 * - PIC: KVM's last_irr is the line levels our model keeps as `lines`; KVM has no single-PIC
 *   mode (it always expects ICW3), so `single` is false.
 * - IOAPIC: KVM's irr holds the levels of level-triggered pins and the edges still waiting on
 *   masked edge-triggered pins; ours keeps the two apart (`levels`, `pendingEdges`).
 * - PIT: KVM_SET_PIT2 reloads every counter from its count at the restore (count_load_time is
 *   not used), so a counter restarts there; the conversion does the same on the bt side.
 * - Local APIC: the timer's current count (TMCCT) carries the time left; our model keeps the
 *   timer's start on the machine clock instead. Both run the APIC bus at 1 GHz.
 *
 * Every value that comes from a snapshot is untrusted: the bt forms go through the bt engine's
 * own section checks afterwards (devices.ts), and KVM checks its structures on KVM_SET_*; what
 * only this module can see (a timer mode the bt model lacks) is refused here.
 */
import * as C from '../../kvm/constants.generated.js';
import { IRQCHIP_STATE_SIZE } from '../../kvm/vm.js';
import type { IoApicState } from '../../devices/legacy/ioapic/ioapic.js';
import type { LocalApicState } from '../../devices/legacy/lapic/lapic.js';
import type { PicState } from '../../devices/legacy/pic/pic.js';
import type { PitChannelState, PitState } from '../../devices/legacy/pit/pit.js';
import { IOAPIC_PINS, IOAPIC_START, LAPIC_BUS_FREQUENCY_HZ } from '../../machine/layout.js';
import { SnapshotError } from './check.js';

type PicChipState = PicState['master'];

// ---- PIC ---------------------------------------------------------------------------------------

/** ELCR bits KVM lets the guest set (kvm_pic_init): IRQs 3..7 on the master, 9..12, 14, 15 on the slave. */
const ELCR_MASK = [0xf8, 0xde] as const;

export function picFromKvm(master: Uint8Array, slave: Uint8Array): PicState {
  const chip = (b: Uint8Array): PicChipState => ({
    irr: b[C.KVM_PIC_STATE_IRR]!,
    isr: b[C.KVM_PIC_STATE_ISR]!,
    imr: b[C.KVM_PIC_STATE_IMR]!,
    elcr: b[C.KVM_PIC_STATE_ELCR]!,
    lines: b[C.KVM_PIC_STATE_LAST_IRR]!,
    vectorBase: b[C.KVM_PIC_STATE_IRQ_BASE]!,
    priorityAdd: b[C.KVM_PIC_STATE_PRIORITY_ADD]! & 7,
    readIsr: b[C.KVM_PIC_STATE_READ_REG_SELECT]! !== 0,
    poll: b[C.KVM_PIC_STATE_POLL]! !== 0,
    specialMask: b[C.KVM_PIC_STATE_SPECIAL_MASK]! !== 0,
    initState: b[C.KVM_PIC_STATE_INIT_STATE]! & 3,
    icw4Needed: b[C.KVM_PIC_STATE_INIT4]! !== 0,
    single: false,
    autoEoi: b[C.KVM_PIC_STATE_AUTO_EOI]! !== 0,
    rotateOnAutoEoi: b[C.KVM_PIC_STATE_ROTATE_ON_AUTO_EOI]! !== 0,
    specialFullyNested: b[C.KVM_PIC_STATE_SPECIAL_FULLY_NESTED_MODE]! !== 0,
  });
  return { master: chip(master), slave: chip(slave) };
}

/** The two kvm_irqchip.chip unions (IRQCHIP_STATE_SIZE bytes each) of `p`. */
export function picToKvm(p: PicState): [Uint8Array, Uint8Array] {
  return [p.master, p.slave].map((c, i) => {
    const b = new Uint8Array(IRQCHIP_STATE_SIZE);
    b[C.KVM_PIC_STATE_LAST_IRR] = c.lines;
    b[C.KVM_PIC_STATE_IRR] = c.irr;
    b[C.KVM_PIC_STATE_IMR] = c.imr;
    b[C.KVM_PIC_STATE_ISR] = c.isr;
    b[C.KVM_PIC_STATE_PRIORITY_ADD] = c.priorityAdd;
    b[C.KVM_PIC_STATE_IRQ_BASE] = c.vectorBase;
    b[C.KVM_PIC_STATE_READ_REG_SELECT] = +c.readIsr;
    b[C.KVM_PIC_STATE_POLL] = +c.poll;
    b[C.KVM_PIC_STATE_SPECIAL_MASK] = +c.specialMask;
    b[C.KVM_PIC_STATE_INIT_STATE] = c.initState;
    b[C.KVM_PIC_STATE_AUTO_EOI] = +c.autoEoi;
    b[C.KVM_PIC_STATE_ROTATE_ON_AUTO_EOI] = +c.rotateOnAutoEoi;
    b[C.KVM_PIC_STATE_SPECIAL_FULLY_NESTED_MODE] = +c.specialFullyNested;
    b[C.KVM_PIC_STATE_INIT4] = +c.icw4Needed;
    b[C.KVM_PIC_STATE_ELCR] = c.elcr & ELCR_MASK[i]!;
    b[C.KVM_PIC_STATE_ELCR_MASK] = ELCR_MASK[i]!;
    return b;
  }) as [Uint8Array, Uint8Array];
}

// ---- IOAPIC ------------------------------------------------------------------------------------

const REDIR_TRIGGER_LEVEL = 1 << 15;
const REDIR_MASKED = 1 << 16;

/** Pins whose redirection entry (low dwords in `lo(i)`) has `bit` set. */
function pinsWith(lo: (i: number) => number, bit: number): number {
  let m = 0;
  for (let i = 0; i < IOAPIC_PINS; i++) if (lo(i) & bit) m |= 1 << i;
  return m >>> 0;
}

export function ioapicFromKvm(b: Uint8Array): IoApicState {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const redirection: number[] = [];
  for (let i = 0; i < IOAPIC_PINS; i++) {
    const at = C.KVM_IOAPIC_STATE_REDIRTBL + 8 * i;
    redirection.push(dv.getUint32(at, true), dv.getUint32(at + 4, true));
  }
  const lo = (i: number): number => redirection[2 * i]!;
  const irr = dv.getUint32(C.KVM_IOAPIC_STATE_IRR, true) & (2 ** IOAPIC_PINS - 1);
  const level = pinsWith(lo, REDIR_TRIGGER_LEVEL);
  return {
    id: dv.getUint32(C.KVM_IOAPIC_STATE_ID, true) & 0xf,
    ioregsel: dv.getUint32(C.KVM_IOAPIC_STATE_IOREGSEL, true) & 0xff,
    redirection,
    levels: (irr & level) >>> 0,
    pendingEdges: (irr & ~level & pinsWith(lo, REDIR_MASKED)) >>> 0,
  };
}

export function ioapicToKvm(s: IoApicState): Uint8Array {
  const b = new Uint8Array(IRQCHIP_STATE_SIZE);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(C.KVM_IOAPIC_STATE_BASE_ADDRESS, BigInt(IOAPIC_START), true);
  dv.setUint32(C.KVM_IOAPIC_STATE_IOREGSEL, s.ioregsel, true);
  dv.setUint32(C.KVM_IOAPIC_STATE_ID, s.id, true);
  const level = pinsWith((i) => s.redirection[2 * i]!, REDIR_TRIGGER_LEVEL);
  dv.setUint32(C.KVM_IOAPIC_STATE_IRR, ((s.levels & level) | (s.pendingEdges & ~level)) >>> 0, true);
  for (let i = 0; i < IOAPIC_PINS; i++) {
    const at = C.KVM_IOAPIC_STATE_REDIRTBL + 8 * i;
    dv.setUint32(at, s.redirection[2 * i]!, true);
    dv.setUint32(at + 4, s.redirection[2 * i + 1]!, true);
  }
  return b;
}

// ---- PIT ---------------------------------------------------------------------------------------

/** KVM's read/write byte-sequence states (arch/x86/kvm/i8254.h). */
const RW_STATE_LSB = 1;
const RW_STATE_MSB = 2;
const RW_STATE_WORD0 = 3;
const RW_STATE_WORD1 = 4;
/** kvm_pit_reset leaves a never-programmed counter in this mode. */
const KVM_PIT_MODE_UNSET = 0xff;
/** Port 0x61: counter 2's gate (bit 0) and the speaker data bit (bit 1). */
const PORTB_GATE2 = 1 << 0;
const PORTB_SPEAKER_DATA = 1 << 1;

/** `clockNs`: the machine clock of the restored machine (the counters restart there, as under KVM). */
export function pitFromKvm(b: Uint8Array, clockNs: number): PitState {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const channels: PitChannelState[] = [0, 1, 2].map((i) => {
    const at = C.KVM_PIT_STATE2_CHANNELS + i * C.KVM_PIT_CHANNEL_STATE_SIZE;
    const u8 = (off: number): number => dv.getUint8(at + off);
    const mode = u8(C.KVM_PIT_CHANNEL_STATE_MODE);
    const rw = u8(C.KVM_PIT_CHANNEL_STATE_RW_MODE);
    const latched = u8(C.KVM_PIT_CHANNEL_STATE_COUNT_LATCHED);
    const programmed = mode !== KVM_PIT_MODE_UNSET;
    return {
      mode: programmed && mode <= 5 ? mode : 0,
      rw: rw >= RW_STATE_LSB && rw <= RW_STATE_WORD0 ? rw : RW_STATE_WORD0,
      bcd: u8(C.KVM_PIT_CHANNEL_STATE_BCD) !== 0,
      countRegister: dv.getUint32(at + C.KVM_PIT_CHANNEL_STATE_COUNT, true) & 0xffff,
      gate: u8(C.KVM_PIT_CHANNEL_STATE_GATE) !== 0,
      running: programmed,
      startNs: clockNs,
      heldTicks: 0,
      nullCount: false,
      writeLowPending: u8(C.KVM_PIT_CHANNEL_STATE_WRITE_STATE) === RW_STATE_WORD1,
      writeLatch: u8(C.KVM_PIT_CHANNEL_STATE_WRITE_LATCH),
      readHighNext: u8(C.KVM_PIT_CHANNEL_STATE_READ_STATE) === RW_STATE_WORD1,
      latchedCount: dv.getUint16(at + C.KVM_PIT_CHANNEL_STATE_LATCHED_COUNT, true),
      latchedBytes: latched === RW_STATE_WORD0 ? 2 : latched === RW_STATE_LSB || latched === RW_STATE_MSB || latched === RW_STATE_WORD1 ? 1 : 0,
      latchedStatus: u8(C.KVM_PIT_CHANNEL_STATE_STATUS),
      statusLatched: u8(C.KVM_PIT_CHANNEL_STATE_STATUS_LATCHED) !== 0,
    };
  });
  const speakerData = (dv.getUint32(C.KVM_PIT_STATE2_FLAGS, true) & C.KVM_PIT_FLAGS_SPEAKER_DATA_ON) !== 0;
  return {
    channels,
    speakerData,
    portBLow: (channels[2]!.gate ? PORTB_GATE2 : 0) | (speakerData ? PORTB_SPEAKER_DATA : 0),
    irqPending: false,
  };
}

export function pitToKvm(s: PitState): Uint8Array {
  const b = new Uint8Array(C.KVM_PIT_STATE2_SIZE);
  const dv = new DataView(b.buffer);
  s.channels.forEach((c, i) => {
    const at = C.KVM_PIT_STATE2_CHANNELS + i * C.KVM_PIT_CHANNEL_STATE_SIZE;
    const set = (off: number, v: number): void => dv.setUint8(at + off, v);
    dv.setUint32(at + C.KVM_PIT_CHANNEL_STATE_COUNT, c.countRegister === 0 ? 0x10000 : c.countRegister, true);
    dv.setUint16(at + C.KVM_PIT_CHANNEL_STATE_LATCHED_COUNT, c.latchedCount, true);
    set(C.KVM_PIT_CHANNEL_STATE_COUNT_LATCHED, c.latchedBytes === 2 ? RW_STATE_WORD0 : c.latchedBytes === 1 ? RW_STATE_MSB : 0);
    set(C.KVM_PIT_CHANNEL_STATE_STATUS_LATCHED, +c.statusLatched);
    set(C.KVM_PIT_CHANNEL_STATE_STATUS, c.latchedStatus);
    set(C.KVM_PIT_CHANNEL_STATE_READ_STATE, c.rw === RW_STATE_WORD0 ? (c.readHighNext ? RW_STATE_WORD1 : RW_STATE_WORD0) : c.rw);
    set(C.KVM_PIT_CHANNEL_STATE_WRITE_STATE, c.rw === RW_STATE_WORD0 ? (c.writeLowPending ? RW_STATE_WORD1 : RW_STATE_WORD0) : c.rw);
    set(C.KVM_PIT_CHANNEL_STATE_WRITE_LATCH, c.writeLatch);
    set(C.KVM_PIT_CHANNEL_STATE_RW_MODE, c.rw);
    set(C.KVM_PIT_CHANNEL_STATE_MODE, c.running ? c.mode : KVM_PIT_MODE_UNSET);
    set(C.KVM_PIT_CHANNEL_STATE_BCD, +c.bcd);
    set(C.KVM_PIT_CHANNEL_STATE_GATE, +c.gate);
  });
  dv.setUint32(C.KVM_PIT_STATE2_FLAGS, s.speakerData ? C.KVM_PIT_FLAGS_SPEAKER_DATA_ON : 0, true);
  return b;
}

// ---- local APIC --------------------------------------------------------------------------------

/** Register offsets in the APIC page (SDM vol. 3, table 11-1). */
const R = {
  id: 0x20, tpr: 0x80, ldr: 0xd0, dfr: 0xe0, svr: 0xf0, isr: 0x100, tmr: 0x180, irr: 0x200, esr: 0x280,
  icrLow: 0x300, icrHigh: 0x310, lvtTimer: 0x320, tmict: 0x380, tmcct: 0x390, tdcr: 0x3e0,
} as const;
/** LVT timer mode field (bits 18:17): 2 is TSC-deadline, which the bt engine's APIC lacks. */
const LVT_TIMER_MODE_SHIFT = 17;
const LVT_TIMER_TSC_DEADLINE = 2;
const LVT_TIMER_PERIODIC = 1;
const LVT_COUNT = 6;

/** ns per timer tick for a divide configuration register value. */
export function apicTickNs(tdcr: number): number {
  const code = ((tdcr & 8) >> 1) | (tdcr & 3);
  return ((code === 7 ? 1 : 2 << code) * 1e9) / LAPIC_BUS_FREQUENCY_HZ;
}

/** The timer's current count at machine time `clockNs` (as the bt model reads it). */
export function apicCurrentCount(s: LocalApicState, clockNs: number): number {
  if (s.initialCount === 0) return 0;
  const elapsed = Math.max(0, Math.floor((clockNs - s.timerStartNs) / apicTickNs(s.divideConfig)));
  if (((s.lvt[0]! >>> LVT_TIMER_MODE_SHIFT) & 3) === LVT_TIMER_PERIODIC) return s.initialCount - (elapsed % s.initialCount);
  return elapsed >= s.initialCount ? 0 : s.initialCount - elapsed;
}

/**
 * The bt model's state for KVM's APIC page `page` (kvm_lapic_state.regs), its IA32_APIC_BASE
 * `apicBase`, an NMI KVM had pending, at machine time `clockNs`.
 */
export function lapicFromKvm(page: Uint8Array, apicBase: number, nmiPending: boolean, clockNs: number): LocalApicState {
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const reg = (off: number): number => dv.getUint32(off, true);
  const eight = (base: number): number[] => Array.from({ length: 8 }, (_, i) => reg(base + 0x10 * i));
  const lvt = Array.from({ length: LVT_COUNT }, (_, i) => reg(R.lvtTimer + 0x10 * i));
  if (((lvt[0]! >>> LVT_TIMER_MODE_SHIFT) & 3) === LVT_TIMER_TSC_DEADLINE) {
    throw new SnapshotError('Cannot restore the snapshot on the bt engine: the guest runs its local APIC timer in TSC-deadline mode, which the bt engine\'s APIC lacks; take the snapshot from a VM started with --cpu-model typevisor (which does not offer it)');
  }
  const tdcr = reg(R.tdcr) & 0xb;
  const initialCount = reg(R.tmict);
  const current = Math.min(reg(R.tmcct), initialCount);
  // The time the count has run: a count still going started (initial - current) ticks ago;
  // a periodic one at 0 has just reloaded, a one-shot one at 0 has run out.
  const periodic = ((lvt[0]! >>> LVT_TIMER_MODE_SHIFT) & 3) === LVT_TIMER_PERIODIC;
  const ran = current === 0 && !periodic ? initialCount : current === 0 ? 0 : initialCount - current;
  return {
    apicBase,
    id: reg(R.id) >>> 24,
    tpr: reg(R.tpr) & 0xff,
    ldr: reg(R.ldr),
    dfr: reg(R.dfr),
    svr: reg(R.svr) & 0x3ff,
    esr: reg(R.esr) & 0xff,
    esrPending: 0,
    icrLow: reg(R.icrLow),
    icrHigh: reg(R.icrHigh),
    lvt,
    irr: eight(R.irr),
    isr: eight(R.isr),
    tmr: eight(R.tmr),
    divideConfig: tdcr,
    initialCount,
    timerStartNs: clockNs - ran * apicTickNs(tdcr),
    timerPending: false,
    nmiPending,
    extIntPending: false,
  };
}

/** KVM's APIC page (kvm_lapic_state) for the bt model's state at machine time `clockNs`. */
export function lapicToKvm(s: LocalApicState, clockNs: number): Uint8Array {
  const page = new Uint8Array(C.KVM_LAPIC_STATE_SIZE);
  const dv = new DataView(page.buffer);
  const set = (off: number, v: number): void => dv.setUint32(off, v >>> 0, true);
  set(R.id, s.id << 24);
  set(R.tpr, s.tpr);
  set(R.ldr, s.ldr);
  set(R.dfr, s.dfr);
  set(R.svr, s.svr);
  for (let i = 0; i < 8; i++) {
    set(R.isr + 0x10 * i, s.isr[i]!);
    set(R.tmr + 0x10 * i, s.tmr[i]!);
    set(R.irr + 0x10 * i, s.irr[i]!);
  }
  set(R.esr, s.esr | s.esrPending);
  set(R.icrLow, s.icrLow);
  set(R.icrHigh, s.icrHigh);
  s.lvt.forEach((v, i) => set(R.lvtTimer + 0x10 * i, v));
  set(R.tmict, s.initialCount);
  set(R.tmcct, apicCurrentCount(s, clockNs));
  set(R.tdcr, s.divideConfig);
  return page;
}
