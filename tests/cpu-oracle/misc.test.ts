/**
 * Oracle: MOV in every form (flags must be preserved), MOVABS, flag instructions (CLC STC CMC
 * LAHF SAHF, PUSHF/POPF through a register, masked so TF/IF/AC are never set natively),
 * conditional branches for every condition, LOOP/LOOPE/LOOPNE/JRCXZ, CALL/RET, ENTER/LEAVE,
 * XLATB and multi-byte NOPs. Stack use is balanced in every snippet (RSP is not compared).
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { binaryCase, memOperand, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { expectClean, fuzz, pickReg, randomState, regName, type OracleCase, type Rng, SIZES } from './oracle.js';

const N = 150;
const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

function seeded(rng: Rng): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(32), 32);
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: moves, flags and control flow', () => {
  for (const size of SIZES) {
    it(`mov ${size}-bit (all forms, flags preserved)`, () => {
      const r = fuzz(`mov${size}`, N, (rng) => binaryCase(rng, 'mov', size, ['rr', 'rm', 'mr', 'ri', 'mi', 'acc']));
      expectClean(r);
    });
  }

  it('movabs r64, imm64 and mov r32, imm32 (zero extension)', () => {
    const r = fuzz('movabs', N, (rng) => {
      const c = seeded(rng);
      const reg = pickReg(rng);
      c.asm = rng.bool(0.5) ? `mov ${regName(64, reg)}, qword 0x${rng.u64().toString(16)}` : `mov ${regName(32, reg)}, 0x${rng.u32().toString(16)}`;
      return c;
    });
    expectClean(r);
  });

  it('clc stc cmc lahf sahf, pushfq/popfq through a register', () => {
    const forms = [
      'clc', 'stc', 'cmc', 'lahf', 'sahf', 'cld', 'std\ncld',
      'pushfq\npop rax\nand eax, 0xcd5',
      'and ecx, 0xcd5\npush rcx\npopfq',
      'and ecx, 0xcd5\npush cx\npopfw',
      'pushfw\npop dx\nand edx, 0xcd5',
    ];
    const r = fuzz('flagops', N, (rng) => {
      const c = seeded(rng);
      c.asm = rng.pick(forms);
      return c;
    });
    expectClean(r);
  });

  for (const cc of CONDITIONS) {
    it(`j${cc} (short and near)`, () => {
      const r = fuzz(`j${cc}`, 40, (rng) => {
        const c = seeded(rng);
        const near = rng.bool(0.5) ? 'near ' : 'short ';
        c.asm = `j${cc} ${near}.taken\nmov eax, 1\njmp .end\n.taken:\nmov eax, 2\n.end:`;
        return c;
      });
      expectClean(r);
    });
  }

  it('loop / loope / loopne / jrcxz / jecxz', () => {
    const r = fuzz('loop', N, (rng) => {
      const c = seeded(rng);
      const op = rng.pick(['loop', 'loope', 'loopne']);
      if (rng.bool(0.3)) {
        // RCX 0, or ECX 0 with upper bits set: JRCXZ and JECXZ disagree
        c.state.gpr[1] = rng.pick([0n, 1n, 0x1_0000_0000n, 0x1_0000_0001n]);
        c.asm = `${rng.pick(['jrcxz', 'jecxz'])} .zero\nmov eax, 1\njmp .end\n.zero:\nmov eax, 2\n.end:`;
      } else {
        // RCX >= 1 and small: LOOP with RCX = 0 would run 2^64 times natively
        c.state.gpr[1] = BigInt(1 + rng.int(6));
        c.asm = `xor edx, edx\n.top:\ninc edx\ncmp edx, ${rng.int(5)}\n${op} .top`;
      }
      return c;
    });
    expectClean(r);
  });

  it('call / ret / ret imm16 / enter / leave', () => {
    const forms = [
      'call .f\njmp .end\n.f:\nmov eax, 5\nret\n.end:',
      'push rax\ncall .f\njmp .end\n.f:\nmov rax, [rsp+8]\nret 8\n.end:',
      'mov r8, rbp\nenter 32, 0\nmov [rbp-8], rcx\nmov rdx, [rbp-8]\nleave\nsub r8, rbp',
      'lea rax, [rel .f]\ncall rax\nxor eax, eax\njmp .end\n.f:\nadd ecx, 3\nret\n.end:', // RAX held a code address: differs per world
    ];
    const r = fuzz('callret', 60, (rng) => {
      const c = seeded(rng);
      c.asm = rng.pick(forms);
      return c;
    });
    expectClean(r);
  });

  it('push / pop: registers, memory, immediates, 16-bit forms (balanced)', () => {
    const r = fuzz('pushpop', N, (rng) => {
      const c = seeded(rng);
      const m = memOperand(rng, c, 64);
      const a = regName(64, pickReg(rng, [3]));
      const b = regName(64, pickReg(rng, [3]));
      c.asm = rng.pick([
        `push ${a}\npop ${b}`,
        `push ${m}\npop ${b}`,
        `push ${a}\npop ${m}`,
        `push ${rng.int(256) - 128}\npop ${b}`,
        `push ${rng.u32() | 0}\npop ${b}`,
        `push ${regName(16, pickReg(rng, [3]))}\npop ${regName(16, pickReg(rng, [3]))}`,
        `push ${a}\npush ${b}\npop ${a}\npop ${b}`,
        `push ${a}\nmov ${b}, [rsp]\nlea rsp, [rsp + 8]`, // ADD RSP would set flags from RSP, which differs per world
      ]);
      return c;
    });
    expectClean(r);
  });

  it('prefix edge cases: REX position, 66 with REX.W, repeated and ignored segment prefixes', () => {
    const forms = [
      'db 0x48, 0x66, 0x01, 0xd8', // REX before 66 is ignored: add ax, bx
      'db 0x66, 0x48, 0x01, 0xd8', // REX.W wins over 66: add rax, rbx
      'db 0x66, 0x66, 0x01, 0xd8', // repeated 66
      'db 0x40, 0x88, 0xe8', // with any REX, reg 5 is BPL (not CH): mov al, bpl
      'db 0x88, 0xe8', // mov al, ch
      'db 0x41, 0x48, 0x01, 0xd8', // two REX: only the last counts (add rax, rbx)
      'db 0x26, 0x2e, 0x36, 0x3e, 0x01, 0xd8', // ES CS SS DS overrides: no effect
      'db 0xf3, 0x01, 0xd8', // REP on a non-string instruction: ignored
      'db 0xf2, 0x48, 0x0f, 0xaf, 0xc3', // REPNE + imul rax, rbx
      'db 0x66, 0x0f, 0xb6, 0xc3', // movzx ax, bl
      'db 0x67, 0x8d, 0x04, 0x19', // lea eax, [ecx+ebx]
    ];
    const r = fuzz('prefixes', N, (rng) => {
      const c = seeded(rng);
      c.asm = rng.pick(forms);
      if (c.asm.includes('0xaf')) c.undefFlags = 0xd4; // IMUL: SF ZF AF PF undefined
      return c;
    });
    expectClean(r);
  });

  it('segment overrides ES/CS/SS/DS on memory operands are ignored in 64-bit mode', () => {
    const r = fuzz('segovr', 80, (rng) => {
      const c = seeded(rng);
      const m = memOperand(rng, c, 32).replace('[', `[${rng.pick(['es', 'cs', 'ss', 'ds'])}:`);
      c.asm = rng.bool(0.5) ? `add ${m}, ecx` : `mov edx, ${m}`;
      return c;
    });
    expectClean(r);
  });

  it('self-modifying code: a store into the next instruction takes effect', () => {
    const r = fuzz('smc', 40, (rng) => {
      const c = seeded(rng);
      const v = rng.int(256);
      c.asm = `mov byte [rel .patch + 1], ${v}\n.patch:\nmov al, 0\nmov byte [rel .patch2 + 2], ${rng.int(256)}\n.patch2:\nadd ecx, 0`;
      return c;
    });
    expectClean(r);
  });

  it('xlatb and multi-byte nops', () => {
    const r = fuzz('xlat', N, (rng) => {
      const c = seeded(rng);
      if (rng.bool(0.5)) {
        memOperand(rng, c, 8);
        c.asm = 'xlatb';
      } else {
        c.asm = rng.pick(['nop', 'nop dword [rax+rax]', 'nop word [rax+rax*1+0x12345678]', 'db 0x66, 0x90', 'pause', 'lfence\nmfence\nsfence']);
      }
      return c;
    });
    expectClean(r);
  });
});
