import { describe, it, expect } from 'vitest';
import { CpuFault } from '../system-api.js';
import { SReg } from '../state.js';
import { checkIo } from './io.js';
import { TSS, U_CS, U_DS, longModeHost, setSeg } from './testhost.js';

function userHost() {
  const h = longModeHost();
  setSeg(h, SReg.CS, U_CS);
  setSeg(h, SReg.SS, U_DS);
  h.s.cpl = 3;
  h.modeChanged();
  return h;
}

describe('checkIo', () => {
  it('allows CPL <= IOPL without looking at the TSS', () => {
    const h = longModeHost();
    expect(() => checkIo(h, 0x3f8, 1)).not.toThrow();
    const u = userHost();
    u.s.rflagsRest = 0x3002;
    u.s.trLimit = 0;
    expect(() => checkIo(u, 0x3f8, 1)).not.toThrow();
  });

  it('consults the I/O permission bitmap at CPL > IOPL', () => {
    const h = userHost();
    h.memory.write16(TSS + 0x66, 0x68);
    expect(() => checkIo(h, 0x80, 1)).toThrow(CpuFault); // bitmap beyond the TSS limit: denied
    h.s.trLimit = 0x68 + 0x2000;
    expect(() => checkIo(h, 0x80, 1)).not.toThrow(); // bitmap bytes are zero: allowed
    h.memory.write8(TSS + 0x68 + 0x10, 0x02); // port 0x81 denied
    expect(() => checkIo(h, 0x80, 1)).not.toThrow();
    expect(() => checkIo(h, 0x80, 2)).toThrow(CpuFault);
    h.memory.write8(TSS + 0x68 + 0x11, 0x01); // port 0x88 denied: a 4-byte access at 0x87 crosses into it
    expect(() => checkIo(h, 0x85, 2)).not.toThrow();
    expect(() => checkIo(h, 0x87, 4)).toThrow(CpuFault);
    h.s.trLimit = 0x67;
    expect(() => checkIo(h, 0x84, 1)).toThrow(CpuFault);
  });
});
