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
import { CODE_BASE } from './test-machine.js';

const RAM = 16 * 1024 * 1024;
const DATA = 0x200000;

interface Result {
  gpr: number[];
  retired: number;
  shutdown: string | undefined;
}

/** Run `src` on `vcpus` threads at once; the RAM after, and each vCPU's registers. */
async function runThreads(src: string, vcpus: number, iterations: number, jitThreshold: number): Promise<{ memory: GuestMemory; results: Result[] }> {
  const buffer = allocArenaRam(RAM, vcpus, true);
  const memory = new GuestMemory([{ base: 0, size: RAM, buffer }]);
  memory.writeBytes(CODE_BASE, assemble(src, 64));
  const wasmMemory = arenaOf(buffer, 0)!.memory;
  const go = new SharedArrayBuffer(8);
  const started = workerScript('../cpu/core/threads.test-worker');
  const workers = Array.from({ length: vcpus }, (_, vcpu) => new Worker(started.script, {
    eval: started.eval,
    workerData: { memory: wasmMemory, ramSize: RAM, vcpus, vcpu, rip: CODE_BASE, iterations, jitThreshold, go },
  }));
  const done = workers.map((w) => new Promise<Result>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  const flags = new Int32Array(go);
  while (Atomics.load(flags, 1) < vcpus) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(flags, 0, 1);
  Atomics.notify(flags, 0);
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

describe.skipIf(!hasNasm)('vCPUs on several threads over one shared RAM', () => {
  it('a store into code another thread translated reaches it: the other vCPU runs the new code', async () => {
    const { results } = await runThreads(CROSS_MODIFY, 2, 0, 1);
    expect(results[1]!.gpr[2 * 9]).toBe(1);
  }, 60_000);

  for (const [tier, threshold] of [['interpreted', Infinity], ['translated', 1]] as const) {
    it(`${tier}: store buffering with MFENCE shows only what x86-TSO allows (${ROUNDS} rounds)`, async () => {
      const { memory } = await runThreads(SB, 2, 0, threshold);
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
      const { memory, results } = await runThreads(COUNTERS, vcpus, it, threshold);
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
      const { memory, results } = await runThreads(LOCKS, vcpus, it, threshold);
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
