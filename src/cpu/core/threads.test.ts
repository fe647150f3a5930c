/**
 * vCPUs on several threads over one shared guest RAM (atomic.ts): each vCPU a Cpu in a worker
 * thread on its own state area of one shared wasm arena, running the same code at once.
 * LOCKed read-modify-writes, XCHG with memory, CMPXCHG8B/16B and spinlocks whose release is a
 * plain store must lose no update, interpreted and translated. (With plain read-modify-writes
 * these sums come out short: checked when the transactions were written.)
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { allocArenaRam, arenaOf } from '../wasm/arena.js';
import { GuestMemory } from '../../machine/memory.js';
import { workerScript } from '../../kvm/prestart.js';
import { assemble, hasNasm } from './asm.test-helper.js';
import { CODE_BASE, enterLongMode, ScriptedInterrupts, StepClock } from './test-machine.js';
import { Cpu } from './cpu.js';
import { Bus } from '../../machine/bus.js';
import { translationMesh } from '../../engine/bt/translation-channel.js';

const RAM = 16 * 1024 * 1024;
const DATA = 0x200000;

interface Result {
  gpr: number[];
  retired: number;
  shutdown: string | undefined;
  /** Blocks this vCPU compiled, and took from other threads (translated code shared). */
  compiled: number;
  adopted: number;
}

interface RunOptions {
  /** One after the other (vCPU 0 first), calling `between(k)` after vCPU k halted; else all at once. */
  sequential?: boolean;
  between?: (k: number, memory: GuestMemory) => void;
  /** The threads share translated modules (as the engine's do). */
  share?: boolean;
}

/** Run `src` on `vcpus` threads; the RAM after, and each vCPU's registers. */
async function runThreads(src: string, vcpus: number, iterations: number, jitThreshold: number, opts: RunOptions = {}): Promise<{ memory: GuestMemory; results: Result[] }> {
  const buffer = allocArenaRam(RAM, vcpus, true);
  const memory = new GuestMemory([{ base: 0, size: RAM, buffer }]);
  memory.writeBytes(CODE_BASE, assemble(src, 64));
  const wasmMemory = arenaOf(buffer, 0)!.memory;
  const go = new SharedArrayBuffer(16);
  const mesh = opts.share ? translationMesh(vcpus) : undefined;
  const started = workerScript('../cpu/core/threads-worker.test-helper');
  const workers = Array.from({ length: vcpus }, (_, vcpu) => new Worker(started.script, {
    eval: started.eval,
    workerData: { memory: wasmMemory, ramSize: RAM, vcpus, vcpu, rip: CODE_BASE, iterations, jitThreshold, go, sequential: opts.sequential, share: mesh?.[vcpu] },
    transferList: mesh?.[vcpu],
  }));
  const done = workers.map((w) => new Promise<Result>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  const flags = new Int32Array(go);
  while (Atomics.load(flags, 1) < vcpus) await new Promise((r) => setTimeout(r, 5));
  if (opts.sequential) {
    for (let k = 0; k < vcpus; k++) {
      Atomics.store(flags, 3, k);
      Atomics.notify(flags, 3);
      while (Atomics.load(flags, 2) !== k + 1) await new Promise((r) => setTimeout(r, 5));
      opts.between?.(k, memory);
    }
  } else {
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
  }
  const results = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  return { memory, results };
}

const read64 = (m: GuestMemory, a: number): number => m.read32(a) + m.read32(a + 4) * 2 ** 32;

const COUNTERS = `
  mov r8, rsi
.l:
  mov eax, 1
  lock xadd [${DATA}], rax
  lock inc qword [${DATA + 8}]
  lock add dword [${DATA + 0x10}], 2
  lock add dword [${DATA + 0x103}], 1   ; unaligned, inside an aligned 8 bytes
  lock sub word [${DATA + 0x20}], 1
  lock adc byte [${DATA + 0x28}], 0     ; adds the SUB's borrow: counts the wraps through 0
  dec r8
  jnz .l
  hlt
`;

const LOCKS = `
  mov r8, rsi
  xor r9, r9
.l:
.acq:                                   ; a spinlock: LOCK CMPXCHG takes it, a plain MOV frees it
  xor eax, eax
  mov edx, 1
  lock cmpxchg [${DATA + 0x40}], edx
  jnz .spin
  mov rax, [${DATA + 0x48}]
  inc rax
  mov [${DATA + 0x48}], rax
  mov dword [${DATA + 0x40}], 0
  jmp .l2
.spin:
  pause
  jmp .acq
.l2:                                    ; the same with XCHG (locked without a prefix)
  mov eax, 1
  xchg [${DATA + 0x80}], eax
  test eax, eax
  jnz .spin2
  mov rax, [${DATA + 0x88}]
  inc rax
  mov [${DATA + 0x88}], rax
  mov dword [${DATA + 0x80}], 0
  jmp .l3
.spin2:
  pause
  jmp .l2
.l3:                                    ; this vCPU's own bit of a shared word
  lock bts qword [${DATA + 0xc0}], rdi
  jnc .set
  inc r9
.set:
  lock btr qword [${DATA + 0xc0}], rdi
  jc .c8
  inc r9
.c8:                                    ; a 64-bit counter by CMPXCHG8B
  mov eax, [${DATA + 0x140}]
  mov edx, [${DATA + 0x144}]
  mov ebx, eax
  mov ecx, edx
  add ebx, 1
  adc ecx, 0
  lock cmpxchg8b [${DATA + 0x140}]
  jnz .c8
.c16:                                   ; a 128-bit counter by CMPXCHG16B
  mov rax, [${DATA + 0x180}]
  mov rdx, [${DATA + 0x188}]
  mov rbx, rax
  mov rcx, rdx
  add rbx, 1
  adc rcx, 0
  lock cmpxchg16b [${DATA + 0x180}]
  jnz .c16
  dec r8
  jnz .l
  hlt
`;

// vCPU 0 waits until vCPU 1 has called f 1,000 times (translated by then), then rewrites f's
// immediate; vCPU 1 must see the new value (R9 = 1) within its call budget.
const CROSS_MODIFY = `
  test rdi, rdi
  jnz .reader
.w:
  pause
  cmp dword [${DATA + 0x200}], 1000
  jb .w
  mov dword [f + 1], 0x22222222
  hlt
.reader:
  xor r8, r8
  xor r9, r9
.r:
  call f
  cmp eax, 0x22222222
  je .seen
  inc r8
  mov [${DATA + 0x200}], r8d
  cmp r8, 20000000
  jb .r
  hlt
.seen:
  mov r9, 1
  hlt
  align 64
f:
  mov eax, 0x11111111
  ret
`;

// Store buffering with MFENCE (x86-TSO forbids both loads missing the other's store): round i,
// each vCPU stores i to its flag, MFENCE, loads the other's flag into its slot of the round.
// The rounds start together: a LOCK INC barrier.
const ROUNDS = 20_000;
const SB = `
  mov r10, ${DATA + 0x1000}              ; x (vCPU 0's flag), y at +64
  mov r11, rdi
  shl r11, 6
  lea r12, [r10 + r11]                  ; my flag
  xor r11, 64
  lea r13, [r10 + r11]                  ; the other's flag
  mov r14, rdi
  imul r14, ${ROUNDS * 4}
  add r14, ${DATA + 0x10000}             ; my results
  mov r8, 1
.round:
  lock inc dword [${DATA + 0x1100}]
  lea rax, [r8 * 2]
.bar:
  cmp [${DATA + 0x1100}], eax
  jb .bar
  mov [r12], r8d
  mfence
  mov eax, [r13]
  mov [r14 + r8 * 4 - 4], eax
  inc r8
  cmp r8, ${ROUNDS}
  jbe .round
  hlt
`;

// Every LOCKable form at every size on PAIRS operand pairs, twice over (the second pass finds
// the data page in the inline TLB: translated code takes its fast path), each result and
// RFLAGS stored: shared RAM (wasm atomics) must give what unshared RAM (plain code) gives.
const PAIRS = 48;
const OPS = ['lock add', 'lock sub', 'lock and', 'lock or', 'lock xor', 'lock xadd', 'xchg', 'lock cmpxchg', 'lock inc', 'lock dec', 'lock add imm', 'lock sub imm8'];
const SIZES: [number, string, string][] = [[1, 'byte', 'bl'], [2, 'word', 'bx'], [4, 'dword', 'ebx'], [8, 'qword', 'rbx']];
function lockForms(): string {
  const lines = ['  mov r15, 2', '.pass:', '  xor r14, r14', '  mov r13, ' + (DATA + 0x10000), '.pair:',
    '  mov r12, [r14 * 8 + ' + DATA + ']', '  mov r11, [r14 * 8 + ' + (DATA + 0x1000) + ']'];
  for (const op of OPS) {
    for (const [sz, w, rb] of SIZES) {
      lines.push('  mov [' + (DATA + 0x2000) + '], r12', '  mov rbx, r11', '  mov rax, r12');
      const eq = '.eq' + lines.length;
      // CMPXCHG: equal for odd pairs, not equal for even ones
      if (op === 'lock cmpxchg') lines.push('  test r11b, 1', '  jnz ' + eq, '  xor rax, 1', eq + ':');
      const m = w + ' [' + (DATA + 0x2000) + ']';
      if (op === 'lock inc' || op === 'lock dec') lines.push('  ' + op + ' ' + m);
      else if (op === 'lock add imm') lines.push('  lock add ' + m + ', ' + (sz === 1 ? '0x7f' : sz === 2 ? '0x1234' : '0x12345'));
      else if (op === 'lock sub imm8') lines.push('  lock sub ' + m + ', ' + (sz === 1 ? '-3' : 'byte -3'));
      else lines.push('  ' + op + ' ' + m + ', ' + rb);
      lines.push('  pushfq', '  pop rcx', '  and ecx, 0x8d5', '  mov [r13], rcx', '  mov rcx, [' + (DATA + 0x2000) + ']', '  mov [r13 + 8], rcx',
        '  mov [r13 + 16], rax', '  mov [r13 + 24], rbx', '  add r13, 32');
    }
  }
  lines.push('  inc r14', '  cmp r14, ' + PAIRS, '  jb .pair', '  dec r15', '  jnz .pass', '  hlt');
  return lines.join('\n');
}

function runLockForms(shared: boolean): Uint8Array {
  const buffer = allocArenaRam(RAM, 1, shared);
  const memory = new GuestMemory([{ base: 0, size: RAM, buffer }]);
  memory.writeBytes(CODE_BASE, assemble(lockForms(), 64));
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 2 * PAIRS; i++) {
    x ^= x << 13n; x &= (1n << 64n) - 1n; x ^= x >> 7n; x ^= x << 17n; x &= (1n << 64n) - 1n;
    // small and edge values too: carries, overflows and zero results happen
    const v = i % 4 === 0 ? x & 0xffn : i % 4 === 1 ? x : i % 4 === 2 ? (1n << 63n) - (x & 3n) : x & 0x80008001n;
    memory.write32(DATA + (i < PAIRS ? 0 : 0x1000) + (i % PAIRS) * 8, Number(v & 0xffffffffn));
    memory.write32(DATA + (i < PAIRS ? 0 : 0x1000) + (i % PAIRS) * 8 + 4, Number(v >> 32n));
  }
  const pio = new Bus('pio');
  const mmio = new Bus('mmio');
  const irq = new ScriptedInterrupts();
  const clock = new StepClock();
  const cpu = new Cpu({ memory, pio, mmio, interrupts: irq, clock, jitThreshold: 1 });
  enterLongMode({ cpu, memory, pio, mmio, irq, clock });
  let n = 0;
  while (!cpu.s.halted && n < 1e8) n += cpu.run(1_000_000);
  expect(cpu.shutdown).toBeUndefined();
  // the second pass's records
  const per = OPS.length * SIZES.length * 32 * PAIRS;
  return memory.readBytes(DATA + 0x10000, per);
}

describe.skipIf(!hasNasm)('vCPUs on several threads over one shared RAM', () => {
  it('translated LOCK forms on shared RAM (wasm atomics) give the results and flags of plain code', () => {
    const plain = runLockForms(false);
    const atomic = runLockForms(true);
    expect(plain.some((b) => b !== 0)).toBe(true);
    const at = atomic.findIndex((b, i) => b !== plain[i]);
    const rec = Math.floor(at / 32);
    expect(at, at < 0 ? '' : `record ${rec}: ${OPS[Math.floor(rec / SIZES.length) % OPS.length]} size ${SIZES[rec % SIZES.length]![0]}`).toBe(-1);
  });

  it('a store into code another thread translated reaches it: the other vCPU runs the new code', async () => {
    const { results } = await runThreads(CROSS_MODIFY, 2, 0, 1, { share: true });
    expect(results[1]!.gpr[2 * 9]).toBe(1);
  }, 60_000);

  it('one translation for all: a vCPU runs the blocks another thread compiled, on its own registers', async () => {
    const { memory, results } = await runThreads(COUNTERS, 2, 3000, 1, { share: true, sequential: true });
    for (const r of results) expect(r.shutdown).toBeUndefined();
    expect(read64(memory, DATA)).toBe(6000);
    expect(memory.read32(DATA + 0x10)).toBe(12000);
    // vCPU 1 started after vCPU 0 had halted: it took vCPU 0's blocks instead of compiling its own
    expect(results[0]!.compiled).toBeGreaterThan(0);
    expect(results[1]!.adopted).toBeGreaterThan(0);
    expect(results[1]!.compiled + 0).toBe(0); // (the counters start as -0: doubles)
    expect(results[1]!.gpr[0]! >>> 0).toBeGreaterThanOrEqual(2999); // XADD's old value: its own RAX
  }, 60_000);

  it('one translation for all: a posted block whose bytes changed since is not taken', async () => {
    // vCPU 0 runs the code and posts its blocks; then the immediate is rewritten behind every
    // vCPU's back (no store of theirs: a DMA write would be one), and vCPU 1 must run the new code
    const src = 'mov eax, 0x11111111\n  mov rbx, rax\n  hlt';
    const { results } = await runThreads(src, 2, 0, 1, {
      share: true,
      sequential: true,
      between: (k, memory) => {
        if (k === 0) memory.write32(CODE_BASE + 1, 0x22222222);
      },
    });
    expect(results[0]!.gpr[2 * 3]! >>> 0).toBe(0x11111111);
    expect(results[1]!.gpr[2 * 3]! >>> 0).toBe(0x22222222);
    expect(results[1]!.adopted).toBe(0);
  }, 60_000);

  for (const [tier, threshold] of [['interpreted', Infinity], ['translated', 1]] as const) {
    it(`${tier}: store buffering with MFENCE shows only what x86-TSO allows (${ROUNDS} rounds)`, async () => {
      const { memory } = await runThreads(SB, 2, 0, threshold, { share: true });
      let both = 0;
      for (let i = 1; i <= ROUNDS; i++) {
        const r0 = memory.read32(DATA + 0x10000 + (i - 1) * 4);
        const r1 = memory.read32(DATA + 0x10000 + ROUNDS * 4 + (i - 1) * 4);
        if (r0 < i && r1 < i) both++;
      }
      expect(both).toBe(0);
    }, 60_000);
  }

  for (const [tier, threshold] of [['interpreted', Infinity], ['translated', 1]] as const) {
    it(`${tier}: LOCKed read-modify-writes lose no update (4 threads)`, async () => {
      const vcpus = 4;
      const it = 20_000;
      const { memory, results } = await runThreads(COUNTERS, vcpus, it, threshold, { share: true });
      for (const r of results) expect(r.shutdown).toBeUndefined();
      const total = vcpus * it;
      expect(read64(memory, DATA)).toBe(total);
      expect(read64(memory, DATA + 8)).toBe(total);
      expect(memory.read32(DATA + 0x10)).toBe(2 * total);
      expect(memory.read32(DATA + 0x103)).toBe(total);
      expect(memory.read16(DATA + 0x20)).toBe((0x10000 - (total % 0x10000)) % 0x10000);
      expect(memory.read8(DATA + 0x28)).toBe(Math.ceil(total / 0x10000));
      for (const r of results) expect(r.gpr[0]! >>> 0).toBeLessThan(total); // XADD's old value
    }, 60_000);

    it(`${tier}: spinlocks (LOCK CMPXCHG, XCHG) with plain releases, LOCK BTS/BTR, CMPXCHG8B/16B (4 threads)`, async () => {
      const vcpus = 4;
      const it = 5_000;
      const { memory, results } = await runThreads(LOCKS, vcpus, it, threshold, { share: true });
      const total = vcpus * it;
      for (const r of results) {
        expect(r.shutdown).toBeUndefined();
        expect(r.gpr[2 * 9]).toBe(0); // R9: a bit found in the wrong state
      }
      expect(read64(memory, DATA + 0x48)).toBe(total);
      expect(read64(memory, DATA + 0x88)).toBe(total);
      expect(read64(memory, DATA + 0xc0)).toBe(0);
      expect(read64(memory, DATA + 0x140)).toBe(total);
      expect(read64(memory, DATA + 0x180)).toBe(total);
      expect(read64(memory, DATA + 0x188)).toBe(0);
    }, 60_000);
  }
});
