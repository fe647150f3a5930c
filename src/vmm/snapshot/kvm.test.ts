/** The kvm engine's snapshot state: JSON form and validation of untrusted state (no /dev/kvm needed). */
import { describe, expect, it } from 'vitest';
import * as C from '../../kvm/constants.generated.js';
import type { KvmMachineSnapshot } from '../../kvm/lifecycle.js';
import { REG_NAMES, SEGMENT_NAMES, SREG_VALUE_NAMES, type KvmSegment, type KvmVcpuState } from '../../kvm/vcpu-state.js';
import { IRQCHIP_STATE_SIZE } from '../../kvm/vm.js';
import { kvmStateToJson, minimalKvmState, parseKvmState } from './kvm.js';

/** A state file's JSON, edited freely by the tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const b64 = (n: number, fill = 0): string => Buffer.alloc(n, fill).toString('base64');

function cpuid(entries: number): string {
  const b = Buffer.alloc(C.KVM_CPUID2_SIZE + entries * C.KVM_CPUID_ENTRY2_SIZE);
  b.writeUInt32LE(entries, C.KVM_CPUID2_NENT);
  return b.toString('base64');
}

function vcpu(): KvmVcpuState {
  const seg: KvmSegment = { selector: 0x10, base: '0x0', limit: 0xffffffff, type: 3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
  const regs = Object.fromEntries(REG_NAMES.map((n) => [n, '0x2'])) as KvmVcpuState['regs'];
  const sregs = {
    ...Object.fromEntries(SEGMENT_NAMES.map((n) => [n, { ...seg }])),
    ...Object.fromEntries(SREG_VALUE_NAMES.map((n) => [n, '0x0'])),
    gdt: { base: '0x500', limit: 0x1f },
    idt: { base: '0x0', limit: 0 },
    interruptBitmap: ['0x0', '0x0', '0x0', '0x0'],
  } as KvmVcpuState['sregs'];
  return {
    regs, sregs, mpState: 0, xsave: b64(C.KVM_XSAVE_SIZE), xcrs: [{ xcr: 0, value: '0x1' }], msrs: [{ index: 0x10, data: '0x123' }],
    lapic: b64(C.KVM_LAPIC_STATE_SIZE), events: b64(C.KVM_VCPU_EVENTS_SIZE), debugregs: b64(C.KVM_DEBUGREGS_SIZE), cpuid: cpuid(3), tscKhz: 2_300_000,
  };
}

function machine(cpus = 1): KvmMachineSnapshot {
  return {
    vm: { picMaster: new Uint8Array(IRQCHIP_STATE_SIZE).fill(1), picSlave: new Uint8Array(IRQCHIP_STATE_SIZE), ioapic: new Uint8Array(IRQCHIP_STATE_SIZE), pit: new Uint8Array(C.KVM_PIT_STATE2_SIZE), clockNs: 123_456_789_012n },
    vcpus: Array.from({ length: cpus }, vcpu),
    devices: { clockNs: 5, devices: {} },
  };
}

/** The state as the file holds it, edited. */
function edited(f: (s: Json) => void, cpus = 1): unknown {
  const s = JSON.parse(JSON.stringify(kvmStateToJson(machine(cpus)))) as unknown;
  f(s);
  return s;
}

describe('kvm snapshot state', () => {
  it('round-trips through JSON into what the engine takes', () => {
    const m = machine(2);
    const back = parseKvmState(JSON.parse(JSON.stringify(kvmStateToJson(m))), 2);
    expect(back).toEqual(m);
  });

  it.each([
    ['another vCPU count', (s: Json) => s.vcpus.pop(), /kvm\.vcpus holds 1 vCPUs, but the snapshot's configuration has 2/],
    ['a short LAPIC page', (s: Json) => (s.vcpus[1].lapic = b64(1000)), /kvm\.vcpus\[1\]\.lapic holds 1000 bytes, not 1024 bytes in base64/],
    ['not base64', (s: Json) => (s.vm.pit = 'not base64!'), /kvm\.vm\.pit is the string "not base64!", not 112 bytes in base64/],
    ['a register out of range', (s: Json) => (s.vcpus[0].regs.rip = '0x10000000000000000'), /kvm\.vcpus\[0\]\.regs\.rip .* not a 64-bit value/],
    ['a segment field out of range', (s: Json) => (s.vcpus[0].sregs.cs.dpl = 4), /kvm\.vcpus\[0\]\.sregs\.cs\.dpl is 4, not an integer from 0 to 3/],
    ['an unknown field', (s: Json) => (s.vcpus[0].extra = 1), /kvm\.vcpus\[0\] has a field "extra"/],
    ['a CPUID table whose count lies', (s: Json) => (s.vcpus[0].cpuid = Buffer.concat([Buffer.from(cpuid(3), 'base64'), Buffer.alloc(40)]).toString('base64')), /kvm\.vcpus\[0\]\.cpuid is not a kvm_cpuid2 table \(168 bytes, 3 entries\)/],
    ['an XCR twice', (s: Json) => s.vcpus[0].xcrs.push({ xcr: 0, value: '0x3' }), /kvm\.vcpus\[0\]\.xcrs names an XCR twice/],
    ['too many XCRs', (s: Json) => (s.vcpus[0].xcrs = Array.from({ length: 17 }, (_, i) => ({ xcr: i, value: '0x0' }))), /kvm\.vcpus\[0\]\.xcrs is an array of 17, not an array of 0 to 16/],
    ['devices that are not an object', (s: Json) => (s.devices = [1]), /kvm\.devices is an array of 1, not an object/],
    ['a missing clock', (s: Json) => delete s.vm.clockNs, /kvm\.vm\.clockNs is missing/],
  ])('refuses %s in one line', (_what, edit, message) => {
    expect(() => parseKvmState(edited(edit, 2), 2)).toThrow(message);
  });

  it('refuses a state that is not an object', () => {
    expect(() => parseKvmState(undefined, 1)).toThrow(/kvm is missing, not the kvm engine's state/);
  });
});

describe('minimalKvmState', () => {
  // warmKvmStateCheck swallows its errors: the state it checks must stay a valid one
  it('passes the check, through JSON, for one and several vCPUs', () => {
    for (const cpus of [1, 3]) expect(parseKvmState(JSON.parse(JSON.stringify(minimalKvmState(cpus))), cpus).vcpus).toHaveLength(cpus);
  });
});
