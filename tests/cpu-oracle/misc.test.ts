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
      c.state.gpr[1] = BigInt(rng.int(6)) | (rng.bool(0.2) ? 0x1_0000_0000n : 0n);
      const op = rng.pick(['loop', 'loope', 'loopne']);
      c.asm = rng.bool(0.3)
        ? `${rng.pick(['jrcxz', 'jecxz'])} .zero\nmov eax, 1\njmp .end\n.zero:\nmov eax, 2\n.end:`
        : `xor edx, edx\n.top:\ninc edx\ncmp edx, ${rng.int(5)}\n${op} .top`;
      return c;
    });
    expectClean(r);
  });

  it('call / ret / ret imm16 / enter / leave', () => {
    const forms = [
      'call .f\njmp .end\n.f:\nmov eax, 5\nret\n.end:',
      'push rax\ncall .f\njmp .end\n.f:\nmov rax, [rsp+8]\nret 8\n.end:',
      'mov r8, rbp\nenter 32, 0\nmov [rbp-8], rcx\nmov rdx, [rbp-8]\nleave\nsub r8, rbp',
      'lea rax, [rel .f]\ncall rax\njmp .end\n.f:\nadd ecx, 3\nret\n.end:',
    ];
    const r = fuzz('callret', 60, (rng) => {
      const c = seeded(rng);
      c.asm = rng.pick(forms);
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
