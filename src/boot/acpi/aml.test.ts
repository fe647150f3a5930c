import { describe, expect, it } from 'vitest';
import * as aml from './aml.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('AML encoder', () => {
  it('encodes PkgLength in 1-4 bytes, counting itself', () => {
    expect([...aml.pkgLength(0)]).toEqual([1]);
    expect([...aml.pkgLength(62)]).toEqual([63]);
    // 63 payload bytes + 2 length bytes = 65 = 0x41: lead 0x40 | 0x1, then 0x41 >> 4 = 0x04.
    expect([...aml.pkgLength(63)]).toEqual([0x41, 0x04]);
    expect([...aml.pkgLength(4093)]).toEqual([0x4f, 0xff]); // 4095
    expect([...aml.pkgLength(4094)]).toEqual([0x81, 0x00, 0x01]); // 4097 = 0x1001
    expect(aml.pkgLength(2 ** 20).length).toBe(4);
    expect(() => aml.pkgLength(2 ** 28)).toThrow(/too long/);
  });

  it('encodes names, integers, strings and EISA IDs', () => {
    expect(hex(aml.nameString('_S5'))).toBe('5f53355f');
    expect(hex(aml.nameString('\\_SB'))).toBe('5c5f53425f');
    expect(hex(aml.nameString('\\_SB.PCI0'))).toBe('5c2e5f53425f50434930');
    expect(hex(aml.nameString('A.B.C'))).toBe('2f03415f5f5f425f5f5f435f5f5f');
    expect(hex(aml.nameString('^^FOO'))).toBe('5e5e464f4f5f');
    expect(() => aml.nameString('1ABC')).toThrow(/invalid/);
    expect(() => aml.nameString('TOOLONG')).toThrow(/invalid/);
    expect(hex(aml.integer(0))).toBe('00');
    expect(hex(aml.integer(1))).toBe('01');
    expect(hex(aml.integer(5))).toBe('0a05');
    expect(hex(aml.integer(0x1234))).toBe('0b3412');
    expect(hex(aml.integer(0xc0000000))).toBe('0c000000c0');
    expect(hex(aml.integer(0x1_0000_0000))).toBe('0e0000000001000000');
    expect(hex(aml.string('AB'))).toBe('0d414200');
    expect(hex(aml.eisaId('PNP0A03'))).toBe('0c41d00a03');
    expect(hex(aml.eisaId('PNP0501'))).toBe('0c41d00501');
  });

  it('encodes Name/Package/Scope/Device/Buffer', () => {
    expect(hex(aml.name('_S5', aml.pkg([aml.integer(5), aml.integer(0)])))).toBe('085f53355f1205020a0500');
    expect(hex(aml.scope('\\_SB', []))).toBe('10065c5f53425f');
    expect(hex(aml.device('COM1', [aml.name('_UID', aml.integer(1))]))).toBe('5b820b434f4d3108' + '5f55494401');
    expect(hex(aml.buffer([0xaa, 0xbb]))).toBe('11050a02aabb');
    expect(hex(aml.resourceTemplate([aml.irqNoFlags([4])]))).toBe('11080a05221000' + '7900');
    expect(aml.wordBusNumber(0, 255).length).toBe(16);
    expect(aml.dwordMemory(0xc0000000, 0xcfffffff).length).toBe(26);
    expect(() => aml.irqNoFlags([16])).toThrow(/0-15/);
  });
});
